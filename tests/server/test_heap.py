"""A decode worker gives its free heap back: before a window is encoded when it has grown
(real Whisper tiny.en, real CTranslate2) and after each job; and giving back really
returns the pages (a fresh process, glibc's own allocator, resident memory from /proc)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from svwatchd.server._engines import EngineConfig, heap, worker
from svwatchd.server._engines.base import SAMPLE_RATE
from svwatchd.server._engines.heap import TrimsBeforeEncode
from svwatchd.server._engines.whisper import WhisperEngine
from tests.server.test_engines import LONG_FORM, load_speech, reference, text_of, wer

CLIPS = LONG_FORM + LONG_FORM[::-1]

PROBE = textwrap.dedent(
    """
    import ctypes
    from svwatchd.server._engines.heap import SLACK, give_back, give_back_if_grown, resident

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def fragment(mib):
        # leave mib MiB free inside the heap, resident
        size = 64 * 1024  # below glibc's mmap threshold: these come from the heap
        blocks = [libc.malloc(size) for _ in range(16 * mib)]
        for b in blocks:
            ctypes.memset(b, 1, size)
        for b in blocks[:-1]:  # the last one stays: the freed space is not the heap's top
            libc.free(b)

    give_back()
    fragment(SLACK // 2**20 // 2)
    small = give_back_if_grown()  # grown by less than the slack: kept
    fragment(100)
    before = resident()
    gave = give_back_if_grown()
    print(small, gave, give_back_if_grown(), before // 2**20, resident() // 2**20)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_giving_back_returns_the_free_pages_inside_the_heap_once_grown() -> None:
    """glibc keeps freed heap memory resident (only the heap's top is trimmed by itself);
    giving back returns it, once the process has grown by the slack since it last did."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    small, gave, again, before, after = out.stdout.split()
    assert (small, gave, again) == ("False", "True", "False"), out.stdout
    assert int(before) - int(after) >= 80, out.stdout  # of the 100 MiB freed


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    load_speech(CLIPS[0])  # skip when the test data is absent
    return WhisperEngine(EngineConfig())


class Log:
    """What was done, in order: heap offered back (``if_grown``), windows encoded."""

    def __init__(self) -> None:
        self.events: list[str] = []


class EncodeRecorder:
    """The real CTranslate2 model, with each ``encode`` noted in the log."""

    def __init__(self, model: Any, log: Log) -> None:
        self.model = model
        self.log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def encode(self, *args: Any, **options: Any) -> Any:
        self.log.events.append("encode")
        return self.model.encode(*args, **options)


@pytest.fixture
def log(engine: WhisperEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Log]:
    """The engine's model with its encodes and the heap's give-backs noted (the real
    functions still run)."""
    log = Log()
    real_if_grown = heap.give_back_if_grown

    def noted_if_grown(slack: int = heap.SLACK) -> bool:
        log.events.append("if_grown")
        return real_if_grown(slack)

    monkeypatch.setattr(heap, "give_back_if_grown", noted_if_grown)
    monkeypatch.setattr(worker, "give_back_if_grown", noted_if_grown)
    trims = engine._model.model._model  # inside the candidates' wrapper (sampling.py)
    assert isinstance(trims, TrimsBeforeEncode)  # the engine decodes through it
    monkeypatch.setattr(trims, "_model", EncodeRecorder(trims._model, log))
    yield log


def test_the_heap_is_offered_back_before_every_window_is_encoded(
    engine: WhisperEngine, log: Log
) -> None:
    """Ten clips one after the other (over 40 s of speech: several windows) decode as
    they would without it."""
    audio = np.concatenate([load_speech(c) for c in CLIPS])
    assert len(audio) > 40 * SAMPLE_RATE
    utterances = engine.transcribe(audio)
    windows = log.events.count("encode")
    assert windows >= 2
    assert log.events == ["if_grown", "encode"] * windows
    assert wer([" ".join(reference(c) for c in CLIPS)], [text_of(utterances)]) < 0.15


def test_a_worker_offers_the_heap_back_after_every_job(engine: WhisperEngine, log: Log) -> None:
    """A job that decodes and a job that fails alike (the run's outcome is unchanged)."""
    kind, (heard, _info) = worker.run_job(engine, [load_speech(CLIPS[0])], None)
    assert kind == "ok" and heard[0].utterances
    assert log.events[-1] == "if_grown"
    log.events.clear()
    bad = np.full(SAMPLE_RATE, np.nan, dtype=np.float32)
    kind, packed = worker.run_job(engine, [bad], None)
    assert kind == "error", packed
    assert log.events == ["if_grown"]
