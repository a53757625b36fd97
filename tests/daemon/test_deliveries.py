"""Notifications owed in the journal: committed with the file's end, once, migrated forward.

A real journal on disk (SQLite, WAL); the end-to-end behaviour (receiver,
SIGKILL, restart) is in ``test_webhooks.py``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from svwatchd.daemon._deliveries import DeliveryLog, delivery_id, notice, notices
from svwatchd.daemon._identity import FileIdentity
from svwatchd.daemon._journal import SCHEMA_VERSION, FileState, Journal
from svwatchd.daemon._journal_read import JournalReader
from svwatchd.daemon._journal_types import MIGRATIONS
from svwatchd.daemon._notifier import backoff
from svwatchd.daemon._notifyconfig import ExecConfig, NotifyConfig, WebhookConfig
from svwatchd.daemon._watchconfig import WatchId

BOTH = NotifyConfig(
    WebhookConfig("http://127.0.0.1:9/h", Path("/k"), b"k"), ExecConfig(("/bin/true",))
)


def _row(journal: Journal, name: str = "a.wav") -> int:
    ident = FileIdentity(f"/w/{name}", 1, 2, 3, 4, "sha256:" + "0" * 64)
    journal.upsert_seen_batch([(ident, WatchId("/w"))])
    return journal.latest_many([ident.path])[ident.path].id


def test_done_and_the_deliveries_it_owes_commit_together_and_once(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        file_id = _row(j)
        (row,) = j.by_state(FileState.PENDING)
        doc = notice(row, "done", outputs=["/o/a.wav.txt"], duration=1.5, language="en")
        owed = notices(BOTH, row, doc, now=100.0)

        def crash(db: sqlite3.Connection) -> None:
            owed(db)
            raise RuntimeError("the process dies inside the transaction")

        with pytest.raises(RuntimeError):
            j.mark_done(file_id, extra=crash)
        assert j.by_state(FileState.DONE) == []  # rolled back: neither the state...
        log = DeliveryLog(j)
        assert log.counts()["PENDING"] == 0  # ...nor the deliveries

        assert j.mark_done(file_id, extra=owed)
        assert j.mark_done(file_id, extra=owed)  # DONE again (a rewrite): nothing owed twice
        due = log.due(200.0, 10, watches=["/w"])
        assert sorted(d.channel for d in due) == ["exec", "webhook"]
        assert {d.id for d in due} == {delivery_id(row.path, row.fingerprint, "done")}
        assert due[0].document["outputs"] == ["/o/a.wav.txt"]
        assert log.due(50.0, 10, watches=["/w"]) == []  # not due before it was owed
        assert log.due(200.0, 10, watches=["/other"]) == []  # a removed watch's wait

        webhook = next(d for d in due if d.channel == "webhook")
        assert log.retry_later(webhook, "HTTP 500", next_at=300.0) == 1
        assert [d.channel for d in log.due(250.0, 10, watches=["/w"])] == ["exec"]
        assert log.sent(webhook, 400.0) and not log.sent(webhook, 401.0)
        assert log.counts() == {"PENDING": 1, "SENT": 1, "FAILED": 0}


def test_a_file_that_fails_owes_only_the_events_a_channel_wants(tmp_path: Path) -> None:
    only_done = NotifyConfig(exec=ExecConfig(("/bin/true",), events=frozenset({"done"})))
    with Journal(tmp_path) as j:
        file_id = _row(j)
        (row,) = j.by_state(FileState.PENDING)
        doc = notice(row, "error", outputs=[], error="bad header")
        assert j.mark_failed(file_id, "bad header", extra=notices(only_done, row, doc, now=1.0))
        assert DeliveryLog(j).counts()["PENDING"] == 0


def test_version_2_journal_migrates_to_deliveries_and_output_claims(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "journal.db") as db:
        db.executescript(MIGRATIONS[1])
        db.executescript(MIGRATIONS[2])
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.close()
    with JournalReader.open_readonly(tmp_path) as old, pytest.raises(sqlite3.OperationalError):
        old.read("SELECT COUNT(*) FROM deliveries")  # svwatchd status reports zeros then
    with Journal(tmp_path) as j:
        assert j.read("SELECT value FROM meta")[0][0] == str(SCHEMA_VERSION) == "3"
        file_id = _row(j)
        claim = Journal.claim_outputs(["/o/a.txt"], file_id, "/w/a.wav")
        assert j.mark_done(file_id, extra=claim)
        assert j.output_owners(["/o/a.txt", "/o/b.txt"]) == {"/o/a.txt": "/w/a.wav"}


def test_backoff_is_exponential_jittered_and_capped() -> None:
    first = [backoff(1) for _ in range(50)]
    assert all(0.5 <= w <= 1.0 for w in first) and len(set(first)) > 1  # jitter
    assert all(2.0 <= backoff(3) <= 2.5 for _ in range(20))
    assert backoff(30) == 60.0  # capped
