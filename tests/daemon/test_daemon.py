"""svwatchd end to end: real inotify, a real svserver (pocketsphinx, for speed), real files.

What operators need most: no file is ever lost or decoded twice, across
crashes, restarts, server outages and bad files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from svwatchd.daemon._config import load_config
from svwatchd.daemon._runner import Daemon
from tests.conftest import TESTDATA, speech_file
from tests.daemon.daemon_harness import DaemonProc, server_streams, wait_for, write_config
from tests.normalise import normalise
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(300)

RAW = {"samprate": "16k", "encoding": "SPCM", "sampwidth": 2}


def _text(path: Path) -> str:
    return normalise(path.read_text())


def test_files_become_transcripts(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(
        work,
        srv,
        [
            {
                "path": str(inbox),
                "exts": ["wav", "raw"],
                "settle": "1s",
                "metadata": {**RAW, "channel": "sales"},
                "tags_from_path": r"(?P<agent>[a-z]+)_(?P<date>\d{8})",
                "output": {"dir": str(out), "formats": ["txt", "json", "srt", "vtt"]},
            }
        ],
    )
    daemon = DaemonProc(cfg).start()
    try:
        shutil.copy(TESTDATA / "001.wav", inbox / "alice_20261124_call.wav")
        shutil.copy(TESTDATA / "goforward.raw", inbox / "go.raw")
        shutil.copy(TESTDATA / "bad.wav", inbox / "bad.wav")
        (inbox / "notes.txt").write_text("not audio")  # not in exts: ignored
        (inbox / ".hidden.wav").write_bytes(b"")  # ignored by default
        # moved in: the atomic-rename pattern
        staging = work / "staging.wav"
        shutil.copy(TESTDATA / "005.wav", staging)
        os.rename(staging, inbox / "moved.wav")
        # a new subdirectory, and a folder moved in whole
        (inbox / "new" / "deeper").mkdir(parents=True)
        shutil.copy(TESTDATA / "003.wav", inbox / "new" / "deeper" / "c.wav")
        folder = work / "folder"
        folder.mkdir()
        shutil.copy(TESTDATA / "something.raw", folder / "s.raw")
        os.rename(folder, inbox / "folder")

        expected = {
            "alice_20261124_call.wav.txt": "ten of clubs",
            "go.raw.txt": "go forward ten meters",
            "moved.wav.txt": "eight of spades four of clubs seven of hearts",
            "new/deeper/c.wav.txt": "seven of clubs",
            "folder/s.raw.txt": "go somewhere and do something",
        }
        wait_for(
            lambda: (
                all((out / p).exists() for p in expected) and (out / "bad.wav.error.json").exists()
            ),
            90,
            "all outputs",
            daemon.output,
        )
        for rel, words in expected.items():
            assert _text(out / rel) == words, rel
        for fmt in ("json", "srt", "vtt"):
            assert (out / f"go.raw.{fmt}").exists()
        doc = json.loads((out / "alice_20261124_call.wav.json").read_text())
        assert doc["source_path"] == str(inbox / "alice_20261124_call.wav")
        assert doc["fingerprint"].startswith("sha256:") and doc["stream_id"]
        assert doc["utterances"][0]["words"]
        error = json.loads((out / "bad.wav.error.json").read_text())
        assert "bad.wav" in error["reason"] and error["error"] is True
        assert not (out / "notes.txt.txt").exists() and not (out / ".hidden.wav.txt").exists()

        streams = {s["source"]: s for s in server_streams(srv)}
        tags = streams[str(inbox / "alice_20261124_call.wav")]["tags"]
        assert tags == {"channel": "sales", "agent": "alice", "date": "20261124"}
        # a WAV header wins over the watch's format fields: they are not sent for WAV files
        assert streams[str(inbox / "moved.wav")]["format"]["samprate"] == 16000

        # one file.detected and one stream.submitted line per file, with path and stream_id
        submitted = daemon.events("stream.submitted")
        paths = [e["path"] for e in submitted]
        assert len(paths) == len(set(paths)) == 5
        for e in daemon.events("file.detected") + submitted:
            assert os.path.isabs(e["path"]) and e["stream_id"] and e["level"] == "info"
            assert e["timestamp"].endswith("Z") and len(e["timestamp"]) == 27
        errors = daemon.events("stream.error")
        assert len(errors) == 1 and errors[0]["path"].endswith("bad.wav")

        # touched, same content: not decoded again; new content: a new version
        os.utime(inbox / "go.raw")
        shutil.copy(TESTDATA / "something.raw", inbox / "alice_20261124_call.raw")
        wait_for(lambda: (out / "alice_20261124_call.raw.txt").exists(), 60, "raw", daemon.output)
        time.sleep(1.5)
        assert len(daemon.events("stream.submitted")) == 6
    finally:
        assert daemon.stop() == 0
    assert "daemon.stopping" in daemon.output()


def test_sigkill_mid_burst_then_restart_decodes_each_file_once(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(
        work,
        srv,
        [
            {
                "path": str(inbox),
                "settle": "500ms",
                "output": {"dir": str(out), "formats": ["txt", "json"]},
            }
        ],
    )
    names = [f"burst{i:03d}.wav" for i in range(40)]
    daemon = DaemonProc(cfg).start()
    for i, name in enumerate(names):
        shutil.copy(TESTDATA / ("001.wav" if i % 2 else "004.wav"), inbox / name)
    wait_for(lambda: len(list(out.glob("*.txt"))) >= 3, 90, "first outputs", daemon.output)
    daemon.kill()
    done_before = len(list(out.glob("*.txt")))
    assert done_before < len(names), "the burst finished before the kill; nothing was tested"
    again = DaemonProc(cfg).start()
    try:
        wait_for(
            lambda: len(list(out.glob("*.txt"))) == len(names), 120, "all outputs", again.output
        )
    finally:
        again.stop()
    mine = [s for s in server_streams(srv) if s["source"].startswith(str(inbox))]
    assert len(mine) == len(names)  # one stream per file, however often it was sent
    assert all(s["attempts"] == 1 and s["status"] == "DONE" for s in mine)
    for name in names:
        want = "ten of clubs" if int(name[5:8]) % 2 else "five five"
        assert _text(out / f"{name}.txt") == want, name


def test_server_outage_loses_nothing(tmp_path: Path) -> None:
    speech_file("001.wav")
    work = tmp_path / "w"
    inbox, out = work / "inbox", work / "out"
    inbox.mkdir(parents=True)
    srv = SvServer(tmp_path / "sv", args=["--allow-root", str(work)], workers=1).start()
    cfg = write_config(
        work,
        srv,
        [{"path": str(inbox), "settle": "300ms", "output": {"dir": str(out), "formats": ["txt"]}}],
    )
    daemon = DaemonProc(cfg).start()
    try:
        shutil.copy(TESTDATA / "001.wav", inbox / "before.wav")
        wait_for(lambda: (out / "before.wav.txt").exists(), 60, "first", daemon.output)
        srv.stop()
        for i in range(5):
            shutil.copy(TESTDATA / "004.wav", inbox / f"during{i}.wav")
        wait_for(
            lambda: daemon.events("server.unreachable") != [], 30, "outage noticed", daemon.output
        )
        time.sleep(2)
        assert not list(out.glob("during*"))
        srv.start()  # same port, same data
        wait_for(lambda: len(list(out.glob("during*.txt"))) == 5, 120, "backlog", daemon.output)
        assert daemon.events("server.reachable")
    finally:
        daemon.stop()
        srv.stop()


def test_slow_writer_is_never_submitted_half_written(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(
        work,
        srv,
        [{"path": str(inbox), "settle": "1500ms", "output": {"dir": str(out), "formats": ["txt"]}}],
    )
    daemon = DaemonProc(cfg).start()
    try:
        data = (TESTDATA / "something.raw").read_bytes()
        raw_meta = inbox / ".svwatchd.yaml"
        raw_meta.write_text("samprate: 16k\nencoding: SPCM\nsampwidth: 2\n")
        with open(inbox / "slow.raw", "wb") as f:  # one open, written over 4 s
            step = len(data) // 8
            for i in range(0, len(data), step):
                f.write(data[i : i + step])
                f.flush()
                time.sleep(0.5)
        wait_for(lambda: (out / "slow.raw.txt").exists(), 60, "slow.raw", daemon.output)
        assert _text(out / "slow.raw.txt") == "go somewhere and do something"
        assert len(daemon.events("stream.submitted")) == 1
    finally:
        daemon.stop()


def test_sighup_reload_adds_a_watch_and_keeps_a_bad_config_out(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    first, second, out = work / "inbox", work / "second", work / "out"
    second.mkdir()
    one = {"path": str(first), "settle": "300ms", "output": {"dir": str(out), "formats": ["txt"]}}
    two = {
        "path": str(second),
        "settle": "300ms",
        "output": {"dir": str(out / "2"), "formats": ["txt"]},
    }
    cfg = write_config(work, srv, [one])
    daemon = DaemonProc(cfg).start()
    try:
        write_config(work, srv, [one, two])
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: daemon.events("config.reloaded") != [], 30, "reload", daemon.output)
        shutil.copy(TESTDATA / "001.wav", second / "x.wav")
        wait_for(lambda: (out / "2" / "x.wav.txt").exists(), 60, "second watch", daemon.output)
        cfg.write_text("watches: [{path: 12}]\nbogus: 1\n")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: daemon.events("config.invalid") != [], 30, "invalid", daemon.output)
        shutil.copy(TESTDATA / "001.wav", first / "y.wav")
        wait_for(lambda: (out / "y.wav.txt").exists(), 60, "old config still runs", daemon.output)
    finally:
        daemon.stop()


def test_pause_windows_pause_and_resume_own_streams(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(
        work,
        srv,
        [{"path": str(inbox), "settle": "200ms", "output": {"dir": str(out), "formats": ["txt"]}}],
        policy={"pause_windows": ["daily 09:00-17:00"], "timezone": "UTC"},
    )
    clock = {"now": datetime(2026, 11, 24, 10, 0, tzinfo=UTC)}  # inside the window
    daemon = Daemon(load_config(cfg), wallclock=lambda: clock["now"])
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        shutil.copy(TESTDATA / "005.wav", inbox / "p.wav")
        wait_for(
            lambda: any(
                s["status"] == "PAUSED" and s["source"] == str(inbox / "p.wav")
                for s in server_streams(srv)
            ),
            60,
            "paused inside the window",
        )
        time.sleep(1.0)
        assert not (out / "p.wav.txt").exists()
        clock["now"] = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # outside
        wait_for(lambda: (out / "p.wav.txt").exists(), 60, "resumed outside the window")
    finally:
        daemon.stop()
        runner.join(60)
