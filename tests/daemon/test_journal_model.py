"""A stateful model of the journal: every sequence of seen / submitted / acknowledged /
decoded-and-written / failed / errored / vanished / restarted keeps the invariants.

Hypothesis drives a real `Journal` (real SQLite, WAL, on disk; a restart closes
it and opens the same state dir again) and a plain-Python model of what the
journal promises beside it. After every step:

- no row is lost, none appears unasked: the journal's rows are the model's,
  with the model's states (also after a restart);
- one stream per file version: a version gets its stream id once and keeps it
  for ever, and no two versions share one;
- DONE only after outputs exist: the driver writes a version's outputs (an
  output file) before it asks for DONE, as the collector does, so every DONE
  row has its outputs;
- a version that was submitted is never superseded by a newer one (both get
  outputs); only never-submitted versions are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from svwatchd.daemon._identity import FileIdentity, stream_id_for
from svwatchd.daemon._journal import FileState, Journal
from svwatchd.daemon._watches import WatchId

S = FileState
PATHS = [f"/w/f{i}.wav" for i in range(3)]
CONTENTS = ["a", "b", "c"]
RETRIES = 1

paths = st.sampled_from(PATHS)
contents = st.sampled_from(CONTENTS)
picks = st.integers(min_value=0, max_value=50)


def _fp(content: str) -> str:
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


class JournalModel(RuleBasedStateMachine):
    """The journal and its model, side by side (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[tuple[str, str], S] = {}  # (path, fingerprint) -> state
        self.stream: dict[tuple[str, str], str] = {}  # stream id given to a version
        self.errors: dict[tuple[str, str], int] = {}
        self.outputs: set[tuple[str, str]] = set()
        self.journal: Journal | None = None
        self.dir: Path | None = None

    @initialize(base=st.just(None))
    def open(self, base: None) -> None:
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="journal-model-"))
        self.journal = Journal(self.dir)

    def teardown(self) -> None:
        if self.journal is not None:
            self.journal.close()
        if self.dir is not None:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------

    @property
    def j(self) -> Journal:
        assert self.journal is not None
        return self.journal

    def _rows(self) -> dict[tuple[str, str], tuple[int, S, str | None]]:
        rows = self.j.by_state(*S, limit=None)
        return {(r.path, r.fingerprint): (r.id, r.state, r.stream_id) for r in rows}

    def _pick(self, n: int, *states: S) -> tuple[tuple[str, str], int] | None:
        rows = sorted((k, v) for k, v in self._rows().items() if v[1] in states)
        if not rows:
            return None
        key, (row_id, _, _) = rows[n % len(rows)]
        return key, row_id

    # -- rules ------------------------------------------------------------------------

    @rule(path=paths, content=contents)
    def seen(self, path: str, content: str) -> None:
        """A file's content, seen (an event or a rescan)."""
        key = (path, _fp(content))
        ident = FileIdentity(path, len(content), 1, 1, 1, key[1])
        self.j.upsert_seen_batch([(ident, WatchId("/w"))])
        for other, state in self.state.items():  # older versions never submitted: superseded
            if other[0] == path and other != key and state in (S.PENDING, S.HELD):
                self.state[other] = S.SUPERSEDED
        if self.state.get(key) in (None, S.REMOVED, S.SUPERSEDED):
            self.state[key] = S.PENDING

    @rule(n=picks)
    def submit(self, n: int) -> None:
        """Committed before the send: the version's stream id."""
        found = self._pick(n, S.PENDING, S.SUBMITTING)
        if found is None:
            return
        key, row_id = found
        sid = stream_id_for(*key)
        assert self.j.mark_submitting([row_id], [sid], [None]) == [row_id]
        self.state[key] = S.SUBMITTING
        self.stream.setdefault(key, sid)

    @rule(n=picks)
    def another_stream_id_is_refused(self, n: int) -> None:
        """A row keeps its first stream id: a second one is never taken."""
        found = self._pick(n, S.SUBMITTING, S.INFLIGHT)
        if found is None:
            return
        _, row_id = found
        assert self.j.mark_submitting([row_id], ["f-" + "0" * 40], [None]) == []

    @rule(n=picks)
    def acknowledged(self, n: int) -> None:
        found = self._pick(n, S.SUBMITTING)
        if found is None:
            return
        key, row_id = found
        assert self.j.mark_inflight([row_id]) == 1
        self.state[key] = S.INFLIGHT

    @rule(n=picks)
    def decoded(self, n: int) -> None:
        """The stream is DONE on the server: outputs written first, then the row DONE."""
        found = self._pick(n, S.INFLIGHT)
        if found is None:
            return
        key, row_id = found
        self.outputs.add(key)
        assert self.j.mark_done(row_id)
        self.state[key] = S.DONE

    @rule(n=picks)
    def decode_error(self, n: int) -> None:
        """The stream ended in ERROR: retried while retries are left, then failed."""
        found = self._pick(n, S.INFLIGHT)
        if found is None:
            return
        key, row_id = found
        count = self.j.record_error(row_id, "boom", retries=RETRIES)
        self.errors[key] = self.errors.get(key, 0) + 1
        assert count == self.errors[key]
        if count <= RETRIES:
            self.state[key] = S.SUBMITTING
        else:
            assert self.j.mark_failed(row_id, "boom")
            self.state[key] = S.FAILED

    @rule(n=picks)
    def vanished(self, n: int) -> None:
        """The file went away before it was submitted."""
        found = self._pick(n, S.PENDING, S.HELD)
        if found is None:
            return
        key, row_id = found
        assert self.j.mark_removed(row_id)
        self.state[key] = S.REMOVED

    @rule(n=picks)
    def held(self, n: int) -> None:
        found = self._pick(n, S.PENDING)
        if found is None:
            return
        key, row_id = found
        assert self.j.mark_held(row_id, "metadata file invalid")
        self.state[key] = S.HELD

    @rule()
    def released(self) -> None:
        self.j.release_held()
        for key, state in self.state.items():
            if state is S.HELD:
                self.state[key] = S.PENDING

    @rule(n=picks, to=st.sampled_from([S.DONE, S.INFLIGHT]))
    def out_of_order_moves_change_nothing(self, n: int, to: S) -> None:
        """DONE or INFLIGHT asked for a row in a state the table does not allow: refused."""
        found = self._pick(n, S.PENDING, S.HELD, S.REMOVED, S.SUPERSEDED, S.FAILED)
        if found is None:
            return
        key, row_id = found
        if to is S.DONE and self.state[key] is S.PENDING:
            return  # PENDING -> DONE is allowed (a version whose outputs already exist)
        moved = self.j.mark_done(row_id) if to is S.DONE else self.j.mark_inflight([row_id]) == 1
        assert not moved

    @rule()
    def restarted(self) -> None:
        """The daemon stops (or dies between two transactions) and starts again."""
        assert self.dir is not None
        self.j.close()
        self.journal = Journal(self.dir)

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def rows_are_the_models(self) -> None:
        if self.journal is None:
            return
        rows = self._rows()
        assert {k: v[1] for k, v in rows.items()} == self.state

    @invariant()
    def one_stream_per_version(self) -> None:
        if self.journal is None:
            return
        ids = [v[2] for v in self._rows().values() if v[2] is not None]
        assert len(ids) == len(set(ids))
        for key, (_, _, sid) in self._rows().items():
            if key in self.stream:
                assert sid == self.stream[key]

    @invariant()
    def done_only_with_outputs(self) -> None:
        for key, state in self.state.items():
            if state is S.DONE:
                assert key in self.outputs

    @invariant()
    def submitted_versions_are_never_superseded(self) -> None:
        for key, state in self.state.items():
            if key in self.stream:
                assert state not in (S.SUPERSEDED, S.PENDING, S.HELD, S.REMOVED)


JournalModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,  # real fsyncs, on a machine the rest of the suite loads
    suppress_health_check=[HealthCheck.too_slow],
)
test_journal_model = pytest.mark.timeout(600)(JournalModel.TestCase)
