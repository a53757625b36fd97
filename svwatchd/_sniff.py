"""What a file's first bytes say it is: the containers svwatchd decodes, by magic bytes.

Never by name: FFmpeg's own probe guesses by extension (a text file named
``.flac`` "opens" as FLAC at 0 Hz). A header-less MP3 or AAC stream is only
taken as one when two consecutive frame headers agree, since raw PCM can
start like one frame (int16 -1025 is the bytes ``FF FB``, an MP3 sync).
"""

from __future__ import annotations

import os
from typing import Final, Literal

__all__ = [
    "HEAD_BYTES",
    "Reader",
    "is_container",
    "mp3_truncation",
    "sniff",
    "webm_doctype",
]

Reader = Literal["sndfile", "av"]
"""Which library reads a family: libsndfile (``soundfile``) or FFmpeg (PyAV)."""

# First bytes -> (family, reader). Families that share a magic are told apart later.
_MAGIC: Final[tuple[tuple[int, bytes, str, Reader], ...]] = (
    (0, b"fLaC", "FLAC", "sndfile"),
    (0, b"OggS", "OGG", "sndfile"),
    (0, b"ID3", "MP3", "sndfile"),
    (4, b"ftyp", "MP4", "av"),
    (0, b"\x1a\x45\xdf\xa3", "MKV", "av"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF", "av"),
    (0, b"caff", "CAF", "sndfile"),
    (0, b".snd", "AU", "sndfile"),
    (0, b"#!AMR", "AMR", "av"),
)
HEAD_BYTES: Final = 4096
"""How much of a file its kind is told from."""

# MPEG audio: bitrate (kbit/s) by [version is MPEG-1][layer index], and sample rates.
_BITRATES: Final = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES: Final = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def sniff(head: bytes, size: int) -> tuple[str, Reader] | None:
    """The container family a file's first bytes announce, or None (not a container)."""
    for offset, magic, family, reader in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return family, reader
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF", "sndfile"
    if _mpeg_frames(head, size):
        return "MP3", "sndfile"
    if len(head) >= 7 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0 and _adts_frames(head):
        return "AAC", "av"
    return None


def _mpeg_frame_length(h: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose header is ``h[:4]``, or None."""
    if len(h) < 4 or h[0] != 0xFF or h[1] & 0xE0 != 0xE0:
        return None
    version, layer = (h[1] >> 3) & 3, (h[1] >> 1) & 3
    bitrate_i, rate_i, padding = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer == 0 or bitrate_i in (0, 15) or rate_i == 3:
        return None
    layer_n = 4 - layer
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer_n)][bitrate_i] * 1000
    rate = _MPEG_RATES[version][rate_i]
    if layer_n == 1:
        return (12 * bitrate // rate + padding) * 4
    per_frame = 144 if (layer_n == 2 or mpeg1) else 72
    return per_frame * bitrate // rate + padding


def _mpeg_frames(head: bytes, size: int) -> bool:
    """True when ``head`` starts with two consecutive MPEG audio frames (or one that
    fills the file): raw PCM can begin with a frame sync by chance, never with two."""
    first = _mpeg_frame_length(head)
    if first is None:
        return False
    if first == size:
        return True
    return first + 4 <= len(head) and _mpeg_frame_length(head[first:]) is not None


def _adts_frames(head: bytes) -> bool:
    """Two consecutive AAC ADTS frame headers at the start of ``head``."""
    length = ((head[3] & 3) << 11) | (head[4] << 3) | (head[5] >> 5)
    nxt = head[length : length + 2]
    return length > 7 and len(nxt) == 2 and nxt[0] == 0xFF and nxt[1] & 0xF6 == 0xF0


def is_container(path: str) -> bool:
    """True when the file starts like a known container (its own header says its format)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        size = os.fstat(f.fileno()).st_size
    return sniff(head, size) is not None


def mp3_truncation(path: str, head: bytes, size: int) -> str | None:
    """Why an MP3 is truncated (its Xing/Info header names more bytes than the file has),
    or None."""
    start = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        start = 10 + ((head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9])
    with open(path, "rb") as f:
        f.seek(start)
        frame = f.read(256)
    for tag in (b"Xing", b"Info"):
        at = frame.find(tag)
        if at < 0 or len(frame) < at + 16:
            continue
        flags = int.from_bytes(frame[at + 4 : at + 8], "big")
        if flags & 2:  # the byte count is present (after the frame count, if that is)
            pos = at + 8 + (4 if flags & 1 else 0)
            declared = int.from_bytes(frame[pos : pos + 4], "big")
            if declared and size - start < declared * 0.99:
                return (
                    f"the MP3 file is truncated: its header announces {declared} bytes of "
                    f"audio, the file holds {size - start}"
                )
        return None
    return None


def webm_doctype(path: str) -> bool:
    """Matroska's EBML header names its DocType ("webm" or "matroska") near the start."""
    with open(path, "rb") as f:
        head = f.read(64)
    at = head.find(b"\x42\x82")
    return at >= 0 and head[at + 3 : at + 7] == b"webm"
