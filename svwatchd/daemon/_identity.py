"""What a watched file *is*: its path plus a fingerprint of its whole content.

Identity is content fingerprint + path, never the inode alone (log shippers that
trusted inodes re-sent or skipped data after inode reuse). A touched file
(mtime changed, same bytes) hashes to the same fingerprint and so is the same
version; only a changed hash makes a new version. The stat fields a
`FileIdentity` carries are a cache: when a later stat differs from them the
caller hashes again, and the fingerprint decides.

`stream_id_for` derives the server's stream id from the version, so a
resubmission after a crash (or after the journal was rebuilt) names the same
stream and is idempotent on the server.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass

from svwatchd.errors import FileChangedError

__all__ = [
    "BLOCK_SIZE",
    "FileIdentity",
    "identify",
    "stream_id_for",
]

BLOCK_SIZE = 1 << 20
"""Bytes read per step while hashing: 1 MiB keeps memory flat for any file size."""

_PREFIX = "sha256:"


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """One version of one file: where it is, what stat said, and its content fingerprint.

    ``path`` is absolute. ``fingerprint`` is ``"sha256:<64 hex>"`` of the whole
    content. ``size``, ``mtime_ns``, ``inode`` and ``device`` describe the file
    as it was hashed (checked unchanged before and after the hash).
    """

    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    fingerprint: str

    def same_stat(self, st: os.stat_result) -> bool:
        """True when ``st`` still describes the file as hashed (no need to hash again)."""
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev) == (
            self.size,
            self.mtime_ns,
            self.inode,
            self.device,
        )


def _hash_open_file(fd: int, size_hint: int = BLOCK_SIZE) -> str:
    """SHA-256 of everything readable from ``fd`` (from its current offset), in steps of at
    most 1 MiB (``size_hint``: the expected size; a small file needs no 1 MiB buffer)."""
    digest = hashlib.sha256()
    buf = bytearray(max(1, min(size_hint + 1, BLOCK_SIZE)))
    view = memoryview(buf)
    while True:
        n = os.readv(fd, [buf])
        if n == 0:
            break
        digest.update(view[:n])
    return _PREFIX + digest.hexdigest()


def _open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """Open a regular file for reading, and its stat. Never blocks: a FIFO or a device
    dropped into a watch is refused with ``OSError(EINVAL)`` instead of hanging the reader."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "Not a regular file", os.fspath(path))
    return fd, st


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _describe(before: os.stat_result, after: os.stat_result) -> str:
    names = ("size", "mtime_ns", "ctime_ns", "inode", "device")
    moved = [
        f"{name} {a} -> {b}"
        for name, a, b in zip(names, _stat_key(before), _stat_key(after), strict=True)
        if a != b
    ]
    return ", ".join(moved) or "replaced"


def identify(path: str | os.PathLike[str]) -> FileIdentity:
    """Stat and hash ``path``: its `FileIdentity`.

    The fingerprint is the SHA-256 of the whole content, streamed in 1 MiB
    blocks: whole-file on purpose, as a partial hash would call two files that
    differ after the first block the same version.

    The file is opened once and the open file is hashed; its stat is taken
    before and after, and the path is stat'ed again at the end. If the size,
    mtime, ctime, inode or device moved meanwhile (a writer still busy, a
    rename over it), `FileChangedError` is raised and the caller waits and
    retries: a fingerprint is only ever recorded for content that held still.
    ``OSError`` passes through (``FileNotFoundError``; ``EINVAL`` for a FIFO,
    a device or anything else that is not a regular file).
    """
    abspath = os.path.abspath(os.fspath(path))
    fd, before = _open_regular(abspath)
    try:
        digest = _hash_open_file(fd, before.st_size)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if _stat_key(before) != _stat_key(after):
        raise FileChangedError(abspath, _describe(before, after))
    try:
        now = os.stat(abspath)
    except FileNotFoundError:
        raise FileChangedError(abspath, "removed") from None
    if _stat_key(before) != _stat_key(now):
        raise FileChangedError(abspath, _describe(before, now))
    return FileIdentity(
        path=abspath,
        size=before.st_size,
        mtime_ns=before.st_mtime_ns,
        inode=before.st_ino,
        device=before.st_dev,
        fingerprint=digest,
    )


def stream_id_for(path: str, fingerprint: str) -> str:
    """The server stream id of this file version: ``"f-"`` + 40 hex digits.

    ``sha256(f"{path}\\0{fingerprint}")``, so the same (absolute path, content)
    always gets the same id: a resubmission after a crash, a retry of a stream
    that ended in ERROR, or a journal rebuilt from the server all name the one
    stream. The watch is deliberately not part of it: the journal keys a
    version by (path, fingerprint) alone, and renaming a watch in the config
    must not re-decode its files. The result matches
    ``[A-Za-z0-9][A-Za-z0-9._:-]{0,127}``.
    """
    digest = hashlib.sha256(f"{path}\0{fingerprint}".encode("utf-8", "surrogateescape"))
    return "f-" + digest.hexdigest()[:40]
