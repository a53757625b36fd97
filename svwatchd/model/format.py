"""A source's audio format: how its samples are laid out, validated on creation.

Pure data (no numpy, no libsndfile), so the client, the server's request
schema and the daemon's config can all hold one without loading a decoder;
the limits come from :mod:`svwatchd.model.contract`.
"""

from __future__ import annotations

from dataclasses import dataclass

from svwatchd.model.contract import (
    FILETYPES,
    MAX_CHANNELS,
    MAX_CONTAINER_SAMPRATE,
    MAX_SAMPRATE,
    MAX_SAMPWIDTH,
    MIN_SAMPRATE,
    FileType,
)
from svwatchd.model.enums import Encoding, Endian

__all__ = ["AudioFormat"]


@dataclass(frozen=True)
class AudioFormat:
    """How a source's samples are laid out; validated on creation (``ValueError``).

    ``encoding`` and ``endian`` also accept member names ("ulaw", "big") and are
    stored as members. ``endian`` only matters for samples wider than one byte.
    """

    filetype: FileType
    encoding: Encoding
    sampwidth: int
    samprate: int
    channels: int = 1
    endian: Endian = Endian.LITTLE

    def __post_init__(self) -> None:
        if self.filetype not in FILETYPES:
            raise ValueError(
                f"filetype must be one of {', '.join(FILETYPES)}, not {self.filetype!r}"
            )
        object.__setattr__(self, "encoding", Encoding.parse(self.encoding))
        object.__setattr__(self, "endian", Endian.parse(self.endian))
        for name in ("sampwidth", "samprate", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        top = MAX_SAMPRATE if self.filetype in ("WAV", "RAW") else MAX_CONTAINER_SAMPRATE
        if not MIN_SAMPRATE <= self.samprate <= top:
            raise ValueError(f"sample rate {self.samprate} Hz is outside {MIN_SAMPRATE}..{top} Hz")
        if self.encoding in (Encoding.ULAW, Encoding.ALAW) and self.sampwidth != 1:
            raise ValueError(f"{self.encoding.value} samples are 1 byte wide, not {self.sampwidth}")
        if not 1 <= self.sampwidth <= MAX_SAMPWIDTH:
            raise ValueError(
                f"sample width must be 1 to {MAX_SAMPWIDTH} bytes, not {self.sampwidth}"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1 to {MAX_CHANNELS}, not {self.channels}")

    @property
    def is_container(self) -> bool:
        """True for a compressed or container file (neither WAV nor headerless RAW)."""
        return self.filetype not in ("WAV", "RAW")

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return self.sampwidth * self.channels
