"""Uploaded files: the bytes of a file the server cannot read at its path, kept per stream.

An upload is written to ``uploads/<id>.part``, synced, then renamed to
``uploads/<id>``, so a stream never reads half an upload. The writes and the
sync run in a worker thread: an upload may be gigabytes, and the event loop
must go on answering meanwhile.

:func:`probe_format` tells an upload's format from its bytes, for a request
that sends a file without saying what it is (the OpenAI-compatible route).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable
from pathlib import Path
from typing import BinaryIO

from svwatchd._audio import is_riff, probe_wav
from svwatchd._media import probe_media
from svwatchd.errors import AudioDecodeError, EmptyUploadError, TooLargeError
from svwatchd.model.format import AudioFormat

__all__ = ["WRITE_BYTES", "Uploads", "probe_format"]

WRITE_BYTES = 1024 * 1024
"""Bytes gathered before one write in the worker thread (fewer thread hops)."""


class Uploads:
    """The upload directory: one file per stream id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, stream_id: str) -> Path:
        """Where the upload for ``stream_id`` is (or will be) kept."""
        return self.directory / stream_id

    async def receive(self, stream_id: str, chunks: AsyncIterable[bytes], limit: int) -> int:
        """Store the bytes of ``chunks`` as the stream's upload; returns their count.

        Raises :class:`TooLargeError` past ``limit`` bytes and
        :class:`EmptyUploadError` for no bytes; nothing is kept then.
        """
        target = self.path(stream_id)
        part = target.with_name(target.name + ".part")
        size = 0
        try:
            with open(part, "wb") as f:
                pending = bytearray()
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise TooLargeError(f"upload exceeds {limit} bytes", limit=limit)
                    pending += chunk
                    if len(pending) >= WRITE_BYTES:
                        await asyncio.to_thread(f.write, bytes(pending))
                        pending.clear()
                await asyncio.to_thread(_finish, f, bytes(pending))
            if size == 0:
                raise EmptyUploadError(f"upload for {stream_id} is empty", stream_id=stream_id)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return size

    def discard(self, stream_id: str) -> None:
        """Remove the stream's upload, if there is one."""
        self.path(stream_id).unlink(missing_ok=True)


def _finish(f: BinaryIO, rest: bytes) -> None:
    f.write(rest)
    f.flush()
    os.fsync(f.fileno())


def probe_format(path: Path, name: str) -> AudioFormat:
    """The format of an uploaded file, from its content (WAV or a known container; as the
    client does it, the name does not matter), named ``name`` in errors.

    Raises :class:`AudioDecodeError` for anything else (headerless audio cannot be told
    apart from any other bytes), a broken header or a container without audio. Blocking:
    call it in a worker thread.
    """
    try:
        if is_riff(path):
            return probe_wav(path).format
        media = probe_media(str(path))
        if media is not None:
            return media.decoded_format(media.choose())
    except AudioDecodeError as exc:
        raise AudioDecodeError(name, exc.problem) from None
    except ValueError as exc:  # a track's rate or channels outside what svserver decodes
        raise AudioDecodeError(name, str(exc)) from None
    raise AudioDecodeError(
        name,
        "not WAV nor a known container (FLAC, OGG, MP3, M4A, MP4, MOV, MKV, WebM, WMA, ...)",
    )
