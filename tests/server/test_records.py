"""A stream's canonical submission text is stored and compared on resubmission: pinned."""

from __future__ import annotations

from svwatchd.model.enums import Encoding, Endian
from svwatchd.model.format import AudioFormat
from svwatchd.server._submission import StreamSpec


def test_canonical_text_is_stable() -> None:
    # If this text changes, every stream stored by an older svserver refuses its own
    # resubmission as an id conflict: change it only with a migration.
    upload = StreamSpec(
        "abc",
        "upload",
        AudioFormat("RAW", Encoding.ULAW, 1, 8000, 2, Endian.BIG),
        {"b": 1, "a": "x", "c": True},
        "/x/y.raw",
        mtime=12.5,
    )
    assert upload.canonical() == (
        '{"format": {"channels": "2", "encoding": "ULAW", "endian": "BIG", "filetype": "RAW", '
        '"samprate": "8000", "sampwidth": "1"}, "host": null, "id": "abc", "kind": "file", '
        '"path": "/x/y.raw", "port": null, "tags": {"a": "x", "b": 1, "c": true}}'
    )
    same_file = StreamSpec("abc", "file", upload.format, dict(upload.tags), "/x/y.raw")
    assert same_file.canonical() == upload.canonical()  # path or bytes: the same stream
    sock = StreamSpec("s1", "socket", AudioFormat("RAW", "SPCM", 2, 16000), {}, None, "h", 9)
    assert sock.canonical() == (
        '{"format": {"channels": "1", "encoding": "SPCM", "endian": "LITTLE", "filetype": "RAW", '
        '"samprate": "16000", "sampwidth": "2"}, "host": "h", "id": "s1", "kind": "socket", '
        '"path": null, "port": 9, "tags": {}}'
    )
