"""Which files in a folder are audio to decode: extensions, regex filters, ignore globs.

One implementation, shared by :func:`~svwatchd.client.stream.createdirstreams`
and the daemon's watches, so both pick exactly the same files.

- ``exts``: extensions with or without the dot, compared case-insensitively
  (``"wav"``, ``".WAV"``); ``None`` or empty means every file.
- ``filters``: regular expressions searched (``re.search``) in the file's full
  absolute path, with ``/`` separators; a file is included when any matches.
  Anchor a pattern (``^...$``) for a full match.
- ``ignore``: glob patterns (``fnmatch``) matched against every path component
  below the root, so ``".*"`` skips hidden files and hidden folders alike.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "FileSelector",
    "walk_many",
]


def _norm_exts(exts: Iterable[str] | str | None) -> tuple[str, ...]:
    if exts is None:
        return ()
    if isinstance(exts, str):
        exts = [exts]
    out = []
    for ext in exts:
        e = ext.strip().lstrip(".").lower()
        if not e:
            raise ValueError(f"extension {ext!r} is empty")
        out.append("." + e)
    return tuple(out)


def _compile(filters: Iterable[str] | str | None) -> tuple[re.Pattern[str], ...]:
    if filters is None:
        return ()
    if isinstance(filters, str):
        filters = [filters]
    compiled = []
    for pattern in filters:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(
                f"filter {pattern!r} is not a valid regular expression: {exc}"
            ) from None
    return tuple(compiled)


@dataclass(frozen=True)
class FileSelector:
    """Decides whether a path is a file to decode; see the module docstring for the rules.

    Raises ``ValueError`` at construction for an empty extension or an invalid regex.
    """

    exts: tuple[str, ...] = ()
    filters: tuple[re.Pattern[str], ...] = ()
    ignore: tuple[str, ...] = field(default=())

    @classmethod
    def create(
        cls,
        exts: Iterable[str] | str | None = None,
        filters: Iterable[str] | str | None = None,
        ignore: Iterable[str] | None = None,
    ) -> FileSelector:
        """Build a selector from user-facing values (normalised and validated here, once)."""
        return cls(_norm_exts(exts), _compile(filters), tuple(ignore or ()))

    def is_ignored(self, relpath: str) -> bool:
        """True when any component of ``relpath`` (relative to its root) matches an ignore glob."""
        parts = [p for p in relpath.replace(os.sep, "/").split("/") if p not in ("", ".")]
        return any(fnmatch.fnmatchcase(part, pat) for part in parts for pat in self.ignore)

    def matches(self, path: str, root: str | None = None) -> bool:
        """True when the file at ``path`` should be decoded (``root`` scopes the ignore globs)."""
        if self.skip_reason(path) is not None:
            return False
        if self.ignore:
            name = os.path.basename(path)
            rel = os.path.relpath(path, root) if root is not None else name
            if self.is_ignored(rel):
                return False
        return True

    def skip_reason(self, path: str) -> str | None:
        """Why the file's name or path is not taken (its extension, or no filter matching it),
        or None when they are. Ignore globs are not reasons: they mean "do not look"."""
        full = os.path.abspath(path).replace(os.sep, "/")
        name = full.rsplit("/", 1)[-1]
        if self.exts and not name.lower().endswith(self.exts):
            shown = " ".join(sorted(self.exts))
            return f"its extension is not one the watch takes ({shown})"
        if self.filters and not any(p.search(full) for p in self.filters):
            shown = ", ".join(p.pattern for p in self.filters)
            return f"no filter of the watch matches its path ({shown})"
        return None

    def walk_all(self, root: str, *, recursive: bool = True) -> Iterator[tuple[str, str | None]]:
        """Every regular file under ``root`` not ignored by a glob, with the reason it is not
        taken (None for the files to decode): absolute, sorted, no symlinked dirs."""
        root = os.path.abspath(root)
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            if recursive:
                dirnames[:] = sorted(
                    d for d in dirnames if not self.is_ignored(os.path.join(rel_dir, d))
                )
            else:
                dirnames[:] = []
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path) or self.is_ignored(os.path.relpath(path, root)):
                    continue
                yield path, self.skip_reason(path)

    def walk(self, root: str, *, recursive: bool = True) -> Iterator[str]:
        """Yield matching regular files under ``root``: absolute, sorted, no symlinked dirs."""
        for path, reason in self.walk_all(root, recursive=recursive):
            if reason is None:
                yield path


def walk_many(
    selector: FileSelector, dirs: Sequence[str], *, recursive: bool = True
) -> Iterator[str]:
    """Yield matching files under each of ``dirs`` in turn (each file once)."""
    seen: set[str] = set()
    for d in dirs:
        for path in selector.walk(d, recursive=recursive):
            if path not in seen:
                seen.add(path)
                yield path
