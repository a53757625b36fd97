"""File identity: whole-content fingerprints, stat re-checks, deterministic stream ids."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

import pytest

from svwatchd.daemon import _identity as identity
from svwatchd.daemon._identity import identify, stream_id_for
from svwatchd.errors import FileChangedError, SvwatchdError

STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def test_fingerprint_is_sha256_of_whole_content(tmp_path: Path) -> None:
    # Larger than several 1 MiB blocks, and differing only after the first block.
    data = os.urandom(3 * identity.BLOCK_SIZE + 123)
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    a.write_bytes(data)
    b.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert identify(a).fingerprint == "sha256:" + hashlib.sha256(data).hexdigest()
    assert identify(a).fingerprint != identify(b).fingerprint


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.wav").write_bytes(b"")
    assert identify(tmp_path / "e.wav").fingerprint == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_identify_records_stat_and_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "call.wav"
    f.write_bytes(b"RIFF....")
    monkeypatch.chdir(tmp_path)
    ident = identify("call.wav")
    st = f.stat()
    assert ident.path == str(f) and os.path.isabs(ident.path)
    assert (ident.size, ident.mtime_ns, ident.inode, ident.device) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_dev,
    )
    assert ident.fingerprint == "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    assert ident.same_stat(st)


def test_touched_file_keeps_its_fingerprint(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"same content")
    first = identify(f)
    os.utime(f, ns=(first.mtime_ns + 5_000_000_000, first.mtime_ns + 5_000_000_000))
    second = identify(f)
    assert second.mtime_ns != first.mtime_ns
    assert second.same_stat(os.stat(f))
    assert second.fingerprint == first.fingerprint


def test_changed_content_changes_fingerprint(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"version one")
    first = identify(f)
    f.write_bytes(b"version two")
    assert identify(f).fingerprint != first.fingerprint


def test_inode_reuse_gets_a_new_fingerprint(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"first recording")
    first = identify(f)
    f.unlink()
    f.write_bytes(b"second recording")  # the file system may well hand out the same inode
    second = identify(f)
    assert second.fingerprint != first.fingerprint
    assert stream_id_for(second.path, second.fingerprint) != stream_id_for(
        first.path, first.fingerprint
    )


def test_file_changed_while_hashing_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "slow.wav"
    f.write_bytes(b"x" * 1000)
    real = identity._hash_open_file

    def hash_while_writer_appends(fd: int, size_hint: int) -> str:
        with open(f, "ab") as w:
            w.write(b"more")
        return real(fd, size_hint)

    monkeypatch.setattr(identity, "_hash_open_file", hash_while_writer_appends)
    with pytest.raises(FileChangedError) as err:
        identify(f)
    assert err.value.path == str(f)
    assert "size" in err.value.detail
    assert isinstance(err.value, SvwatchdError)


def test_file_replaced_while_hashing_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"old")
    real = identity._hash_open_file

    def hash_while_renamed_over(fd: int, size_hint: int) -> str:
        (tmp_path / "new.tmp").write_bytes(b"new")
        os.replace(tmp_path / "new.tmp", f)
        return real(fd, size_hint)

    monkeypatch.setattr(identity, "_hash_open_file", hash_while_renamed_over)
    with pytest.raises(FileChangedError):
        identify(f)


def test_missing_file_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        identify(tmp_path / "nope.wav")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as err:
        identify(fifo)
    assert err.value.errno == errno.EINVAL


def test_stream_id_is_deterministic_and_valid() -> None:
    fp = "sha256:" + "ab" * 32
    sid = stream_id_for("/data/in/a.wav", fp)
    assert STREAM_ID.fullmatch(sid)
    assert sid == stream_id_for("/data/in/a.wav", fp)
    digest = hashlib.sha256(f"/data/in/a.wav\0{fp}".encode()).hexdigest()
    assert sid == "f-" + digest[:40]
    # The watch is deliberately not part of the id (renaming a watch re-decodes nothing).
    assert sid != stream_id_for("/data/in/b.wav", fp)
    assert sid != stream_id_for("/data/in/a.wav", "sha256:" + "cd" * 32)


def test_same_content_under_two_paths_two_stream_ids(tmp_path: Path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"identical")
    b.write_bytes(b"identical")
    ia, ib = identify(a), identify(b)
    assert ia.fingerprint == ib.fingerprint
    assert stream_id_for(ia.path, ia.fingerprint) != stream_id_for(ib.path, ib.fingerprint)


def test_stream_id_handles_undecodable_path_bytes() -> None:
    path = os.fsdecode(b"/data/in/\xff.wav")
    assert STREAM_ID.fullmatch(stream_id_for(path, "sha256:00"))
