"""The common WAV header, read in Python: a fast path in front of libsndfile.

Every file the daemon submits has its header read twice (the client's
``Stream`` validates it, svserver measures its duration), and through
libsndfile that costs more than hashing the whole file. Most files are the
plain layout: ``RIFF``/``RIFX`` ... ``WAVE``, a 16- or 18-byte ``fmt `` chunk (PCM
8/16/24/32-bit, mu-law, A-law), maybe a ``LIST`` or ``fact`` chunk, then
``data`` running exactly to the end of the file. `read_plain_header` reads
that layout and nothing else: for anything unusual (extensible formats,
odd sizes, a data chunk that disagrees with the file size, trailing chunks)
it returns None and the caller asks libsndfile, which stays the authority
on every file it does not vouch for. Tests compare both on every layout.
"""

from __future__ import annotations

import struct
from typing import Final

from svwatchd.model.contract import MAX_SAMPRATE, MIN_SAMPRATE
from svwatchd.model.enums import Encoding

__all__ = [
    "HEAD_BYTES",
    "PlainHeader",
    "read_plain_header",
]

HEAD_BYTES: Final = 512
"""How much of the file the fast path looks at; the data chunk must start within it."""

_TAGS: Final = {b"RIFF": "<", b"RIFX": ">"}
# format tag -> (encoding, required bits per sample or None for PCM's 8/16/24/32)
_FORMATS: Final = {1: (Encoding.SPCM, None), 6: (Encoding.ALAW, 8), 7: (Encoding.ULAW, 8)}

PlainHeader = tuple[Encoding, int, int, int, int, bool]
"""(encoding, sample width in bytes, sample rate, channels, frames, big-endian)."""


def read_plain_header(head: bytes, file_size: int) -> PlainHeader | None:
    """The format and frame count of a plain WAV file from its first bytes, or None.

    ``head`` is the start of the file (`HEAD_BYTES` suffice), ``file_size`` its
    size. None means "not the plain layout": read it with libsndfile instead.
    """
    order = _TAGS.get(head[:4])
    if order is None or head[8:12] != b"WAVE" or len(head) < 20:
        return None
    (riff_size,) = struct.unpack(order + "I", head[4:8])
    if riff_size + 8 != file_size:
        return None
    fmt: tuple[int, int, int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(head):
        cid = head[pos : pos + 4]
        (size,) = struct.unpack(order + "I", head[pos + 4 : pos + 8])
        body = pos + 8
        if cid == b"fmt ":
            if size not in (16, 18) or fmt is not None or body + size > len(head):
                return None
            if size == 18 and head[body + 16 : body + 18] != b"\0\0":
                return None  # an 18-byte chunk must carry no extension (cbSize 0)
            fmt = struct.unpack(order + "HHIIHH", head[body : body + 16])
        elif cid == b"data":
            return _plain(fmt, size, body, file_size, order == ">")
        elif cid not in (b"LIST", b"fact") or size % 2:
            return None
        pos = body + size
    return None


def _plain(
    fmt: tuple[int, int, int, int, int, int] | None,
    data_size: int,
    data_at: int,
    file_size: int,
    big: bool,
) -> PlainHeader | None:
    end = data_at + data_size
    if fmt is None or data_size == 0 or file_size not in (end, end + data_size % 2):
        return None  # data must run to the end (an odd chunk may carry its pad byte)
    tag, channels, rate, byte_rate, block_align, bits = fmt
    known = _FORMATS.get(tag)
    if known is None or channels < 1 or bits % 8 or not MIN_SAMPRATE <= rate <= MAX_SAMPRATE:
        return None
    encoding, required = known
    if required is not None and bits != required:
        return None
    width = bits // 8
    if width not in (1, 2, 3, 4) or block_align != channels * width:
        return None
    if byte_rate != rate * block_align or data_size % block_align:
        return None
    if encoding is Encoding.SPCM and width == 1:
        encoding = Encoding.UPCM  # 8-bit WAV PCM is unsigned
    return encoding, width, rate, channels, data_size // block_align, big
