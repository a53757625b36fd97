"""The daemon's journal: states, versions, the lock, crashes, corruption, disk full, scale."""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from svwatchd.daemon._identity import FileIdentity, identify, stream_id_for
from svwatchd.daemon._journal import (
    SCHEMA_VERSION,
    FileRecord,
    FileState,
    Journal,
)
from svwatchd.daemon._journal_read import JournalReader
from svwatchd.daemon._journal_types import MIGRATIONS
from svwatchd.daemon._watchconfig import WatchId
from svwatchd.errors import JournalWriteError, SchemaVersionError, StateLockedError, SvwatchdError

S = FileState


def fake(i: int, *, path: str | None = None, content: int | None = None) -> FileIdentity:
    """An identity without a file behind it (the journal never reads files)."""
    c = i if content is None else content
    return FileIdentity(
        path or f"/w/f{i}.wav", 100 + c, 10**18 + c, 1000 + i, 42, f"sha256:{c:064x}"
    )


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def row_of(j: JournalReader, path: str, fingerprint: str) -> FileRecord | None:
    """The row of this version, found with the journal's own queries."""
    rows = [r for r in j.by_state(*S) if (r.path, r.fingerprint) == (path, fingerprint)]
    return rows[0] if rows else None


def row(j: JournalReader, file_id: int) -> FileRecord:
    """The row with this id, found with the journal's own queries."""
    return next(r for r in j.by_state(*S) if r.id == file_id)


def seen(j: Journal, ident: FileIdentity, watch: str = "w") -> FileRecord:
    """Record ``ident`` as its path's content (the journal's one recording call); its row."""
    j.upsert_seen_batch([(ident, WatchId(watch))])
    found = row_of(j, ident.path, ident.fingerprint)
    assert found is not None
    return found


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "state") as j:
        yield j


# -- the lock ---------------------------------------------------------------------------


def test_second_journal_in_process_is_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    with pytest.raises(StateLockedError) as err:
        Journal(tmp_path)
    msg = str(err.value)
    assert "Another svwatchd" in msg and str(tmp_path / "journal.lock") in msg
    assert str(os.getpid()) in msg and err.value.pid == os.getpid()
    assert isinstance(err.value, SvwatchdError)
    first.close()
    Journal(tmp_path).close()  # free again once closed


def test_second_daemon_process_is_refused(tmp_path: Path) -> None:
    held = Journal(tmp_path)
    try:
        res = run_python(
            """
            import sys
            from svwatchd.daemon._journal import Journal
            from svwatchd.errors import StateLockedError
            try:
                Journal(sys.argv[1])
            except StateLockedError as e:
                print(e)
                sys.exit(3)
            """,
            str(tmp_path),
        )
        assert res.returncode == 3, res.stderr
        assert f"PID {os.getpid()}" in res.stdout and "journal.lock" in res.stdout
    finally:
        held.close()


def test_lock_of_a_killed_daemon_is_released(tmp_path: Path) -> None:
    code = (
        "import sys; from svwatchd.daemon._journal import Journal; j = Journal(sys.argv[1]); "
        "print('open', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "open\n"
            with pytest.raises(StateLockedError) as err:
                Journal(tmp_path)
            assert err.value.pid == child.pid
        finally:
            child.kill()
    Journal(tmp_path).close()  # the kernel released the flock with the process


# -- versions and states ----------------------------------------------------------------


def test_upsert_is_idempotent(journal: Journal) -> None:
    a = seen(journal, fake(1), "w")
    assert a.state is S.PENDING and a.attempts == 0 and a.stream_id is None
    assert seen(journal, fake(1), "w") == a
    assert journal.size() == 1
    assert row_of(journal, a.path, a.fingerprint) == a and row(journal, a.id) == a
    # one transaction for a burst: each item says whether it became PENDING
    assert journal.upsert_seen_batch([(fake(1), WatchId("w")), (fake(2), WatchId("w"))]) == [
        False,
        True,
    ]


def test_state_transitions(journal: Journal) -> None:
    a = seen(journal, fake(1), "calls")
    assert not journal.mark_inflight([a.id])  # not submitted yet: refused, left alone
    assert journal.mark_held(a.id, "metadata file a.wav.yaml: bad samprate")
    assert row(journal, a.id).state is S.HELD
    assert journal.release_held(watch="calls") == 1
    sid = stream_id_for(a.path, a.fingerprint)
    meta = {"samprate": 8000}
    assert journal.record_error(a.id, "not in flight", retries=5) == 0  # left alone
    assert journal.mark_submitting([a.id], [sid], [meta]) == [a.id]
    submitting = row(journal, a.id)
    assert submitting.state is S.SUBMITTING and submitting.stream_id == sid
    assert submitting.metadata == meta and submitting.submitted is not None
    assert journal.mark_inflight([a.id]) == 1
    # A row keeps its first stream id: another id is refused (it would be a second stream).
    assert journal.mark_submitting([a.id], ["other-id"], [meta]) == []
    assert row(journal, a.id).stream_id == sid
    # A stream that ended in ERROR: counted, and back to SUBMITTING with the same id and
    # metadata while retries are left (one transaction), left INFLIGHT when none are.
    assert journal.record_error(a.id, "decoding failed", retries=1) == 1
    retried = row(journal, a.id)
    assert retried.state is S.SUBMITTING and retried.stream_id == sid
    assert retried.metadata == meta and retried.last_error == "decoding failed"
    assert journal.mark_inflight([a.id]) == 1
    assert journal.record_error(a.id, None, retries=1) == 2
    exhausted = row(journal, a.id)
    assert exhausted.state is S.INFLIGHT and exhausted.last_error == "decoding failed"
    assert journal.mark_done(a.id)
    done = row(journal, a.id)
    assert done is not None and done.state is S.DONE and done.finished is not None
    assert not journal.mark_failed(a.id, "late")  # a success is never turned into a failure
    assert not journal.mark_submitting([a.id], [sid], [meta])  # never decoded twice

    b = seen(journal, fake(2), "calls")
    assert journal.mark_failed(b.id, "not an audio file")
    c = seen(journal, fake(3), "other")
    assert journal.mark_removed(c.id)
    assert journal.counts_by_watch() == {
        "calls": {S.DONE: 1, S.FAILED: 1},
        "other": {S.REMOVED: 1},
    }
    errors = journal.last_errors(5)  # a's error is over (DONE); b's stands
    assert [(e.path, e.last_error) for e in errors] == [(b.path, "not an audio file")]
    assert journal.known_paths("calls") == {a.path, b.path}
    assert journal.known_paths("other") == set()  # removed: a rescan ingests it again
    assert journal.oldest_pending() is None
    d = seen(journal, fake(4), "calls")
    e = seen(journal, fake(5), "calls")
    assert journal.oldest_pending() == d
    assert journal.mark_held(d.id, "broken metadata")
    assert journal.oldest_pending() == row(journal, d.id)  # held files wait too
    assert [(r.id, r.last_error) for r in journal.held(5)] == [(d.id, "broken metadata")]
    assert [r.id for r in journal.by_state(S.PENDING, S.HELD, limit=1)] == [d.id]
    assert [r.id for r in journal.by_state(S.PENDING, S.DONE)] == [a.id, e.id]
    assert journal.by_state(S.PENDING, watches=[WatchId("other")]) == []
    assert journal.count(S.DONE, S.PENDING, watches=[WatchId("calls"), WatchId("x")]) == 2


def test_mark_submitting_skips_rows_superseded_meanwhile(journal: Journal) -> None:
    old = seen(journal, fake(1, path="/w/a.wav", content=1), "w")
    new = seen(journal, fake(1, path="/w/a.wav", content=2), "w")
    ids = journal.mark_submitting([old.id, new.id], ["s-old", "s-new"], [None, None])
    assert ids == [new.id]
    assert row(journal, old.id).state is S.SUPERSEDED


def test_touched_file_is_not_a_new_version(journal: Journal, tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"audio")
    first = seen(journal, identify(f), "w")
    journal.mark_submitting([first.id], ["s1"], [{}])
    os.utime(f, ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    touched = identify(f)
    again = seen(journal, touched, "w")
    assert again.id == first.id and journal.size() == 1
    assert again.state is S.SUBMITTING and again.stream_id == "s1"  # state untouched
    assert again.mtime_ns == touched.mtime_ns  # stat cache refreshed: no rehash next time
    latest = journal.latest_many([str(f)])[str(f)]
    assert latest.identity.same_stat(f.stat())


def test_changed_content_is_a_new_version(journal: Journal, tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"take one")
    v1 = seen(journal, identify(f), "w")
    f.write_bytes(b"take two")
    v2 = seen(journal, identify(f), "w")
    assert v2.id != v1.id and v2.fingerprint != v1.fingerprint
    assert row(journal, v1.id).state is S.SUPERSEDED
    # v2 goes in flight; a third version must not supersede it: both get outputs, in order.
    journal.mark_submitting([v2.id], ["s2"], [{}])
    journal.mark_inflight([v2.id])
    f.write_bytes(b"take three")
    v3 = seen(journal, identify(f), "w")
    assert row(journal, v2.id).state is S.INFLIGHT
    assert [r.id for r in journal.by_state(S.INFLIGHT, S.PENDING)] == [v2.id, v3.id]
    assert journal.latest_many([str(f)]) == {str(f): v3}
    # The first content coming back revives its never-decoded version.
    f.write_bytes(b"take one")
    back = seen(journal, identify(f), "w")
    assert back.id == v1.id and back.state is S.PENDING
    assert row(journal, v3.id).state is S.SUPERSEDED


def test_inode_reuse_is_a_new_version(journal: Journal, tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"first")
    v1 = seen(journal, identify(f), "w")
    journal.mark_submitting([v1.id], ["s1"], [{}])
    journal.mark_inflight([v1.id])
    journal.mark_done(v1.id)
    f.unlink()
    f.write_bytes(b"other")  # likely the same inode, certainly other content
    v2 = seen(journal, identify(f), "w")
    assert v2.id != v1.id and v2.state is S.PENDING
    assert row(journal, v1.id).state is S.DONE


def test_same_content_under_two_paths(journal: Journal, tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"same")
    (tmp_path / "b.wav").write_bytes(b"same")
    a = seen(journal, identify(tmp_path / "a.wav"), "w")
    b = seen(journal, identify(tmp_path / "b.wav"), "w")
    assert a.id != b.id and a.fingerprint == b.fingerprint
    assert stream_id_for(a.path, a.fingerprint) != stream_id_for(b.path, b.fingerprint)


def test_removed_file_that_returns_is_pending_again(journal: Journal) -> None:
    a = seen(journal, fake(1), "w")
    assert journal.mark_removed(a.id)
    assert seen(journal, fake(1), "w").state is S.PENDING


def test_state_survives_reopen(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        a = seen(j, fake(1), "w")
        j.mark_submitting([a.id], ["s1"], [{"k": "v"}])
    with Journal(tmp_path) as j:
        reopened = row(j, a.id)
        assert reopened.state is S.SUBMITTING and reopened.metadata == {"k": "v"}


def test_rebuild_from_outputs_and_server(journal: Journal) -> None:
    a, b, c = fake(1), fake(2), fake(3)
    seen(journal, c, "/w")  # the rescan found c; the server has its stream
    sid_c = stream_id_for(c.path, c.fingerprint)
    outputs: list[dict[str, object]] = [
        {"source_path": a.path, "fingerprint": a.fingerprint, "stream_id": "sa"},
        {"source_path": a.path, "fingerprint": a.fingerprint, "stream_id": "sa", "error": True},
        {"source_path": b.path, "fingerprint": b.fingerprint, "stream_id": "sb", "error": True,
         "message": "not audio"},
    ]  # fmt: skip
    streams = [{"id": sid_c, "status": "ACTIVE", "source": c.path}, {"id": "x", "status": "DONE"}]
    report = journal.rebuild(outputs, streams)
    assert (report.done, report.failed, report.inflight, report.inserted) == (1, 1, 1, 2)
    # the outputs name no watch: the rows inserted get theirs from where their file lies
    assert journal.assign_watches([WatchId("/elsewhere"), WatchId("/w")]) == 2
    ra, rb, rc = (row_of(journal, i.path, i.fingerprint) for i in (a, b, c))
    assert ra is not None and ra.state is S.DONE and ra.stream_id == "sa" and ra.watch == "/w"
    assert rb is not None and rb.state is S.FAILED and rb.last_error == "not audio"
    assert rc is not None and rc.state is S.INFLIGHT and rc.stream_id == sid_c
    again = journal.rebuild(outputs, streams)
    assert (again.done, again.failed, again.inflight, again.inserted) == (0, 0, 0, 0)
    # The rescan sees a again: known and done, not decoded twice.
    assert seen(journal, a, "/w").state is S.DONE


# -- crashes, corruption, schema, disk full ---------------------------------------------

WRITER = """
import sys
from svwatchd.daemon._identity import FileIdentity
from svwatchd.daemon._journal import Journal
j = Journal(sys.argv[1])
i = int(sys.argv[2])
while True:
    path = f"/w/f{i}.wav"
    j.upsert_seen_batch([(FileIdentity(path, i, i, i, 1, f"sha256:{i:064x}"), "w")])
    if i % 3 == 0:
        j.mark_submitting([j.latest_many([path])[path].id], [f"s{i}"], [{"i": i}])
    print(i, flush=True)  # printed only after the commits
    i += 1
"""


def test_sigkill_during_a_burst_of_writes_loses_no_commit(tmp_path: Path) -> None:
    committed: list[int] = []
    start = 0
    for _ in range(3):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                committed.append(int(line))
                if len(committed) >= start + 150 + random.randrange(100):
                    break
            os.kill(child.pid, signal.SIGKILL)  # mid-loop: most likely inside a transaction
            committed.extend(int(line) for line in child.stdout)
        assert child.returncode == -signal.SIGKILL
        with Journal(tmp_path) as j:
            assert not j.rebuilt_from_corruption
            assert j._conn().execute("PRAGMA quick_check").fetchone()[0] == "ok"
            for i in committed:
                rows = j.latest_many([f"/w/f{i}.wav"])
                assert rows, f"committed row {i} lost"
                if i % 3 == 0:
                    rec = rows[f"/w/f{i}.wav"]
                    assert rec.state is S.SUBMITTING and rec.stream_id == f"s{i}"
            # Rows are f0..f<size-1>: all reported ones, plus at most the one whose
            # commit happened but was not reported before the kill.
            assert j.size() - 1 in (committed[-1], committed[-1] + 1)
            start = j.size()


def test_garbage_journal_is_moved_aside_and_flagged(tmp_path: Path) -> None:
    (tmp_path / "journal.db").write_bytes(b"this is not sqlite " * 500)
    with Journal(tmp_path) as j:
        assert j.rebuilt_from_corruption and j.corrupt_path is not None
        assert j.corrupt_path.name.startswith("journal.db.corrupt-")
        assert j.corrupt_path.read_bytes().startswith(b"this is not sqlite")
        assert j.size() == 0
        seen(j, fake(1), "w")
    with Journal(tmp_path) as j:
        assert not j.rebuilt_from_corruption and j.size() == 1


def test_damaged_pages_are_detected(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        for first in range(0, 3000, 900):
            j.upsert_seen_batch([(fake(i), WatchId("w")) for i in range(first, first + 900)])
    db = tmp_path / "journal.db"
    assert not (tmp_path / "journal.db-wal").exists()  # checkpointed into the file on close
    with open(db, "r+b") as f:  # keep the header page, scribble over the b-trees
        f.seek(4096 * 3)
        f.write(os.urandom(4096 * 20))
    with Journal(tmp_path) as j:
        assert j.rebuilt_from_corruption and j.size() == 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    with sqlite3.connect(tmp_path / "journal.db") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    for _ in range(2):  # and the failed open released the lock
        with pytest.raises(
            SchemaVersionError, match=f"99, newer than this svwatchd's {SCHEMA_VERSION}"
        ):
            Journal(tmp_path)


def test_older_schema_migrates_forward(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "journal.db") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '0')")
    db.close()
    with Journal(tmp_path) as j:
        seen(j, fake(1), "w")
        version = j._conn().execute("SELECT value FROM meta").fetchone()[0]
        assert version == str(SCHEMA_VERSION)


def test_version_1_journal_migrates_and_loses_its_unused_tags_column(tmp_path: Path) -> None:
    """A journal as svwatchd wrote it before version 2 (with the never-used ``tags``)."""
    with sqlite3.connect(tmp_path / "journal.db") as db:
        db.executescript(MIGRATIONS[1])
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute(
            "INSERT INTO files (watch, path, size, mtime_ns, inode, device, fingerprint, "
            "stream_id, state, metadata, tags, detected, updated) VALUES "
            "('/w', '/w/a.wav', 1, 2, 3, 4, 'sha256:00', 's-a', 'INFLIGHT', '{\"k\": 1}', "
            "'{}', 10.0, 11.0)"
        )
    db.close()
    # status reads a journal the daemon has not migrated yet (read-only: no migration)
    with JournalReader.open_readonly(tmp_path) as old:
        (before,) = old.by_state(S.INFLIGHT)
        assert before.stream_id == "s-a" and before.metadata == {"k": 1}
    with Journal(tmp_path) as j:
        assert j._conn().execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
        columns = {r[1] for r in j._conn().execute("PRAGMA table_info(files)")}
        assert "tags" not in columns and "metadata" in columns
        assert j.by_state(S.INFLIGHT) == [before]  # nothing else changed
        assert j.mark_done(before.id)


def test_status_reads_while_the_daemon_holds_the_journal(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        a = seen(j, fake(1), "/w")
        with JournalReader.open_readonly(tmp_path) as reader:
            assert reader.counts_by_watch() == {"/w": {S.PENDING: 1}}
            assert reader.oldest_pending() == a
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader._conn().execute("DELETE FROM files")
    with pytest.raises(FileNotFoundError, match="no journal"):
        JournalReader.open_readonly(tmp_path / "nowhere")


def test_rows_belong_to_the_watch_that_contains_their_file(journal: Journal) -> None:
    # rows recorded under the wrong watch (as an svwatchd before the one-identity change
    # did after a reload reordered its watches) are put right
    a = seen(journal, fake(1, path="/data/alpha/a.wav"), "/data/gamma")
    b = seen(journal, fake(2, path="/data/alphabet/b.wav"), "/data/gamma")  # not under alpha
    c = seen(journal, fake(3, path="/data/gamma/c.wav"), "/data/gamma")
    assert journal.assign_watches([WatchId("/data/gamma"), WatchId("/data/alpha")]) == 1
    assert row(journal, a.id).watch == "/data/alpha"
    assert row(journal, b.id).watch == "/data/gamma"  # in no configured watch: left alone
    assert row(journal, c.id).watch == "/data/gamma"
    assert journal.assign_watches([WatchId("/data/gamma"), WatchId("/data/alpha")]) == 0


def test_disk_full_fails_cleanly(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    a, b = seen(j, fake(1), "w"), seen(j, fake(2), "w")
    # Stand-in for a full disk: cap the database at its present size, so the next
    # write that needs a page fails inside SQLite with "database or disk is full",
    # exactly the error a full file system gives.
    db = j._conn()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(JournalWriteError) as err:
        j.mark_submitting([a.id, b.id], ["sa", "sb"], [{"ok": 1}, {"notes": "x" * 500_000}])
    assert "database or disk is full" in str(err.value)
    assert err.value.path == str(tmp_path / "journal.db")
    assert isinstance(err.value.free_bytes, int) and str(err.value.free_bytes) in str(err.value)
    # Nothing half-applied: a's small update was rolled back with b's.
    for row_id in (a.id, b.id):
        unchanged = row(j, row_id)
        assert unchanged.state is S.PENDING and unchanged.stream_id is None
    # The connection was reopened (the cap went with the old one): work resumes.
    assert j.mark_submitting([a.id], ["sa"], [{}]) == [a.id]
    j.close()
    with Journal(tmp_path) as again:
        assert row(again, a.id).state is S.SUBMITTING
        assert row(again, b.id).state is S.PENDING


def test_enospc_from_the_os_is_a_write_error(journal: Journal) -> None:
    a = seen(journal, fake(1), "w")
    with pytest.raises(JournalWriteError), journal.transaction() as db:
        db.execute("UPDATE files SET state='DONE' WHERE id=?", (a.id,))
        raise OSError(errno.ENOSPC, "No space left on device")
    assert row(journal, a.id).state is S.PENDING


# -- scale ------------------------------------------------------------------------------

RSS = """
import sys, time
from svwatchd.daemon._identity import FileIdentity
from svwatchd.daemon._journal import FileState, Journal

def rss_mb(field="VmRSS:"):
    # VmHWM is the peak of this program; ru_maxrss would also count the pytest
    # process this one was forked from (Linux keeps it across exec)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024

j = Journal(sys.argv[1])
base = rss_mb()
t = time.monotonic()
n = 0
for first in range(0, 100_000, 900):  # transactions of 900, as a burst is recorded
    n += sum(j.upsert_seen_batch([
        (FileIdentity(f"/data/watch/d{i % 100}/file{i:06d}.wav", i, i, i, 1, f"sha256:{i:064x}"),
         "w")
        for i in range(first, min(first + 900, 100_000))]))
insert = time.monotonic() - t
assert n == 100_000 and j.size() == 100_000
assert j.counts_by_watch() == {"w": {FileState.PENDING: 100_000}}
assert len(j.by_state(FileState.PENDING, limit=1000)) == 1000
assert len(j.known_paths("w")) == 100_000
assert j.oldest_pending() is not None and j.last_errors(10) == []
peak = rss_mb("VmHWM:")
print(f"{base:.1f} {rss_mb():.1f} {peak:.1f} {insert:.1f}")
"""


def test_100k_rows_keep_memory_small(tmp_path: Path) -> None:
    res = run_python(RSS, str(tmp_path), timeout=280)
    assert res.returncode == 0, res.stderr
    base, after, peak, seconds = (float(x) for x in res.stdout.split())
    growth = max(after, peak) - base
    print(
        f"100k journal rows: RSS {base:.1f} MB -> {after:.1f} MB (peak {peak:.1f} MB), "
        f"growth {growth:.1f} MB; batch insert {seconds:.1f} s"
    )
    # the target (issue 4): the daemon's RSS with 100k journal rows stays <= 100 MB
    assert max(after, peak) <= 100, f"RSS reached {max(after, peak):.1f} MB with 100k rows"


def test_latest_many_and_count(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        seen(j, fake(1), "/w")
        seen(j, fake(1, content=7), "/w")  # a second version of the same path
        seen(j, fake(2), "/w")
        latest = j.latest_many(["/w/f1.wav", "/w/f2.wav", "/w/none.wav"])
        assert set(latest) == {"/w/f1.wav", "/w/f2.wav"}
        assert latest["/w/f1.wav"].fingerprint == fake(1, content=7).fingerprint
        many = [f"/w/f{i}.wav" for i in range(2000)]  # more than one IN (...) chunk
        assert set(j.latest_many(many)) == {"/w/f1.wav", "/w/f2.wav"}
        assert j.count(S.PENDING) == 2  # the first version of f1 was superseded
        assert j.count(S.SUPERSEDED, S.PENDING) == 3
        assert j.count(S.INFLIGHT) == 0


def test_by_state_excludes_ids(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        ids = [seen(j, fake(i), "/w").id for i in range(5)]
        rows = j.by_state(S.PENDING, limit=2, exclude={ids[0], ids[2]})
        assert [r.id for r in rows] == [ids[1], ids[3]]
        assert [r.id for r in j.by_state(S.PENDING, exclude=())] == ids
        assert j.by_state(S.PENDING, watches=[WatchId("/other")]) == []
        assert len(j.by_state(S.PENDING, watches=[WatchId("/w")])) == 5
