"""What the daemon does when svserver says no: a file it refuses (the refusal's message in
the file's ``.error.json``, never retried) and a token-protected server (the token from
``token_file``; a wrong one keeps every file waiting, none failed)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tests.conftest import TESTDATA, speech_file
from tests.daemon.daemon_harness import DaemonProc, inbox_watch, wait_for, write_config
from tests.normalise import normalise
from tests.svserver import SvServer


def test_a_file_svserver_refuses_gets_its_reason_and_is_not_retried(
    area: tuple[SvServer, Path], work: Path
) -> None:
    """pocketsphinx hears English only, so svserver refuses a stream tagged German."""
    srv, _ = area
    watch = inbox_watch(work, metadata={"language": "de"}, output={"dir": str(work / "out")})
    daemon = DaemonProc(write_config(work, srv, [watch])).start()
    try:
        shutil.copy(TESTDATA / "001.wav", work / "staged.wav")
        (work / "staged.wav").rename(work / "inbox" / "karte.wav")
        error = work / "out" / "karte.wav.error.json"
        wait_for(error.exists, 60, "the refusal's .error.json", daemon.output)
        text = json.dumps(json.loads(error.read_text()))
        assert str(work / "inbox" / "karte.wav") in text
        assert "refused" in text and "English-only" in text and "'de'" in text
        time.sleep(2.0)  # several refresh intervals (300 ms): nothing is tried again
        errors = [e for e in daemon.events("stream.error") if e["path"].endswith("karte.wav")]
        assert len(errors) == 1
        assert not [e for e in daemon.events("stream.submitted") if e["path"].endswith("karte.wav")]
        assert not (work / "out" / "karte.wav.txt").exists()
    finally:
        daemon.stop()


def test_the_daemon_sends_its_token_and_a_wrong_one_fails_nothing(tmp_path: Path) -> None:
    speech_file("001.wav")
    work = tmp_path / "work"
    (work / "inbox").mkdir(parents=True)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    wrong = tmp_path / "wrong-token"
    wrong.write_text("guess\n")
    srv = SvServer(
        tmp_path / "data", args=["--token-file", str(token), "--allow-root", str(work)], workers=1
    ).start()
    try:
        server = {"url": srv.url, "token_file": str(wrong), "timeout": "10s"}
        config = write_config(work, server, [inbox_watch(work)])
        daemon = DaemonProc(config).start()
        try:
            shutil.copy(TESTDATA / "001.wav", work / "staged.wav")
            (work / "staged.wav").rename(work / "inbox" / "cards.wav")
            wait_for(lambda: daemon.events("server.refused"), 60, "server.refused", daemon.output)
            refused = daemon.events("server.refused")[0]
            assert refused["status"] == 401
            assert not list(work.glob("out/*.error.json"))  # the file waits; nothing failed
        finally:
            daemon.stop()
        # the right token: the file that waited is transcribed
        server["token_file"] = str(token)
        daemon = DaemonProc(write_config(work, server, [inbox_watch(work)])).start()
        try:
            out = work / "out" / "cards.wav.txt"
            wait_for(out.exists, 60, "the transcript", daemon.output)
            assert normalise(out.read_text()) == "ten of clubs"
        finally:
            daemon.stop()
    finally:
        srv.stop()


def test_a_restarted_daemon_never_sends_an_acknowledged_file_again(
    area: tuple[SvServer, Path], work: Path
) -> None:
    """Exactly once, checked in the daemon itself (not only by the server's idempotent
    ids): killed with SIGKILL as soon as a file's submission is acknowledged, then started
    again, then stopped and started once more after the transcript exists, the daemon
    never logs a second ``stream.submitted`` for it and never rewrites its outputs."""
    srv, _ = area
    config = write_config(work, srv, [inbox_watch(work, output={"dir": str(work / "out")})])
    daemon = DaemonProc(config).start()
    shutil.copy(TESTDATA / "005.wav", work / "staged.wav")
    (work / "staged.wav").rename(work / "inbox" / "cards.wav")
    wait_for(lambda: daemon.events("stream.submitted"), 60, "the submission", daemon.output)
    daemon.kill()  # acknowledged: the journal has it INFLIGHT (or done already)
    out = work / "out" / "cards.wav.txt"
    for restart in range(2):
        before = len(daemon.events())
        daemon = DaemonProc(config).start()
        try:
            wait_for(out.exists, 60, "the transcript", daemon.output)
            written = out.stat().st_mtime_ns
            time.sleep(1.5)  # a few refreshes and steps of the restarted daemon
            again = daemon.events()[before:]
            assert not [e for e in again if e.get("event") == "stream.submitted"], restart
            if restart:  # started after the transcript existed: nothing is written again
                assert not [e for e in again if e.get("event") == "output.written"]
            assert out.stat().st_mtime_ns == written
        finally:
            daemon.stop()
    (submitted,) = daemon.events("stream.submitted")
    assert submitted["path"] == str(work / "inbox" / "cards.wav")
    assert "eight of spades" in normalise(out.read_text())


def test_a_stream_the_server_lost_is_sent_again_once(tmp_path: Path) -> None:
    """svserver's data is lost (a new disk, a wiped data dir) while a file is in flight:
    the daemon's next refresh finds the stream missing, logs ``stream.lost`` and sends it
    again under the same id, once (a submission to the new server: ``stream.submitted``
    again); the transcript is written."""
    speech_file("001.wav")
    work = tmp_path / "work"
    (work / "inbox").mkdir(parents=True)
    data = tmp_path / "data"
    srv = SvServer(data, args=["--allow-root", str(work)], workers=1).start()
    try:
        watch = inbox_watch(work, output={"dir": str(work / "out")})
        daemon = DaemonProc(write_config(work, srv, [watch], refresh_interval="4s")).start()
        try:
            shutil.copy(TESTDATA / "001.wav", work / "staged.wav")
            (work / "staged.wav").rename(work / "inbox" / "cards.wav")
            wait_for(lambda: daemon.events("stream.submitted"), 60, "submitted", daemon.output)
            srv.stop()  # before the daemon's next refresh (4 s): the server forgets it
            shutil.rmtree(data)
            srv.start()
            out = work / "out" / "cards.wav.txt"
            wait_for(out.exists, 90, "the transcript", daemon.output)
            assert normalise(out.read_text()) == "ten of clubs"
            (lost,) = daemon.events("stream.lost")
            first, again = daemon.events("stream.submitted")  # to each server that had it
            assert lost["stream_id"] == first["stream_id"] == again["stream_id"]
            assert lost["path"] == str(work / "inbox" / "cards.wav")
            lines = daemon.output().splitlines()
            assert lines.index(next(x for x in lines if '"stream.lost"' in x)) < max(
                i for i, x in enumerate(lines) if '"stream.submitted"' in x
            )
            time.sleep(1.0)
            assert len(daemon.events("stream.submitted")) == 2  # sent again once, no more
        finally:
            daemon.stop()
    finally:
        srv.stop()
