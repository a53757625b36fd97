"""The submitter and the collector driven step by step: one submission path, and one file
that a step cannot handle never stops the step for the others.

Real journal, real svserver (pocketsphinx), real files, the daemon's own stages
(`tests.daemon.stages`); no daemon loop, so a test can act between two steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream
from svwatchd.daemon import _submit as submit
from svwatchd.daemon._config import Policy
from svwatchd.daemon._journal import FileState
from svwatchd.daemon._metadata import MetadataResolver
from svwatchd.daemon._sender import Batch, Sender
from svwatchd.errors import ServerUnavailableError
from tests.conftest import TESTDATA
from tests.daemon.stages import stages
from tests.svserver import SvServer, free_port

pytestmark = pytest.mark.timeout(300)

S = FileState
RAW = {"samprate": "16k", "encoding": "SPCM", "sampwidth": 2}


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def _isolated(metrics_text: str, step: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'svwatchd_files_isolated_total{{step="{step}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _metrics_text(st: Any) -> str:
    from prometheus_client import generate_latest

    return generate_latest(st.metrics.registry).decode()


# -- one submission path ----------------------------------------------------------------


def test_error_retry_goes_back_through_the_journal_and_the_submitter(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    tiny = work / "inbox" / "tiny.raw"
    tiny.write_bytes(b"\x01")  # less than one frame: the server ends it in ERROR
    with (
        capture_logs() as logs,
        stages(work, srv.url, policy=Policy(retry_errors=1), metadata=RAW) as st,
    ):
        st.record(tiny)
        st.submitted(tiny)
        sid = st.row(tiny).stream_id
        st.until(lambda: st.on_server(tiny)[0] == "ERROR", "the first attempt's ERROR")
        st.collector.step()
        assert not st.collector.drain()
        # the collector sent nothing itself: the row is back to SUBMITTING under the same
        # id (one transaction with the attempt count), the server's stream untouched
        row = st.row(tiny)
        assert (row.state, row.stream_id, row.attempts) == (S.SUBMITTING, sid, 1)
        assert st.on_server(tiny) == ("ERROR", 1)
        (retry,) = _events(logs, "stream.retry")
        assert retry["attempt"] == 1 and retry["path"] == str(tiny) and retry["stream_id"] == sid
        # the submitter sends it (same id: the server re-queues the one stream)
        st.submitted(tiny)
        st.until(lambda: st.on_server(tiny) == ("ERROR", 2), "the retry's ERROR")
        st.collector.step()
        st.collector.drain()
        row = st.row(tiny)
        assert (row.state, row.attempts) == (S.FAILED, 2)  # retry_errors: 1, then the end
    error = json.loads((work / "out" / "tiny.raw.error.json").read_text())
    assert error["stream_id"] == sid and "tiny.raw" in error["reason"]
    assert len(_events(logs, "stream.retry")) == 1
    (submitted,) = _events(logs, "stream.submitted")  # one line per file, not per attempt
    assert submitted["path"] == str(tiny) and submitted["stream_id"] == sid
    (failed,) = _events(logs, "stream.error")
    assert failed["path"] == str(tiny) and failed["stream_id"] == sid


# -- one file never stops a step --------------------------------------------------------


def test_a_stream_deleted_between_refresh_and_drain_holds_up_no_other(
    area: tuple[SvServer, Path], work: Path
) -> None:
    """A real trigger: an operator deletes a finished stream (svctl delete) after the
    refresh saw it DONE and before its outputs were written (a backlog widens the gap)."""
    srv, _ = area
    files = [work / "inbox" / f"{name}.wav" for name in ("a", "b", "c")]
    for f in files:
        shutil.copy(TESTDATA / "001.wav", f)
    with capture_logs() as logs, stages(work, srv.url) as st:
        st.record(*files)
        st.submitted(*files)
        st.until(lambda: all(st.on_server(f)[0] == "DONE" for f in files), "decoded")
        st.collector.step()  # all three queued as finished
        handles, _ = st.server.getstreamsbyid([st.row(files[0]).stream_id or ""])
        assert st.server.deletestreams(handles)
        assert not st.collector.drain()  # one pass over the three: none left queued
        assert [st.row(f).state for f in files] == [S.INFLIGHT, S.DONE, S.DONE]
        assert (work / "out" / "b.wav.txt").exists() and (work / "out" / "c.wav.txt").exists()
        (isolated,) = _events(logs, "file.step_failed")
        assert isolated["step"] == "collect" and isolated["path"] == str(files[0])
        assert isolated["stream_id"] == st.row(files[0]).stream_id
        assert "409" in isolated["error"] and "deleted" in isolated["error"]
        assert _isolated(_metrics_text(st), "collect") == 1
        # the next refresh sees the stream as it now stands, and the file ends cleanly
        st.collector.step()
        st.collector.drain()
        assert st.row(files[0]).state is S.FAILED
    error = json.loads((work / "out" / "a.wav.error.json").read_text())
    assert "deleted on the server" in error["reason"]
    assert len(_events(logs, "file.step_failed")) == 1


def test_a_file_that_fails_preparation_is_held_and_the_others_go(
    area: tuple[SvServer, Path], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected fault: no input is known that makes metadata resolution raise anything
    unforeseen any more (bad YAML, unknown tags and deep nesting hold the file through
    ``metadata.invalid``), so a resolver that raises for one file stands in for the next
    such bug."""
    srv, _ = area
    files = [work / "inbox" / f"{name}.wav" for name in ("a", "poison", "c")]
    for f in files:
        shutil.copy(TESTDATA / "001.wav", f)
    resolve = MetadataResolver.resolve

    def faulty(self: MetadataResolver, path: Path) -> Any:
        if path.name == "poison.wav":
            raise RuntimeError("an unforeseen bug")
        return resolve(self, path)

    monkeypatch.setattr(MetadataResolver, "resolve", faulty)
    with capture_logs() as logs, stages(work, srv.url) as st:
        st.record(*files)
        st.submitted(files[0], files[2])
        poison = st.row(files[1])
        assert poison.state is S.HELD
        assert poison.last_error == "could not prepare it: RuntimeError: an unforeseen bug"
        for _ in range(5):
            st.submitter.step()  # held: not tried again at every turn
        (isolated,) = _events(logs, "file.step_failed")
        assert isolated["step"] == "prepare" and isolated["path"] == str(files[1])
        assert isinstance(isolated["exc_info"], RuntimeError)  # logged with its traceback
        assert _isolated(_metrics_text(st), "prepare") == 1
        # the fault fixed (an upgrade and a restart release held files): it goes too
        monkeypatch.setattr(MetadataResolver, "resolve", resolve)
        assert st.journal.release_held() == 1
        st.submitted(files[1])


def test_a_file_that_fails_building_fails_alone(
    area: tuple[SvServer, Path], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected fault: the Stream constructor turns every input problem into an
    InvalidStreamError, so a constructor that raises something else for one file stands
    in for a bug there."""
    srv, _ = area
    files = [work / "inbox" / f"{name}.wav" for name in ("a", "poison", "c")]
    for f in files:
        shutil.copy(TESTDATA / "001.wav", f)

    def faulty(path: str, **metadata: Any) -> Stream:
        if path.endswith("poison.wav"):
            raise RuntimeError("an unforeseen bug")
        return Stream(path, **metadata)

    monkeypatch.setattr(submit, "Stream", faulty)
    with capture_logs() as logs, stages(work, srv.url) as st:
        st.record(*files)
        st.submitted(files[0], files[2])
        st.until(lambda: st.row(files[1]).state is S.FAILED, "the poisoned file failed")
        (isolated,) = _events(logs, "file.step_failed")
        assert isolated["step"] == "build" and isolated["path"] == str(files[1])
        assert _isolated(_metrics_text(st), "build") == 1
    error = json.loads((work / "out" / "poison.wav.error.json").read_text())
    assert error["reason"] == "could not build its stream: RuntimeError: an unforeseen bug"


# -- the sender owns nothing but its sends ----------------------------------------------


def test_sender_reports_failures_and_hands_back_older_batches_unsent(work: Path) -> None:
    """Against a port nobody listens on (a real refused connection)."""
    server = Server(f"http://127.0.0.1:{free_port()}", timeout=5)
    stream = Stream(str(TESTDATA / "001.wav"))
    stream.id = "f-test"
    row: Any = object()  # the sender never reads rows: it only passes them back
    reports = []
    sender = Sender(attempts=2)
    try:
        first = Batch(server, 1.0, {stream.id: row}, [stream])
        sender.put(first)
        second = Batch(server, 2.0, {stream.id: row}, [stream])
        sender.put(second)  # made before the first one's failure is known
        while len(reports) < 2:
            reports += sender.reports()
    finally:
        sender.close()
        server.close()
    assert reports[0].batch is first and isinstance(reports[0].error, ServerUnavailableError)
    assert reports[0].retries == 1
    assert reports[1].batch is second and reports[1].skipped and reports[1].error is None
