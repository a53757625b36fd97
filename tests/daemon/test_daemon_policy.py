"""svwatchd's policy and recovery: retries, after-actions, delete/close, journal rebuild, lock."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import TESTDATA
from tests.daemon.daemon_harness import DaemonProc, server_streams, wait_for, write_config
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(300)


def _watch(work: Path, **extra: Any) -> dict[str, Any]:
    return {
        "path": str(work / "inbox"),
        "settle": "300ms",
        "output": {"dir": str(work / "out"), "formats": ["txt", "json"]},
        **extra,
    }


def test_error_is_retried_then_recorded(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    cfg = write_config(
        work,
        srv,
        [_watch(work, metadata={"samprate": "16k", "encoding": "SPCM", "sampwidth": 2})],
        policy={"retry_errors": 1},
    )
    daemon = DaemonProc(cfg).start()
    try:
        (work / "inbox" / "tiny.raw").write_bytes(b"\x01")  # less than one frame: ERROR
        error_file = work / "out" / "tiny.raw.error.json"
        wait_for(error_file.exists, 60, "error file", daemon.output)
        doc = json.loads(error_file.read_text())
        assert "tiny.raw" in doc["reason"] and doc["stream_id"] and doc["fingerprint"]
        retries = daemon.events("stream.retry")
        assert len(retries) == 1 and retries[0]["attempt"] == 1
        (stream,) = server_streams(srv, work)
        assert stream["attempts"] == 2 and stream["status"] == "ERROR"  # one stream, two tries
        # the daemon keeps going
        shutil.copy(TESTDATA / "goforward.raw", work / "inbox" / "fine.raw")
        wait_for((work / "out" / "fine.raw.txt").exists, 60, "next file", daemon.output)
    finally:
        daemon.stop()


def test_after_delete_and_move(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    other = work / "inbox2"
    other.mkdir()
    done = work / "done"
    cfg = write_config(
        work,
        srv,
        [
            _watch(work, after="delete"),
            {
                "path": str(other),
                "settle": "300ms",
                "after": f"move:{done}",
                "output": {"dir": str(work / "out2"), "formats": ["txt"]},
            },
        ],
    )
    daemon = DaemonProc(cfg).start()
    try:
        shutil.copy(TESTDATA / "001.wav", work / "inbox" / "gone.wav")
        (other / "sub").mkdir()
        shutil.copy(TESTDATA / "001.wav", other / "sub" / "kept.wav")
        wait_for(lambda: (done / "sub" / "kept.wav").exists(), 60, "moved", daemon.output)
        wait_for(lambda: not (work / "inbox" / "gone.wav").exists(), 60, "deleted", daemon.output)
        assert (work / "out" / "gone.wav.txt").exists()
        assert (work / "out2" / "sub" / "kept.wav.txt").exists()
        assert not (other / "sub" / "kept.wav").exists()
    finally:
        daemon.stop()


def _long_wav(path: Path, seconds: int) -> None:
    clip, sr = sf.read(TESTDATA / "005.wav", dtype="int16")
    reps = int(seconds * sr / len(clip)) + 1
    sf.write(path, np.tile(clip, reps), sr, subtype="PCM_16")


def test_delete_after_and_close_after(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    cfg = write_config(
        work, srv, [_watch(work)], policy={"delete_after": "0s", "close_after": "1s"}
    )
    long_wav = work / "long.wav"
    _long_wav(long_wav, 300)  # 5 minutes: pocketsphinx needs far longer than 1 s for it
    daemon = DaemonProc(cfg).start()
    try:
        shutil.copy(TESTDATA / "001.wav", work / "inbox" / "short.wav")
        wait_for((work / "out" / "short.wav.txt").exists, 60, "short", daemon.output)
        # finished and written: its server stream is deleted (delete_after: 0s)
        wait_for(
            lambda: not any(s["source"].endswith("short.wav") for s in server_streams(srv, work)),
            30,
            "server stream deleted",
            daemon.output,
        )
        shutil.move(long_wav, work / "inbox" / "long.wav")
        error = work / "out" / "long.wav.error.json"
        wait_for(error.exists, 90, "closed after 1 s", daemon.output)
        assert "closed" in json.loads(error.read_text())["reason"]
        (closed,) = daemon.events("stream.closed")
        assert closed["path"] == str(work / "inbox" / "long.wav")  # which file, by name
    finally:
        daemon.stop()


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_damaged_journal_is_rebuilt_without_decoding_twice(
    area: tuple[SvServer, Path], work: Path, damage: str
) -> None:
    srv, _ = area
    cfg = write_config(work, srv, [_watch(work)])
    daemon = DaemonProc(cfg).start()
    for i in range(4):
        shutil.copy(TESTDATA / "001.wav", work / "inbox" / f"r{i}.wav")
    wait_for(lambda: len(list((work / "out").glob("*.json"))) == 4, 60, "outputs", daemon.output)
    daemon.stop()
    journal = work / "state" / "journal.db"
    if damage == "garbage":
        journal.write_bytes(b"this is not a database" * 100)
    else:
        journal.unlink()
    for extra in ("journal.db-wal", "journal.db-shm"):
        (work / "state" / extra).unlink(missing_ok=True)
    again = DaemonProc(cfg)
    again.log = work / "again.log"
    again.start()
    try:
        shutil.copy(TESTDATA / "004.wav", work / "inbox" / "new.wav")
        wait_for((work / "out" / "new.wav.txt").exists, 60, "new file", again.output)
        time.sleep(1.0)
        rebuilt = again.events("journal.rebuilt")
        assert rebuilt and rebuilt[0]["done"] == 4
        submitted = [e["path"] for e in again.events("stream.submitted")]
        assert submitted == [str(work / "inbox" / "new.wav")]
        assert all(s["attempts"] == 1 for s in server_streams(srv, work))
        assert bool(list((work / "state").glob("journal.db.corrupt-*"))) == (damage == "garbage")
    finally:
        again.stop()


def test_second_daemon_on_the_same_state_is_refused(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    cfg = write_config(work, srv, [_watch(work)])
    daemon = DaemonProc(cfg).start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "svwatchd.daemon._cli", "run", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "Another svwatchd" in second.stderr and "journal.lock" in second.stderr
    finally:
        daemon.stop()


def test_check_reports_line_and_key(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"state_dir: {tmp_path}/state\n"
        "refresh_interval: soon\n"
        "watches:\n"
        f"  - path: {inbox}\n"
        "    settle: 2x\n"
        f"    output: {{dir: {tmp_path}/out}}\n"
        "    bogus: 1\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert f"{cfg}:2: refresh_interval:" in run.stderr
    assert f"{cfg}:5: watches[0].settle:" in run.stderr
    assert f"{cfg}:7: watches[0].bogus:" in run.stderr


def _sysctl(name: str) -> Path:
    return Path("/proc/sys/fs/inotify") / name


def test_inotify_overflow_is_caught_by_the_rescan(area: tuple[SvServer, Path], work: Path) -> None:
    """A real overflow: the inotify queue is made tiny (root only) while the daemon starts."""
    srv, _ = area
    knob = _sysctl("max_queued_events")
    try:
        old = knob.read_text().strip()
        knob.write_text("16\n")
    except OSError:
        pytest.skip("needs root to shrink fs.inotify.max_queued_events for a real overflow")
    try:
        cfg = write_config(work, srv, [_watch(work, settle="200ms")], rescan_interval="2s")
        daemon = DaemonProc(cfg).start()
    finally:
        knob.write_text(old + "\n")  # only the daemon's inotify instance keeps the tiny queue
    try:
        for i in range(60):
            shutil.copy(TESTDATA / "001.wav", work / "inbox" / f"o{i:02d}.wav")
        wait_for(
            lambda: len(list((work / "out").glob("*.txt"))) == 60, 120, "all 60", daemon.output
        )
        overflow = daemon.events("watch.overflow")
        assert (
            overflow and overflow[0]["count"] > 0 and "max_queued_events" in overflow[0]["remedy"]
        )
        assert len(daemon.events("stream.submitted")) == 60
    finally:
        daemon.stop()
