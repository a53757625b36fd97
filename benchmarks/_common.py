"""Helpers shared by the benchmarks: test audio, load averages, process memory, waiting.

Nothing here measures anything by itself; the benchmark modules do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from svwatchd.client import Stream
from svwatchd.client.server import Server
from svwatchd.server._engines.worker import NATIVE_THREAD_VARS
from tests.conftest import TESTDATA
from tests.normalise import normalise

__all__ = [
    "CARDS",
    "RATE",
    "RAWS",
    "SENSE",
    "TESTDATA",
    "Pcm",
    "cores",
    "load_clip",
    "loadavg",
    "memory_line",
    "native_threads",
    "proc_memory",
    "reference",
    "speech_start",
    "wait_done",
    "write_wav",
]

RATE = 16000
"""Every test clip is 16 kHz mono 16-bit."""

SENSE = [f"sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920, 930)]
"""The long-form LibriVox clips (3-7 s each), with ``.txt`` references beside them."""

CARDS = [f"00{n}.wav" for n in range(1, 6)]
"""The short card clips (1-3.5 s each)."""

RAWS = ["goforward.raw", "something.raw"]
"""Headerless 16 kHz SPCM clips."""

_CARD_REFS = {
    "001.wav": "ten of clubs",
    "002.wav": "four queen of clubs",
    "003.wav": "seven of clubs",
    "004.wav": "five five",
    "005.wav": "eight of spades four of clubs seven of hearts",
    "goforward.raw": "go forward ten meters",
    "something.raw": "go somewhere and do something",
}

Pcm = npt.NDArray[np.float32]


@contextmanager
def native_threads(threads: int) -> Iterator[None]:
    """Processes started inside run their native libraries' thread pools (numpy's
    OpenBLAS, OpenMP) on ``threads`` threads, as svserver's workers do: a baseline
    oversubscribing the cores would flatter svserver."""
    saved = {name: os.environ.get(name) for name in NATIVE_THREAD_VARS}
    os.environ.update(dict.fromkeys(NATIVE_THREAD_VARS, str(threads)))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as a short string."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def load_clip(name: str) -> Pcm:
    """A test clip as float32 samples in [-1, 1] at 16 kHz (WAV or headerless SPCM)."""
    path = TESTDATA / name
    if not TESTDATA.is_dir():
        raise SystemExit(f"test data folder {TESTDATA} is absent (it lives in ../shared/testdata)")
    if name.endswith(".raw"):
        return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
    data, rate = sf.read(path, dtype="float32")
    if rate != RATE or data.ndim != 1:
        raise SystemExit(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {data.shape}")
    return np.asarray(data, dtype=np.float32)


def speech_start(clip: Pcm, rate: int = RATE) -> float:
    """Seconds before the clip's speech: the first three 20 ms frames in a row within 20 dB
    of its loudest frame (the LibriVox clips open with 0.24-0.34 s of the recording's noise
    floor and breath, 19-38 dB down, which is not speech)."""
    frame = rate // 50
    energy = np.square(clip[: len(clip) // frame * frame].reshape(-1, frame)).mean(axis=1)
    loud = energy >= energy.max() / 100
    return float(np.argmax(loud[:-2] & loud[1:-1] & loud[2:])) * frame / rate


def reference(name: str) -> str:
    """The normalised reference transcript of a test clip."""
    if name in _CARD_REFS:
        return _CARD_REFS[name]
    return normalise((TESTDATA / name.replace(".wav", ".txt")).read_text())


def write_wav(path: Path, samples: Pcm) -> Path:
    """Write 16 kHz mono 16-bit PCM WAV."""
    sf.write(path, np.clip(samples, -1.0, 1.0), RATE, subtype="PCM_16", format="WAV")
    return path


def proc_memory(pid: int | str) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, read from /proc (``pid`` may be ``"self"``)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) / 1024.0
    except OSError:
        return float("nan"), float("nan")
    return values["VmRSS"], values["VmHWM"]


def memory_line(label: str, pids: Sequence[int]) -> str:
    """One line with each process's RSS and peak RSS."""
    parts = []
    for pid in pids:
        rss, hwm = proc_memory(pid)
        parts.append(f"pid {pid} VmRSS {rss:.0f} MiB (peak {hwm:.0f} MiB)")
    return f"{label}: " + "; ".join(parts)


def wait_done(
    server: Server, streams: list[Stream], *, timeout: float = 1800.0, poll: float = 0.05
) -> float:
    """Refresh until every stream has finished; return the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    while True:
        server.refreshstreams(streams)
        if all(s.isdone() for s in streams):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"streams not done after {timeout} s")
        time.sleep(poll)
