"""Compressed and container versions of the shared test speech, made in the tests themselves.

soundfile writes FLAC, OGG/Vorbis, OGG/Opus and MP3; PyAV (FFmpeg inside its
wheel) writes M4A/AAC, MP4 with a video stream, MKV with several audio
tracks in several languages, and WebM/Opus. Nothing is hand-edited bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

__all__ = ["SOUNDFILE_FORMATS", "write_av", "write_format", "write_soundfile"]

# suffix -> (soundfile format, subtype, rate it needs or None for the source's)
SOUNDFILE_FORMATS: dict[str, tuple[str, str, int | None]] = {
    "flac": ("FLAC", "PCM_16", None),
    "ogg": ("OGG", "VORBIS", None),
    "opus": ("OGG", "OPUS", 48000),
    "mp3": ("MP3", "MPEG_LAYER_III", None),
}


def _at_rate(samples: np.ndarray, rate: int, want: int | None) -> tuple[np.ndarray, int]:
    if want is None or want == rate:
        return samples, rate
    import soxr

    return np.asarray(soxr.resample(samples, rate, want), dtype=np.float32), want


def write_soundfile(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write ``samples`` (float32, (n,) or (n, ch)) as FLAC/OGG/Opus/MP3 by ``path``'s suffix."""
    fmt, subtype, want = SOUNDFILE_FORMATS[path.suffix.lstrip(".").lower()]
    data, rate = _at_rate(samples, rate, want)
    sf.write(path, data, rate, format=fmt, subtype=subtype)
    return path


def write_av(
    path: Path,
    tracks: Sequence[np.ndarray],
    rate: int,
    *,
    container: str,
    codec: str = "aac",
    languages: Sequence[str | None] | None = None,
    video: bool = False,
    default: int | None = None,
) -> Path:
    """Write one audio track per array (mono or (n, 2) stereo) with PyAV, optionally a video."""
    codec_rate = 48000 if codec == "libopus" else rate
    with av.open(str(path), "w", format=container) as out:
        streams = []
        for i, samples in enumerate(tracks):
            layout = "stereo" if samples.ndim == 2 else "mono"
            stream = out.add_stream(codec, rate=codec_rate, layout=layout)
            if languages and languages[i]:
                stream.metadata["language"] = languages[i]
            if default is not None:
                stream.disposition = av.stream.Disposition.default if i == default else 0
            streams.append(stream)
        picture = None
        if video:
            picture = out.add_stream("mpeg4", rate=1)
            picture.width, picture.height, picture.pix_fmt = 64, 64, "yuv420p"
        for stream, samples in zip(streams, tracks, strict=True):
            data, _ = _at_rate(samples, rate, codec_rate)
            planar = np.ascontiguousarray(np.atleast_2d(data.T if data.ndim == 2 else data))
            frame = av.AudioFrame.from_ndarray(
                planar.astype(np.float32), format="fltp", layout=stream.layout.name
            )
            frame.sample_rate = codec_rate
            frame.pts, frame.time_base = 0, Fraction(1, codec_rate)
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        if picture is not None:
            image = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in picture.encode(image):
                out.mux(packet)
            for packet in picture.encode(None):
                out.mux(packet)
    return path


def write_format(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write the speech in the container ``path``'s suffix names (one track, no video)."""
    suffix = path.suffix.lstrip(".").lower()
    if suffix in SOUNDFILE_FORMATS:
        return write_soundfile(path, samples, rate)
    if suffix == "m4a":
        return write_av(path, [samples], rate, container="mp4")
    if suffix == "mp4":
        return write_av(path, [samples], rate, container="mp4", video=True)
    if suffix == "mkv":
        return write_av(path, [samples], rate, container="matroska")
    if suffix == "webm":
        return write_av(path, [samples], rate, container="webm", codec="libopus")
    raise ValueError(f"no writer for {path.suffix}")
