"""The embedded svserver killed mid-burst, and restarted by a reload, while batches fly.

Only the daemon's loop restarts the embedded server and swaps its client; the
sender thread only sends, with the client it was handed. Real daemon, real
embedded svserver (pocketsphinx), real inotify.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import TESTDATA, speech_file
from tests.daemon.daemon_harness import DaemonProc, inbox_watch, wait_for, write_config
from tests.normalise import normalise

pytestmark = pytest.mark.timeout(300)

EMBEDDED = {"embedded": {"engine": "pocketsphinx", "workers": 1}}


def _embedded_pid(daemon: DaemonProc) -> int:
    """The PID of the daemon's svserver child."""
    assert daemon.proc is not None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == daemon.proc.pid and b"svwatchd.server._cli" in cmdline:
            return int(entry)
    raise AssertionError("the daemon has no svserver child")


def test_embedded_server_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    speech_file("001.wav")
    work = tmp_path / "w"
    (work / "inbox").mkdir(parents=True)
    (work / "second").mkdir()
    second = inbox_watch(work)
    second.update(path=str(work / "second"), output={"dir": str(work / "out2"), "formats": ["txt"]})
    cfg = write_config(work, EMBEDDED, [inbox_watch(work)])
    daemon = DaemonProc(cfg).start()
    names: list[Path] = []

    def drop(folder: str, n: int) -> None:
        for _ in range(n):
            names.append(work / folder / f"f{len(names):02d}.wav")
            shutil.copy(TESTDATA / "001.wav", names[-1])

    try:
        wait_for(lambda: bool(daemon.events("server.ready")), 120, "svserver", daemon.output)
        drop("inbox", 10)
        wait_for(lambda: bool(daemon.events("stream.submitted")), 60, "in flight", daemon.output)
        os.kill(_embedded_pid(daemon), signal.SIGKILL)
        drop("inbox", 10)
        wait_for(lambda: bool(daemon.events("server.exited")), 60, "noticed", daemon.output)
        # a new watch: the embedded server restarts allowed to read it (new roots)
        write_config(work, EMBEDDED, [inbox_watch(work), second])
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: bool(daemon.events("config.reloaded")), 60, "reload", daemon.output)
        drop("second", 5)
        drop("inbox", 5)

        def out(path: Path) -> Path:
            folder = "out" if path.parent.name == "inbox" else "out2"
            return work / folder / f"{path.name}.txt"

        wait_for(lambda: all(out(p).exists() for p in names), 180, "every file", daemon.output)
    finally:
        assert daemon.stop() == 0
    for path in names:
        assert normalise(out(path).read_text()) == "ten of clubs", path
    for event in ("daemon.step_failed", "submit.failed", "file.step_failed"):
        assert daemon.events(event) == [], event
    submitted = [e["path"] for e in daemon.events("stream.submitted")]
    assert sorted(submitted) == sorted(str(p) for p in names)  # once per file
    # the kill was noticed once, by the loop; the files of the second watch were decoded, so
    # the reload restarted the server allowed to read it
    assert len(daemon.events("server.exited")) == 1
