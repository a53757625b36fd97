"""The stream state machine: every allowed move happens, every other one is refused.

A real store in a temporary directory; each stream is driven into its start
state by the lifecycle's own operations, then every operation is tried on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from svwatchd.model.enums import DecodeStatus
from svwatchd.model.format import AudioFormat
from svwatchd.model.speechdata import Utterance
from svwatchd.server._changes import Changes
from svwatchd.server._lifecycle import ALLOWED_FROM, DECODING, RUNNING, Lifecycle, Progress, allowed
from svwatchd.server._store import NewStream, Store, StreamRow

S = DecodeStatus
Q, A, P, D, E, C, X = S.QUEUED, S.ACTIVE, S.PAUSED, S.DONE, S.ERROR, S.CLOSED, S.DELETED

# The machine written out once more, by hand: (from, to) pairs svserver may take.
EXPECTED = {
    (Q, A), (A, Q), (E, Q),  # activate; requeue; retry
    (Q, P), (A, P),  # pause
    (P, Q), (P, A), (P, D),  # resume: where it was paused from, or DONE if decoding completed
    (A, D),  # complete
    (A, E), (P, E),  # fail
    (Q, C), (A, C), (P, C),  # close
    *((s, X) for s in S if s is not X),  # tombstone
}  # fmt: skip


@pytest.fixture
def lifecycle(tmp_path: Path) -> Iterator[tuple[Store, Lifecycle]]:
    store = Store(tmp_path / "svserver.db")
    yield store, Lifecycle(store, Changes())
    store.close()


_ids = itertools.count()


def _new(lc: Lifecycle) -> str:
    sid = f"s{next(_ids)}"
    lc.create(
        [
            NewStream(
                id=sid,
                kind="file",
                source=f"/x/{sid}.raw",
                path=f"/x/{sid}.raw",
                host=None,
                port=None,
                format=AudioFormat("RAW", "SPCM", 2, 16000),
                tags={},
                spec="{}",
                created=0.0,
                anchor=None,
                sourceseconds=1.0,
            )
        ]
    )
    return sid


def _in_state(store: Store, lc: Lifecycle, state: DecodeStatus, paused_from: S = Q) -> str:
    """A new stream, moved into ``state`` by the lifecycle's own operations."""
    sid = _new(lc)
    if state in (A, D, E) or (state is P and paused_from is A):
        lc.activate([_row(store, sid)])
    if state is P:
        lc.pause([sid])
    elif state is D:
        lc.commit(sid, [], Progress(), final=True)
    elif state is E:
        lc.fail(sid, "broken")
    elif state is C:
        lc.close([sid])
    elif state is X:
        lc.tombstone([sid])
    assert _status(store, sid) is state
    return sid


def _row(store: Store, sid: str) -> StreamRow:
    row = store.one(sid)
    assert row is not None
    return row


def _status(store: Store, sid: str) -> DecodeStatus:
    return _row(store, sid).status


def _operations(store: Store, lc: Lifecycle) -> dict[str, Callable[[str], object]]:
    utt = Utterance(0.0, 1.0, "hello", 0.9)
    return {
        "activate": lambda sid: lc.activate([_row(store, sid)]),
        "requeue": lambda sid: lc.requeue([sid]),
        "retry": lambda sid: lc.retry([sid]),
        "pause": lambda sid: lc.pause([sid]),
        "resume": lambda sid: lc.resume([_row(store, sid)], None),
        "complete": lambda sid: lc.commit(sid, [(utt, None)], Progress(), final=True),
        "fail": lambda sid: lc.fail(sid, "broken"),
        "close": lambda sid: lc.close([sid]),
        "tombstone": lambda sid: lc.tombstone([sid]),
    }


# operation -> {from: to}; a state not listed refuses the operation (nothing changes)
OPERATIONS: dict[str, dict[DecodeStatus, DecodeStatus]] = {
    "activate": {Q: A},
    "requeue": {A: Q},
    "retry": {E: Q},
    "pause": {Q: P, A: P},
    "resume": {P: Q},  # paused while QUEUED
    "complete": {A: D, P: P},  # paused: results kept, DONE on resume
    "fail": {A: E, P: E},
    "close": {Q: C, A: C, P: C},
    "tombstone": {s: X for s in S if s is not X},
}


def test_the_table_is_the_machine() -> None:
    assert {(s, t) for t, sources in ALLOWED_FROM.items() for s in sources} == EXPECTED
    for source, target in itertools.product(S, S):
        assert allowed(source, target) is ((source, target) in EXPECTED)
    assert RUNNING == {Q, A, P} == {s for s in S if not s.finished}
    assert {A, P} == DECODING


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("state", list(S), ids=[s.value for s in S])
def test_every_operation_from_every_state(
    lifecycle: tuple[Store, Lifecycle], operation: str, state: DecodeStatus
) -> None:
    store, lc = lifecycle
    sid = _in_state(store, lc, state)
    _operations(store, lc)[operation](sid)
    expected = OPERATIONS[operation].get(state, state)
    assert _status(store, sid) is expected, f"{operation} from {state.value}"
    if expected is not state:
        assert allowed(state, expected)


def test_resume_goes_back_where_it_was_paused_from(lifecycle: tuple[Store, Lifecycle]) -> None:
    store, lc = lifecycle
    queued = _in_state(store, lc, P, paused_from=Q)
    active = _in_state(store, lc, P, paused_from=A)
    completed = _in_state(store, lc, P, paused_from=A)
    assert lc.commit(completed, [], Progress(decoded_seconds=1.0), final=True)
    assert _status(store, completed) is P  # still paused: DONE on resume
    rows = store.get([queued, active, completed])
    assert sorted(lc.resume(list(rows.values()), None)) == sorted([queued, active, completed])
    assert [_status(store, s) for s in (queued, active, completed)] == [Q, A, D]
    assert _row(store, completed).ended is not None


def test_a_refused_move_changes_nothing(lifecycle: tuple[Store, Lifecycle]) -> None:
    store, lc = lifecycle
    closed = _in_state(store, lc, C)
    before = _row(store, closed)
    utt = Utterance(0.0, 1.0, "late", 0.9)
    assert not lc.commit(closed, [(utt, None)], Progress(decoded_seconds=9.0), final=True)
    assert not lc.fail(closed, "late failure")
    assert lc.retry([closed]) == [] and lc.activate([before]) == []
    assert _row(store, closed) == before  # the abort wins: no status, no results, no error
    assert store.utterances(closed) == []


def test_the_guard_refuses_a_move_outside_the_table(lifecycle: tuple[Store, Lifecycle]) -> None:
    store, lc = lifecycle
    done = _in_state(store, lc, D)
    with store.transaction() as db, pytest.raises(ValueError, match="no move from DONE to QUEUED"):
        Lifecycle._move(db, [done], Q, only_from={D})  # an operation may only narrow the table
    assert _status(store, done) is D


def test_requeue_interrupted_at_start(lifecycle: tuple[Store, Lifecycle]) -> None:
    store, lc = lifecycle
    active = _in_state(store, lc, A)
    paused_active = _in_state(store, lc, P, paused_from=A)
    done = _in_state(store, lc, D)
    assert lc.requeue_interrupted() == [active]
    assert [_status(store, s) for s in (active, paused_active, done)] == [Q, P, D]
    assert _row(store, paused_active).resume_status is Q  # its decode is gone: queue again


def test_retry_starts_from_a_clean_slate(lifecycle: tuple[Store, Lifecycle]) -> None:
    store, lc = lifecycle
    sid = _new(lc)
    lc.activate([_row(store, sid)])
    store_utt = Utterance(0.0, 1.0, "partial", 0.5)
    lc.commit(sid, [(store_utt, None)], Progress(decoded_seconds=1.0, decode_wall=0.5), final=False)
    lc.fail(sid, "worker died")
    assert lc.retry([sid]) == [sid]
    row = _row(store, sid)
    assert (row.status, row.attempts, row.error, row.utterance_count) == (Q, 2, None, 0)
    assert (row.decoded_seconds, row.decode_wall, row.started, row.ended) == (0, 0, None, None)
    assert store.utterances(sid) == []


def test_finding_queued_sockets_does_not_read_the_file_backlog(
    lifecycle: tuple[Store, Lifecycle],
) -> None:
    """The scheduler asks for queued sockets on every dispatch: with thousands of files
    queued, that query must cost the same as with a hundred (SQLite's planner, left to
    itself, walked every queued file through the status index)."""
    store, lc = lifecycle
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    def cost() -> int:
        nonlocal steps
        steps = 0
        store._db.set_progress_handler(count, 1)
        try:
            assert store.queued_sockets(limit=4) == []
        finally:
            store._db.set_progress_handler(None, 1)
        return steps

    for _ in range(100):
        _new(lc)
    small = cost()
    for _ in range(3000):
        _new(lc)
    assert cost() <= small + 5
