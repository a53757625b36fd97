"""The enumerations of the stream contract: decode status, sample encoding, byte order."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

__all__ = ["DecodeStatus", "Encoding", "Endian"]


class _NamedEnum(StrEnum):
    """A string enum parsed case-insensitively from its name."""

    @classmethod
    def parse(cls, value: object) -> Self:
        """Return the member named by ``value`` (a member or its name, any case).

        Raises ``ValueError`` listing the valid names when there is no such member.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(m.name for m in cls)
        raise ValueError(f"{value!r} is not one of {names}")


class DecodeStatus(_NamedEnum):
    """Where a stream is in its life on the server."""

    QUEUED = "QUEUED"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    DONE = "DONE"
    ERROR = "ERROR"
    CLOSED = "CLOSED"
    DELETED = "DELETED"

    @property
    def finished(self) -> bool:
        """True for the end states: DONE, ERROR, CLOSED and DELETED."""
        return self in _FINISHED


_FINISHED = frozenset(
    {DecodeStatus.DONE, DecodeStatus.ERROR, DecodeStatus.CLOSED, DecodeStatus.DELETED}
)


class Encoding(_NamedEnum):
    """How samples are coded: signed or unsigned linear PCM, mu-law or A-law."""

    SPCM = "SPCM"
    UPCM = "UPCM"
    ULAW = "ULAW"
    ALAW = "ALAW"


class Endian(_NamedEnum):
    """Byte order of multi-byte samples."""

    LITTLE = "LITTLE"
    BIG = "BIG"
