"""What a file job decodes of one stream: its audio as one clip, or one clip per channel.

Most streams are one clip: the file mixed to mono. With the ``split_channels``
tag (a stereo call, one party per channel) each channel is a clip of its own,
labelled from ``channel_labels`` (else ``ch0``, ``ch1``...); a channel that
only repeats another (a mono call stored as stereo) is decoded once, and a
silent channel not at all, both said in the stream's stats. A container's
track is chosen here too (the ``track`` tag, else the ``language`` one, else
the container's default) and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from svwatchd._audio import Samples, probe_wav
from svwatchd._channels import duplicate_channels
from svwatchd._decode import choose_track, read_audio, read_channels
from svwatchd._media import Track
from svwatchd.model.format import AudioFormat
from svwatchd.model.metadata import channel_labels
from svwatchd.model.speechdata import Utterance
from svwatchd.server._engines.base import Heard
from svwatchd.server._store import StreamRow

__all__ = [
    "SILENCE_PEAK",
    "Clip",
    "Loaded",
    "label",
    "load",
    "split_clips",
    "splits",
]

SILENCE_PEAK = 1e-3
"""A channel whose samples never reach this (-60 dBFS) is silent: nothing to decode."""


@dataclass(frozen=True)
class Clip:
    """One clip to decode: mono samples at the engine's rate, and the channel they are."""

    samples: Samples
    channel: int | None = None  # set when the channels are decoded apart
    speaker: str | None = None


@dataclass(frozen=True)
class Loaded:
    """A stream's clips, with what the stream's stats record about them."""

    clips: list[Clip]
    seconds: float  # the source's duration
    track: Track | None = None
    channels_decoded: int | None = None
    channels_repeated: int | None = None

    def without_samples(self) -> Loaded:
        """The same clips with no samples: all that labelling their results needs once they
        are decoded (a long file's decoded pieces wait to commit without their audio)."""
        return replace(self, clips=[replace(c, samples=_NO_SAMPLES) for c in self.clips])


_NO_SAMPLES: Samples = np.zeros(0, dtype=np.float32)


def load(row: StreamRow, sample_rate: int) -> Loaded:
    """Read ``row``'s file for decoding (a thread's work: it reads and resamples the file).

    The file is the authority: a WAV header and a container are read again.
    Raises :class:`AudioDecodeError` or ``OSError`` for a file that cannot be read.
    """
    assert row.path is not None
    fmt = probe_wav(row.path).format if row.filetype == "WAV" else row.format
    chosen = choose_track(row.path, fmt, row.track, row.language)
    track = chosen.track if chosen is not None else None
    if not splits(row, fmt):
        mono = read_audio(row.path, fmt, target_rate=sample_rate, chosen=chosen)
        return Loaded([Clip(mono)], len(mono) / sample_rate, track)
    channels = read_channels(row.path, fmt, target_rate=sample_rate, chosen=chosen)
    clips, repeated = split_clips(channels, channel_labels(row.tags, len(channels)))
    return Loaded(clips, len(channels[0]) / sample_rate, track, len(clips), repeated)


def splits(row: StreamRow, fmt: AudioFormat) -> bool:
    """True when the stream's channels are decoded apart (``split_channels`` on a file with
    more than one)."""
    return row.tags.get("split_channels") is True and fmt.channels > 1


def split_clips(channels: list[Samples], labels: list[str]) -> tuple[list[Clip], int]:
    """One clip per channel worth decoding, labelled; and how many channels repeated another.

    A channel that repeats an earlier one is left out, and so is a silent one."""
    repeats = duplicate_channels(channels)
    clips = [
        Clip(samples, i, labels[i])
        for i, samples in enumerate(channels)
        if i not in repeats and float(np.max(np.abs(samples), initial=0.0)) >= SILENCE_PEAK
    ]
    return clips, len(repeats)


def label(loaded: Loaded, results: list[Heard]) -> list[Utterance]:
    """The stream's utterances from its clips' results: each labelled with its channel when
    the channels were decoded apart, all in time order."""
    out = [
        replace(u, channel=clip.channel, speaker=clip.speaker) if clip.channel is not None else u
        for clip, heard in zip(loaded.clips, results, strict=True)
        for u in heard.utterances
    ]
    out.sort(key=lambda u: (u.start, u.channel or 0))
    return out
