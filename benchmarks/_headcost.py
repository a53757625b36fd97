"""svserver's own cost per stream, measured with a STAND-IN engine that returns at once.

What one svserver (one SQLite writer, one scheduler loop) can feed, whatever
decodes: the real app (API, store, scheduler, packing, commits) runs
in-process under uvicorn on a loopback port, with an executor that answers
every job at once with one utterance per clip (no decoding at all). A client
submits ``count`` short WAV files by path in batches, as the daemon does, and
refreshes them until every one is DONE. Streams per second over that run is
what the head sustains: submission, activation, reading and resampling each
file's audio (the head does that before a call), the call, the commit, and
the refreshes. Nothing in it depends on where the workers run.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import uvicorn

from benchmarks._common import RATE, write_wav
from svwatchd.client import Stream
from svwatchd.client.server import Server
from svwatchd.model.speechdata import Utterance, Word
from svwatchd.server._app import create_app
from svwatchd.server._config import ServerConfig
from svwatchd.server._engines.base import Ask, Audio, EngineConfig, Heard
from tests.svserver import free_port

__all__ = ["InstantExecutor", "head_streams_per_second"]


class InstantExecutor:
    """A stand-in engine: every clip is "heard" at once as one fixed utterance."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.calls = 0

    def submit(self, clips: list[Audio], asks: list[Ask] | None = None) -> Future[list[Heard]]:
        self.calls += 1
        word = Word("stand-in", 0.0, 0.5, 1.0)
        utterance = Utterance(start=0.0, end=0.5, text="stand-in", confidence=1.0, words=(word,))
        future: Future[list[Heard]] = Future()
        future.set_result([Heard([utterance]) for _ in clips])
        return future

    def info(self) -> dict[str, object]:
        return {"engine": "pocketsphinx", "model": "stand-in", "workers": self.workers}

    def close(self, timeout: float = 30.0) -> None:
        pass


def head_streams_per_second(
    base: Path, count: int, *, workers: int = 64, batch: int = 500
) -> tuple[float, int]:
    """Run ``count`` 5 s files through svserver with the stand-in engine; (streams/s, calls).

    ``workers``: decode slots the stand-in pretends to have (many: the head, not the
    workers, must be the limit)."""
    root = base / "head"
    root.mkdir(parents=True, exist_ok=True)
    clip = write_wav(root / "clip.wav", np.zeros(5 * RATE, dtype=np.float32) + 0.01)
    paths = []
    for k in range(count):
        path = root / f"s{k:05d}.wav"
        shutil.copyfile(clip, path)
        paths.append(path)
    executor = InstantExecutor(workers)
    config = ServerConfig(
        data_dir=base / "head-data",
        port=free_port(),
        allow_roots=(root,),
        workers=workers,
        engine=EngineConfig(name="pocketsphinx"),
    )
    app = create_app(config, engine_factory=lambda _: executor)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=config.port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="svserver-head", daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with Server(f"http://127.0.0.1:{config.port}") as client:
            streams = [Stream(str(p)) for p in paths]
            began = time.monotonic()
            for k in range(0, count, batch):
                client.decodestreams(streams[k : k + batch])
            while True:
                client.refreshstreams(streams)
                if all(s.isdone() for s in streams):
                    break
                time.sleep(0.05)
            wall = time.monotonic() - began
            failed = [s for s in streams if s.iserror()]
            if failed:
                raise RuntimeError(f"{len(failed)} stand-in streams failed: {failed[0].error}")
        return count / wall, executor.calls
    finally:
        server.should_exit = True
        thread.join(30)
