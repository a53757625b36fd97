"""Transcript files: where they go, written atomically, and what happens to the source after.

Outputs mirror the source's path relative to its watch under the output
folder (`output_base`; ``output.dir: same``: the source's own folder), named
by the watch's template (`svwatchd.daemon._outputnames`; by default the
source's full name, ``call.wav`` -> ``call.wav.txt``, a failure ->
``call.wav.error.json``, so ``a.wav`` and ``a.raw`` never collide). Every
file is written to a temporary name in the same folder, fsynced, renamed over
the final name and the folder fsynced: a crash leaves either the old file or
the new one, never half of one. Its mode is what a plain write would give
(0666 less the umask) or the watch's ``output.mode``: never the 0600 of a
temporary file, so a media server or another user can read it.

Each JSON output records the source's path, fingerprint and stream id, so a
lost journal can be rebuilt from the outputs without decoding anything twice.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from svwatchd.model import speechdata
from svwatchd.model.speechdata import Utterance

__all__ = [
    "apply_after",
    "atomic_write",
    "output_base",
    "read_output_records",
    "umask",
    "write_error",
    "write_transcripts",
]


def output_base(source: Path, watch_root: Path, output_dir: Path) -> Path:
    """The output path of ``source`` without a format suffix (``out/sub/call.wav``)."""
    return output_dir / source.relative_to(watch_root)


@functools.cache
def umask() -> int:
    """The process's umask, read without changing it (``/proc``), else by setting it back at
    once; read once: the daemon never changes it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` atomically and durably (temp file, fsync, rename, fsync dir),
    with ``mode``, or the mode a plain write would get (0666 less the umask).

    A failure (disk full, failed fsync) raises and leaves no partial file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask() if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_transcripts(
    targets: Sequence[tuple[Path, str, Sequence[Utterance]]],
    *,
    record: Mapping[str, object],
    mode: int | None = None,
) -> list[Path]:
    """Write each (path, format, utterances); the JSON ones carry ``record``.

    ``record`` holds what a journal rebuild needs: ``source_path``, ``fingerprint``,
    ``stream_id`` (and the metadata).
    """
    written = []
    for path, fmt, utterances in targets:
        extra = dict(record) if fmt == "json" else {}
        atomic_write(path, speechdata.render(utterances, fmt, **extra), mode=mode)
        written.append(path)
    return written


def write_error(
    path: Path, *, reason: str, record: Mapping[str, object], mode: int | None = None
) -> Path:
    """Write the error file ``path`` (``<name>.error.json``) saying why the source could not
    be transcribed."""
    doc = {"error": True, "reason": reason, **record}
    atomic_write(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n", mode=mode)
    return path


def apply_after(source: Path, watch_root: Path, after: str | tuple[str, Path]) -> Path | None:
    """Do the watch's ``after`` action on a finished source; return where it went, if moved.

    ``keep`` leaves it; ``delete`` removes it; ``("move", DIR)`` moves it under DIR,
    mirroring its path relative to the watch. A source already gone is not an error.
    """
    if after == "keep" or not source.exists():
        return None
    if after == "delete":
        source.unlink(missing_ok=True)
        return None
    assert isinstance(after, tuple) and after[0] == "move"
    target = after[1] / source.relative_to(watch_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)
    return target


def read_output_records(output_dir: Path) -> Iterable[dict[str, object]]:
    """Yield the records of JSON outputs and error files under ``output_dir`` (for a rebuild).

    Each has ``source_path``, ``fingerprint`` and ``stream_id``; error files also
    ``error: true``. Unreadable or foreign JSON files are skipped.
    """
    if not output_dir.is_dir():
        return
    for path in output_dir.rglob("*.json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and {"source_path", "fingerprint", "stream_id"} <= doc.keys():
            yield {k: v for k, v in doc.items() if k != "utterances"}
