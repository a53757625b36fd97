"""The watcher: real inotify events become Changes; the watch limit falls back to polling."""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path
from typing import Any

from watchdog.observers import Observer

from svwatchd.daemon._watchconfig import WatchId
from svwatchd.daemon._watcher import Change, Watcher, WatchSpec
from svwatchd.model.select import FileSelector
from tests.conftest import TESTDATA, speech_file


def _collect(watcher: Watcher, names: set[str], timeout: float = 10) -> list[Change]:
    """Changes until every one of ``names`` has been seen (or ``timeout``), then 0.3 s more."""
    got: list[Change] = []
    deadline = time.monotonic() + timeout
    while not names <= {Path(c.path).name for c in got} and time.monotonic() < deadline:
        watcher.wakeup.wait(0.2)
        watcher.wakeup.clear()
        got += watcher.drain()
    time.sleep(0.3)  # late events for what should have been filtered out
    return got + watcher.drain()


def test_events_are_filtered_and_hinted(tmp_path: Path) -> None:
    speech_file("001.wav")
    out = tmp_path / "out"
    out.mkdir()
    spec = WatchSpec(
        WatchId(str(tmp_path)),
        tmp_path,
        True,
        FileSelector.create(["wav"], None, [".*"]),
        False,
        (out,),
        ".svwatchd.yaml",
    )
    watcher = Watcher()
    watcher.add(spec)
    try:
        shutil.copy(TESTDATA / "001.wav", tmp_path / "a.wav")  # closed after writing
        staged = tmp_path / ".staging.wav"
        shutil.copy(TESTDATA / "001.wav", staged)
        staged.rename(tmp_path / "b.wav")  # moved in
        (tmp_path / "notes.txt").write_text("x")  # not in exts
        shutil.copy(TESTDATA / "001.wav", out / "c.wav")  # an output folder: excluded
        (tmp_path / ".svwatchd.yaml").write_text("customer: a\n")  # a metadata file
        (tmp_path / "new").mkdir()  # a new folder: scanned by the daemon
        changes = _collect(watcher, {"a.wav", "b.wav", ".svwatchd.yaml", "new", "notes.txt"})
    finally:
        watcher.stop()
    hints = {(Path(c.path).name, c.hint, c.metadata) for c in changes if c.skipped is None}
    skipped = {Path(c.path).name: c.skipped for c in changes if c.skipped is not None}
    assert "extension" in (skipped.get("notes.txt") or "")  # said once, with the reason
    assert set(skipped) <= {"notes.txt"}  # the output folder and hidden files: not even that
    assert ("a.wav", "closed", False) in hints
    assert ("b.wav", "moved", False) in hints
    assert ("new", None, False) in hints
    assert any(name == ".svwatchd.yaml" and meta for name, _, meta in hints)
    assert not any(name in ("notes.txt", "c.wav", ".staging.wav") for name, _, _ in hints)


def test_watch_limit_falls_back_to_polling(tmp_path: Path) -> None:
    """A stand-in for inotify's ENOSPC: this sandbox ignores fs.inotify.max_user_watches
    (lowering it changes nothing here), so the real limit cannot be reached; the observer
    below raises exactly what watchdog raises when it is (OSError ENOSPC from schedule)."""
    speech_file("001.wav")

    class FullInotify(Observer):  # type: ignore[valid-type,misc]
        def schedule(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    warnings: list[tuple[str, dict[str, Any]]] = []
    watcher = Watcher(lambda event, **kw: warnings.append((event, kw)), inotify=FullInotify)
    watcher.add(WatchSpec(WatchId(str(tmp_path)), tmp_path, True, FileSelector.create(["wav"])))
    try:
        ((event, fields),) = warnings
        assert event == "watch.limit" and "max_user_watches" in fields["remedy"]
        shutil.copy(TESTDATA / "001.wav", tmp_path / "p.wav")
        changes = _collect(watcher, {"p.wav"})
    finally:
        watcher.stop()
    assert any(Path(c.path).name == "p.wav" for c in changes)


def test_update_keeps_unchanged_watches_running(tmp_path: Path) -> None:
    """A reload that reorders watches restarts no observer; a changed or new one starts."""
    speech_file("001.wav")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    wav = FileSelector.create(["wav"])
    spec_a = WatchSpec(WatchId(str(a)), a, True, wav)
    spec_b = WatchSpec(WatchId(str(b)), b, True, wav)
    watcher = Watcher()
    try:
        assert watcher.update([spec_a, spec_b]) == [spec_a, spec_b]
        assert watcher.update([spec_b, spec_a]) == []  # reordered: nothing restarted
        raw_b = WatchSpec(spec_b.id, b, True, FileSelector.create(["raw"]))
        assert watcher.update([spec_a, raw_b]) == [raw_b]  # changed: that one restarts
        assert watcher.update([raw_b]) == []  # removed: a stops
        shutil.copy(TESTDATA / "001.wav", a / "gone.wav")
        shutil.copy(TESTDATA / "goforward.raw", b / "kept.raw")
        changes = _collect(watcher, {"kept.raw"})
    finally:
        watcher.stop()
    assert {(Path(c.path).name, c.watch) for c in changes} == {("kept.raw", spec_b.id)}
