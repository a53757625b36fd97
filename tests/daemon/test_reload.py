"""SIGHUP reloads that reorder and remove watches while files settle and are in flight.

A watch is one identity everywhere (its root path): a reload that reorders
the config's list, removes a watch or brings it back must never record a
file under another watch, lose it, or leave it stuck. Real daemon, real
svserver (pocketsphinx), real inotify.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TESTDATA
from tests.daemon.daemon_harness import DaemonProc, server_streams, wait_for, write_config
from tests.normalise import normalise
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(300)

NAMES = ("alpha", "beta", "gamma")
CLIPS = {"001.wav": "ten of clubs", "004.wav": "five five"}


def _watch(work: Path, name: str) -> dict[str, Any]:
    return {
        "path": str(work / name),
        "settle": "1s",  # long enough that files dropped just before a reload still settle
        "metadata": {"watch": name},
        "output": {"dir": str(work / f"out-{name}"), "formats": ["txt"]},
    }


def _reload(daemon: DaemonProc, work: Path, srv: SvServer, order: tuple[str, ...]) -> None:
    before = len(daemon.events("config.reloaded"))
    write_config(work, srv, [_watch(work, n) for n in order])
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: len(daemon.events("config.reloaded")) > before, 30, "reload", daemon.output)


def test_reorder_and_remove_watches_while_files_settle_and_fly(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    for name in NAMES:
        (work / name).mkdir()
    dropped: dict[str, list[str]] = {n: [] for n in NAMES}

    def drop(count: int) -> None:
        for _ in range(count):
            for name in NAMES:
                i = len(dropped[name])
                clip = sorted(CLIPS)[i % 2]
                file = f"{name}{i:02d}-{clip}"
                shutil.copy(TESTDATA / clip, work / name / file)
                dropped[name].append(file)

    def submitted() -> int:
        return len(daemon.events("stream.submitted"))

    cfg = write_config(work, srv, [_watch(work, n) for n in NAMES])
    daemon = DaemonProc(cfg).start()
    try:
        drop(6)
        wait_for(lambda: submitted() >= 3, 60, "first files in flight", daemon.output)
        drop(4)  # these settle while the reload happens
        _reload(daemon, work, srv, ("gamma", "alpha", "beta"))  # reordered
        drop(4)
        wait_for(lambda: submitted() >= 33, 90, "files in flight again", daemon.output)
        drop(4)
        _reload(daemon, work, srv, ("gamma", "alpha"))  # beta removed
        drop(4)  # beta's are not watched now: found by the scan when beta returns
        wait_for(
            lambda: all(
                (work / f"out-{n}" / f"{f}.txt").exists()
                for n in ("alpha", "gamma")
                for f in dropped[n]
            ),
            120,
            "every file of the remaining watches",
            daemon.output,
        )
        _reload(daemon, work, srv, ("beta", "gamma", "alpha"))  # beta is back
        wait_for(
            lambda: all(
                (work / f"out-{n}" / f"{f}.txt").exists() for n in NAMES for f in dropped[n]
            ),
            120,
            "every file of every watch",
            daemon.output,
        )
    finally:
        assert daemon.stop() == 0
    assert daemon.events("daemon.step_failed") == []
    for name in NAMES:
        out = work / f"out-{name}"
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{f}.txt" for f in dropped[name])
        for file in dropped[name]:
            assert normalise((out / f"{file}.txt").read_text()) == CLIPS[file.split("-")[1]]
    streams = {s["source"]: s for s in server_streams(srv, work)}
    every = [str(work / n / f) for n in NAMES for f in dropped[n]]
    assert sorted(streams) == sorted(every)  # one stream per file: none lost, none twice
    for path, stream in streams.items():
        assert stream["status"] == "DONE" and stream["attempts"] == 1, path
        assert stream["tags"] == {"watch": Path(path).parent.name}, path  # its own metadata
    for event in ("file.detected", "stream.submitted"):
        paths = [e["path"] for e in daemon.events(event)]
        assert sorted(paths) == sorted(every), event  # once per file
