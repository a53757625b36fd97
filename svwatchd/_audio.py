"""Audio input for the decoders: WAV files, raw files and raw socket bytes to float32 mono.

Engines want mono float32 samples in [-1, 1) at their own rate (16000 Hz by
default). This is the one place that turns a declared :class:`AudioFormat` into
that, so byte order, signedness, channel mixing and resampling are done once.

Decoding is libsndfile's (``soundfile``); the one layout it cannot read, unsigned
PCM wider than one byte, is reinterpreted with numpy. Resampling is ``soxr`` at
'HQ' quality, one-shot for files and :class:`soxr.ResampleStream` for sockets, so
a socket fed the bytes of a file yields the same samples as the file.

Bad audio raises :class:`AudioDecodeError`; genuine OS failures (missing file,
permission denied) pass through as ``OSError``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from svwatchd._wavheader import HEAD_BYTES, read_plain_header
from svwatchd.errors import AudioDecodeError
from svwatchd.model.enums import Encoding, Endian
from svwatchd.model.format import AudioFormat

__all__ = [
    "DEFAULT_RATE",
    "RawStreamDecoder",
    "Samples",
    "StrPath",
    "WavInfo",
    "check_rate",
    "decode_frames",
    "is_riff",
    "probe_wav",
    "read_wav",
    "resample",
    "to_mono",
    "wav_blocks",
]

Samples = npt.NDArray[np.float32]
"""A 1-D float32 array of mono samples in [-1, 1)."""

StrPath = str | os.PathLike[str]

DEFAULT_RATE: Final = 16000
_QUALITY: Final = "HQ"

# libsndfile subtype <-> (encoding, bytes per sample). PCM_S8 never occurs in WAV
# (8-bit WAV is unsigned) but is how libsndfile reads signed 8-bit raw.
_SUBTYPES: Final[dict[str, tuple[Encoding, int]]] = {
    "PCM_U8": (Encoding.UPCM, 1),
    "PCM_S8": (Encoding.SPCM, 1),
    "PCM_16": (Encoding.SPCM, 2),
    "PCM_24": (Encoding.SPCM, 3),
    "PCM_32": (Encoding.SPCM, 4),
    "ULAW": (Encoding.ULAW, 1),
    "ALAW": (Encoding.ALAW, 1),
}
_RAW_SUBTYPE: Final = {layout: subtype for subtype, layout in _SUBTYPES.items()}
_WAV_SUBTYPES: Final = ", ".join(s for s in _SUBTYPES if s != "PCM_S8")
# The RIFF tag decides the byte order: libsndfile's info reports "FILE" for RIFF.
_RIFF_TAGS: Final = {b"RIFF": Endian.LITTLE, b"RIFX": Endian.BIG}


@dataclass(frozen=True)
class WavInfo:
    """What :func:`probe_wav` learns from a WAV header: the format and the frame count."""

    format: AudioFormat
    frames: int

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return self.frames / self.format.samprate


def is_riff(path: StrPath) -> bool:
    """True when the file starts with a RIFF or RIFX tag, i.e. claims to be a WAV file."""
    with open(path, "rb") as f:
        return f.read(4) in _RIFF_TAGS


def probe_wav(path: StrPath) -> WavInfo:
    """Read a WAV header into a :class:`WavInfo` without decoding the samples.

    Raises :class:`AudioDecodeError` for a file that is not RIFF/RIFX WAVE, has an
    invalid header, an encoding other than 8-bit unsigned, 16/24/32-bit signed PCM,
    mu-law or A-law, a rate outside 8000..48000 Hz, or no frames.
    """
    return _read_wav(path, samples=False)[0]


class RawStreamDecoder:
    """Decode headerless audio arriving in arbitrary chunks (a TCP socket) incrementally.

    Chunks may split frames; the remainder waits for the next :meth:`feed`. Output
    is mono float32 at ``target_rate``; the concatenation of every ``feed`` and the
    final :meth:`flush` equals :func:`read_audio` on the same bytes as a raw file
    (up to resampler rounding). After ``flush`` the decoder is finished: ``feed``
    raises ``RuntimeError`` and further ``flush`` calls return nothing.
    """

    def __init__(self, fmt: AudioFormat, *, target_rate: int = DEFAULT_RATE) -> None:
        if fmt.filetype != "RAW":
            raise ValueError("RawStreamDecoder decodes headerless audio: fmt.filetype must be RAW")
        self.format = fmt
        self.target_rate = check_rate(target_rate)
        self._pending = bytearray()
        self._frames = 0
        self._finished = False
        self._stream: Any = None
        if fmt.samprate != target_rate:
            self._stream = soxr.ResampleStream(
                fmt.samprate, target_rate, 1, dtype="float32", quality=_QUALITY
            )

    @property
    def seconds_received(self) -> float:
        """Seconds of source audio received so far, counting complete frames only."""
        return self._frames / self.format.samprate

    def feed(self, data: bytes) -> Samples:
        """Decode the complete frames now available; return the samples ready so far."""
        if self._finished:
            raise RuntimeError("RawStreamDecoder.feed() after flush(): the stream has ended")
        self._pending += data
        usable = len(self._pending) - len(self._pending) % self.format.frame_bytes
        if usable == 0:
            return _EMPTY.copy()
        frames = decode_frames(bytes(self._pending[:usable]), self.format)
        del self._pending[:usable]
        self._frames += len(frames)
        return self._resample(to_mono(frames), last=False)

    def flush(self) -> Samples:
        """End the stream: drop any partial frame and return the resampler's last samples."""
        if self._finished:
            return _EMPTY.copy()
        self._finished = True
        self._pending.clear()
        return self._resample(_EMPTY, last=True)

    def _resample(self, mono: Samples, *, last: bool) -> Samples:
        if self._stream is None:
            return mono
        return np.asarray(self._stream.resample_chunk(mono, last=last), dtype=np.float32)


_EMPTY: Final[Samples] = np.zeros(0, dtype=np.float32)


def read_wav(path: StrPath) -> tuple[WavInfo, npt.NDArray[np.float32]]:
    """A whole WAV file: its header and its frames, shape (n, channels), float32."""
    info, frames = _read_wav(path, samples=True)
    assert frames is not None
    return info, frames


def wav_blocks(
    path: StrPath, *, start_frame: int = 0, blocksize: int
) -> Iterator[npt.NDArray[np.float32]]:
    """A WAV file's frames from ``start_frame`` on, ``blocksize`` frames at a time (the last
    block may be shorter): memory follows the block, not the file."""
    with _open_wav(path) as (source, fd, head), _sound_file(source, fd, head) as (snd, _):
        if start_frame:
            snd.seek(min(start_frame, snd.frames))
        for block in snd.blocks(blocksize=blocksize, dtype="float32", always_2d=True):
            yield np.asarray(block, dtype=np.float32)


def check_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"target_rate must be a positive integer, not {rate!r}")
    return rate


def _read_wav(path: StrPath, *, samples: bool) -> tuple[WavInfo, npt.NDArray[np.float32] | None]:
    """Open a WAV file, validate its header and, if ``samples``, read its frames (n, ch)."""
    with _open_wav(path) as (source, fd, head):
        plain = None if samples else read_plain_header(head, os.fstat(fd).st_size)
        if plain is not None:  # the common layout, read without libsndfile
            encoding, width, rate, channels, frames_n, big = plain
            endian = Endian.BIG if big else Endian.LITTLE
            fmt = AudioFormat("WAV", encoding, width, rate, channels, endian)
            return WavInfo(fmt, frames_n), None
        with _sound_file(source, fd, head) as (snd, info):
            frames = snd.read(dtype="float32", always_2d=True) if samples else None
    return info, None if frames is None else np.asarray(frames, dtype=np.float32)


@contextmanager
def _open_wav(path: StrPath) -> Iterator[tuple[str, int, bytes]]:
    """The file's descriptor and first bytes, once they claim RIFF/RIFX.

    Opened here so OS errors stay OSError; libsndfile reads the descriptor itself
    (a Python file object would cost a Python callback per read: twice the time).
    """
    source = os.fspath(path)
    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, HEAD_BYTES, 0)
        if head[:4] not in _RIFF_TAGS:
            raise AudioDecodeError(source, "not a valid RIFF/WAVE file (no RIFF or RIFX tag)")
        yield source, fd, head
    finally:
        os.close(fd)


@contextmanager
def _sound_file(source: str, fd: int, head: bytes) -> Iterator[tuple[Any, WavInfo]]:
    """libsndfile on an open WAV descriptor, its header checked; its errors name the file."""
    try:
        with sf.SoundFile(fd, closefd=False) as snd:
            yield snd, _wav_info(source, snd, _RIFF_TAGS[head[:4]])
    except sf.SoundFileError as exc:
        detail = str(getattr(exc, "error_string", exc)).strip().rstrip(".")
        raise AudioDecodeError(source, f"not a valid RIFF/WAVE file ({detail})") from None


def _wav_info(source: str, snd: Any, endian: Endian) -> WavInfo:
    """Check what libsndfile read from a WAV header and turn it into a WavInfo."""
    if snd.format not in ("WAV", "WAVEX"):
        raise AudioDecodeError(source, f"not a valid RIFF/WAVE file (read as {snd.format})")
    layout = _SUBTYPES.get(snd.subtype)
    if layout is None or snd.subtype == "PCM_S8":
        raise AudioDecodeError(
            source, f"unsupported WAV sample encoding {snd.subtype} (supported: {_WAV_SUBTYPES})"
        )
    try:
        fmt = AudioFormat("WAV", layout[0], layout[1], snd.samplerate, snd.channels, endian)
    except ValueError as exc:
        raise AudioDecodeError(source, f"bad WAV header, {exc}") from None
    if snd.frames <= 0:
        raise AudioDecodeError(source, "the WAV file holds no audio frames")
    return WavInfo(fmt, int(snd.frames))


def decode_frames(data: bytes, fmt: AudioFormat) -> npt.NDArray[np.float32]:
    """Decode the complete frames of raw bytes to float32 of shape (frames, channels).

    The one sample converter for raw audio, shared by read_audio and RawStreamDecoder.
    """
    count = len(data) // fmt.frame_bytes
    if count == 0:
        return np.zeros((0, fmt.channels), dtype=np.float32)
    data = data[: count * fmt.frame_bytes]
    subtype = _RAW_SUBTYPE.get((fmt.encoding, fmt.sampwidth))
    if subtype is not None:
        frames = sf.read(
            io.BytesIO(data),
            format="RAW",
            subtype=subtype,
            endian=fmt.endian.value,
            samplerate=fmt.samprate,
            channels=fmt.channels,
            dtype="float32",
            always_2d=True,
        )[0]
        return np.asarray(frames, dtype=np.float32)
    # Unsigned PCM of 2-4 bytes, which libsndfile cannot read: left-justify each
    # sample in 32 bits (little-endian), flip the sign bit (offset binary -> two's
    # complement) and scale like libsndfile does for signed PCM.
    width = fmt.sampwidth
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, width)
    if fmt.endian is Endian.BIG:
        raw = raw[:, ::-1]
    wide = np.zeros((len(raw), 4), dtype=np.uint8)
    wide[:, 4 - width :] = raw
    signed = (wide.view("<u4")[:, 0] ^ np.uint32(0x8000_0000)).view("<i4")
    return (signed.astype(np.float32) / np.float32(2**31)).reshape(-1, fmt.channels)


def to_mono(frames: npt.NDArray[np.float32]) -> Samples:
    """Mix (frames, channels) down to one channel by averaging."""
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0])
    return np.ascontiguousarray(frames.mean(axis=1, dtype=np.float32))


def resample(samples: Samples, rate: int, target_rate: int) -> Samples:
    if rate == target_rate:
        return samples
    return np.asarray(soxr.resample(samples, rate, target_rate, quality=_QUALITY), np.float32)
