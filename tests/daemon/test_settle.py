"""The settle rules (decisions: moved in and closed files at once, others after settle)."""

from __future__ import annotations

import os
from pathlib import Path

from svwatchd.daemon._settle import Settler
from svwatchd.daemon._watchconfig import WatchId

W = WatchId("/w")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settler_with(tmp_path: Path, name: str, hint: str) -> tuple[Clock, Settler, Path]:
    """A settler on a test clock, with one new file noted (settle 2 s)."""
    clock = Clock()
    s = Settler(clock)
    f = tmp_path / name
    f.write_bytes(b"x")
    s.note(str(f), W, hint, 2.0)  # type: ignore[arg-type]
    return clock, s, f


def test_moved_and_closed_files_are_due_at_once(tmp_path: Path) -> None:
    clock = Clock()
    s = Settler(clock)
    for name, hint in (("a.wav", "moved"), ("b.wav", "closed")):
        (tmp_path / name).write_bytes(b"x")
        s.note(str(tmp_path / name), W, hint, 2.0)  # type: ignore[arg-type]
    assert s.has_due()
    assert sorted(p for _, p in s.due()) == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    assert s.due() == [] and not s.has_due()  # handed out once
    assert str(tmp_path / "a.wav") not in s


def test_changed_file_waits_for_settle_and_restarts_when_it_grows(tmp_path: Path) -> None:
    clock, s, f = settler_with(tmp_path, "slow.wav", "changed")
    assert not s.has_due() and s.due() == []
    clock.now += 2.5
    with open(f, "ab") as w:
        w.write(b"more")  # still being written: the stat moved
    assert s.due() == []
    clock.now += 1.0
    assert s.due() == []  # settle counts again from the change
    clock.now += 1.5
    assert s.due() == [(W, str(f))]


def test_a_reopened_file_waits_and_a_later_event_replaces_an_earlier_one(tmp_path: Path) -> None:
    clock, s, f = settler_with(tmp_path, "a.wav", "closed")
    assert s.due() == [(W, str(f))]
    clock.now += 0.5
    s.note(str(f), W, "closed", 2.0)  # closed again within settle: a writer that reopens
    assert s.due() == []
    s.note(str(f), W, "changed", 2.0)  # the newest event decides
    clock.now += 2.1
    assert s.due() == [(W, str(f))]
    assert s.due() == []  # the superseded heap entry is not handed out again


def test_due_hands_out_slices_and_drops_vanished_files(tmp_path: Path) -> None:
    clock = Clock()
    s = Settler(clock)
    paths = []
    for i in range(10):
        p = tmp_path / f"f{i}.wav"
        p.write_bytes(b"x")
        paths.append(str(p))
        s.note(str(p), W, "closed", 2.0)
    first = s.due(limit=4)
    assert len(first) == 4 and s.has_due()
    rest = s.due()
    assert sorted(p for _, p in first + rest) == sorted(paths)
    gone = tmp_path / "gone.wav"
    gone.write_bytes(b"x")
    s.note(str(gone), W, "changed", 1.0)
    os.unlink(gone)
    s.note(str(tmp_path / "f0.wav"), W, "deleted", 1.0)
    clock.now += 1.5
    assert s.due() == [] and str(gone) not in s and str(tmp_path / "f0.wav") not in s


def test_scanned_file_counts_its_age(tmp_path: Path) -> None:
    clock = Clock()
    s = Settler(clock)
    old, young = tmp_path / "old.wav", tmp_path / "young.wav"
    old.write_bytes(b"x")
    young.write_bytes(b"x")
    s.note(str(old), W, "scanned", 2.0, age=10.0)
    s.note(str(young), W, "scanned", 2.0, age=0.5)
    assert s.due() == [(W, str(old))]
    clock.now += 1.6
    assert s.due() == [(W, str(young))]


def test_entries_of_a_removed_watch_are_forgotten(tmp_path: Path) -> None:
    clock = Clock()
    s = Settler(clock)
    other = WatchId("/other")
    for name, watch in (("a.wav", W), ("b.wav", other)):
        (tmp_path / name).write_bytes(b"x")
        s.note(str(tmp_path / name), watch, "moved", 2.0)
    s.forget({other})
    assert str(tmp_path / "b.wav") not in s and str(tmp_path / "a.wav") in s
    assert s.due() == [(W, str(tmp_path / "a.wav"))]
