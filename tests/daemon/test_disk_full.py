"""Disk full, for real: a tiny tmpfs under the outputs and under the journal.

The decisions: the operation fails, nothing is marked done, the error is
logged with the path (and free space for the journal), and the work is done
once space returns -- never assumed to have happened, never decoded twice.
Mounting needs root (CAP_SYS_ADMIN); elsewhere these tests skip and say so.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import TESTDATA
from tests.daemon.daemon_harness import DaemonProc, server_streams, wait_for, write_config
from tests.diskfull import fill, tiny_fs
from tests.svserver import SvServer

pytestmark = [pytest.mark.timeout(300), pytest.mark.privileged]


def start_daemon(work: Path, srv: SvServer, out: Path, formats: list[str]) -> DaemonProc:
    """A daemon watching ``work/inbox`` into ``out``, once it is ready."""
    watch = {
        "path": str(work / "inbox"),
        "settle": "300ms",
        "output": {"dir": str(out), "formats": formats},
    }
    daemon = DaemonProc(write_config(work, srv, [watch])).start()
    wait_for(lambda: bool(daemon.events("daemon.ready")), 60, "ready", daemon.output)
    return daemon


def drop_and_wait(work: Path, daemon: DaemonProc, n: int, event: str) -> list[str]:
    """Drop ``n`` copies of a clip into the inbox and wait for the first ``event`` line."""
    names = [f"f{i:02d}.wav" for i in range(n)]
    for name in names:
        shutil.copy(TESTDATA / "001.wav", work / "inbox" / name)
    wait_for(lambda: bool(daemon.events(event)), 60, event, daemon.output)
    return names


def wait_transcripts(out: Path, names: list[str], daemon: DaemonProc) -> None:
    wait_for(
        lambda: all((out / f"{n}.txt").exists() for n in names),
        180,
        "every transcript once space returned",
        daemon.output,
    )


def test_full_output_disk_marks_nothing_done_and_recovers(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    with tiny_fs(work / "out", "256k") as out:
        filler = fill(out)
        daemon = start_daemon(work, srv, out, ["txt", "json"])
        try:
            (name,) = drop_and_wait(work, daemon, 1, "output.failed")
            failed = daemon.events("output.failed")[0]
            assert failed["path"] == str(work / "inbox" / name)
            assert "No space left on device" in failed["error"]
            assert not daemon.events("stream.done")
            assert sorted(p.name for p in out.iterdir()) == ["crumbs", "filler"]  # no partial file
            time.sleep(2)  # several refreshes retry the write meanwhile
            assert len(daemon.events("output.failed")) == 1  # logged once, not per refresh
            assert not daemon.events("stream.done")
            (out / "crumbs").unlink()
            filler.unlink()  # space is back
            wait_transcripts(out, [name], daemon)
            assert (out / f"{name}.json").exists() and "clubs" in (out / f"{name}.txt").read_text()
            (stream,) = server_streams(srv, work)
            assert stream["attempts"] == 1  # decoded once, written once space returned
            assert len(daemon.events("stream.done")) == 1
            assert len(daemon.events("output.failed")) == 1
        finally:
            daemon.stop()


def test_full_journal_disk_loses_nothing(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    with tiny_fs(work / "state", "2m") as state:
        daemon = start_daemon(work, srv, work / "out", ["txt"])
        try:
            filler = fill(state)
            # enough rows that the journal must grow
            names = drop_and_wait(work, daemon, 40, "journal.write_failed")
            failed = daemon.events("journal.write_failed")[0]
            assert failed["path"] == str(state / "journal.db")
            assert failed["free_bytes"] < 4096
            assert daemon.proc is not None and daemon.proc.poll() is None  # still running
            (state / "crumbs").unlink()
            filler.unlink()
            wait_transcripts(work / "out", names, daemon)
            streams = server_streams(srv, work)
            # one stream per file: nothing lost, nothing twice
            assert sorted(os.path.basename(s["source"]) for s in streams) == names
        finally:
            daemon.stop()


def test_full_server_disk_keeps_files_waiting(work: Path) -> None:
    # a server of its own, its data directory on the tiny disk
    with tiny_fs(work / "svdata", "4m") as data:
        srv = SvServer(data, args=["--allow-root", str(work)], workers=1).start()
        try:
            daemon = start_daemon(work, srv, work / "out", ["txt"])
            try:
                filler = fill(data)
                names = drop_and_wait(work, daemon, 30, "server.unreachable")
                assert "disk is full" in daemon.events("server.unreachable")[0]["error"]
                assert not daemon.events("stream.submitted")  # nothing taken for accepted
                (data / "crumbs").unlink()
                filler.unlink()
                wait_transcripts(work / "out", names, daemon)
                streams = server_streams(srv)
                assert len(streams) == 30 and all(s["status"] == "DONE" for s in streams)
                assert len(daemon.events("stream.submitted")) == 30  # once each
            finally:
                daemon.stop()
        finally:
            srv.stop()
