"""A synthetic non-speech corpus for the "not speech" tests: what a call holds besides talk.

Hold music (chords, and a sung line), call-progress tones, fax tones,
DTMF, noise and silence, made here with numpy so nothing is downloaded and every run hears
the same audio (fixed seeds). Levels are set by RMS to sit at or above
the test speech (about -20 to -27 dBFS), so an insert is never "too quiet to
matter". The tone plans follow the usual telephone conventions:

* ringback (North America): 440 + 480 Hz, 2 s on, 4 s off;
* busy: 480 + 620 Hz, 0.5 s on, 0.5 s off;
* fax CNG (calling tone): 1100 Hz, 0.5 s on, 3 s off;
* fax CED / answer tone: 2100 Hz, continuous (with 180 degree phase reversals
  every 450 ms, as V.25 ANSam-style answer tones have);
* DTMF: a row and a column tone per key (697/770/852/941 + 1209/1336/1477 Hz),
  100 ms on, 100 ms off.

:func:`call` lays real speech and inserts end to end and reports where each
insert lies, so a test can check no utterance falls inside one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SR = 16000

Samples = npt.NDArray[np.float32]

__all__ = ["INSERTS", "Call", "call", "make_insert"]


def _t(seconds: float) -> npt.NDArray[np.float64]:
    return np.arange(round(seconds * SR)) / SR


def _at_level(x: npt.NDArray[np.float64], dbfs: float) -> Samples:
    """Scale to an RMS of ``dbfs`` (0 dBFS = a full-scale square wave), as float32."""
    rms = float(np.sqrt(np.mean(x**2)))
    if rms == 0.0:
        return x.astype(np.float32)
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def _fade(x: npt.NDArray[np.float64], seconds: float = 0.01) -> npt.NDArray[np.float64]:
    """Short raised-cosine ramps at both ends (no clicks, as real tone generators do)."""
    n = min(round(seconds * SR), len(x) // 2)
    if n:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _cadence(
    tone: Callable[[float], npt.NDArray[np.float64]], on: float, off: float, seconds: float
) -> npt.NDArray[np.float64]:
    """Repeat ``tone(on)`` followed by ``off`` seconds of silence, cut to ``seconds``."""
    period = np.concatenate([_fade(tone(on)), np.zeros(round(off * SR))])
    reps = int(np.ceil(seconds * SR / len(period)))
    return np.tile(period, reps)[: round(seconds * SR)]


def _sines(*freqs: float) -> Callable[[float], npt.NDArray[np.float64]]:
    return lambda s: sum((np.sin(2 * np.pi * f * _t(s)) for f in freqs), np.zeros(len(_t(s))))


def _note(
    freq: float, seconds: float, harmonics: Sequence[float] = (1.0, 0.5, 0.25)
) -> npt.NDArray[np.float64]:
    """A plucked-ish note: a few harmonics, a quick attack and an exponential decay."""
    t = _t(seconds)
    x = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t) for k, a in enumerate(harmonics))
    envelope = np.minimum(t / 0.02, 1.0) * np.exp(-2.5 * t)
    return np.asarray(x * envelope, dtype=np.float64)


def _midi(n: int) -> float:
    return float(440.0 * 2 ** ((n - 69) / 12))


def hold_music(seconds: float) -> Samples:
    """Piano-like chords (C G Am F, one a second), a bass line and a melody on top."""
    chords = [(60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60)]
    melody = [76, 74, 72, 74, 76, 76, 76, 74, 74, 74, 76, 79, 79, 76, 74, 72]
    out = np.zeros(round(seconds * SR) + SR)
    beat = 0
    while beat * SR < len(out) - SR:
        chord = chords[beat % len(chords)]
        pos = beat * SR
        for n in chord:
            out[pos : pos + SR] += _note(_midi(n), 1.0)
        out[pos : pos + SR] += 1.5 * _note(_midi(chord[0] - 12), 1.0, (1.0, 0.3))
        for half in range(2):
            m = melody[(2 * beat + half) % len(melody)]
            start = pos + half * SR // 2
            out[start : start + SR // 2] += 1.2 * _note(_midi(m), 0.5, (1.0, 0.2))
        beat += 1
    return _at_level(out[: round(seconds * SR)], -20.0)


def organ_chords(seconds: float) -> Samples:
    """Sustained organ-like chords with vibrato, changing every 1.5 s (elevator music)."""
    chords = [(48, 55, 64, 67), (45, 52, 60, 64), (41, 48, 57, 60), (43, 50, 59, 62)]
    t = _t(1.5)
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)
    parts = []
    for k in range(int(np.ceil(seconds / 1.5))):
        x = np.zeros(len(t))
        for n in chords[k % len(chords)]:
            phase = 2 * np.pi * np.cumsum(_midi(n) * vibrato) / SR
            x += np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
        parts.append(_fade(x, 0.05))
    return _at_level(np.concatenate(parts)[: round(seconds * SR)], -20.0)


_VOWELS = ((800, 1200), (500, 1900), (300, 2300), (500, 900), (700, 1100))
"""First two formants (Hz) of a, e, i, o and an open vowel, roughly as sung."""


def sung_melody(seconds: float, tune: Sequence[int] = (57, 60, 64, 62, 60, 59, 57, 55)) -> Samples:
    """A voice-like line: a sung tune on open vowels, two notes a second, with vibrato.

    Additive synthesis: the harmonics of each note weighted by two formant
    resonances of its vowel. Hold music with a vocal line is the non-speech
    the VAD lets through (this passes Silero as speech), so it is the case
    that reaches the decoder.
    """
    t = _t(0.5)
    parts = []
    for k in range(int(np.ceil(seconds / 0.5))):
        f0 = _midi(tune[k % len(tune)])
        phase = np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))) / SR
        note = np.zeros(len(t))
        for h in range(1, int(4000 / f0)):
            gain = sum(1 / (1 + ((h * f0 - f) / 80) ** 2) for f in _VOWELS[k % len(_VOWELS)])
            note += gain / np.sqrt(h) * np.sin(2 * np.pi * h * phase)
        parts.append(_fade(note, 0.05))
    return _at_level(np.concatenate(parts)[: round(seconds * SR)], -20.0)


def sung_low(seconds: float) -> Samples:
    """:func:`sung_melody` an octave down (a baritone line)."""
    return sung_melody(seconds, (45, 48, 52, 50, 48, 47, 45, 43))


def ringback(seconds: float) -> Samples:
    """North American ringback: 440 + 480 Hz, 2 s on, 4 s off."""
    return _at_level(_cadence(_sines(440, 480), 2.0, 4.0, seconds), -18.0)


def busy(seconds: float) -> Samples:
    """Busy tone: 480 + 620 Hz, 0.5 s on, 0.5 s off."""
    return _at_level(_cadence(_sines(480, 620), 0.5, 0.5, seconds), -18.0)


def fax_cng(seconds: float) -> Samples:
    """Fax calling tone: 1100 Hz beeps, 0.5 s on, 3 s off."""
    return _at_level(_cadence(_sines(1100), 0.5, 3.0, seconds), -15.0)


def fax_ced(seconds: float) -> Samples:
    """Fax answer tone: 2100 Hz, continuous, phase reversed every 450 ms."""
    t = _t(seconds)
    reversals = np.where((t // 0.45) % 2 == 0, 1.0, -1.0)
    return _at_level(_fade(np.sin(2 * np.pi * 2100 * t) * reversals), -15.0)


_KEYPAD = ("123", "456", "789", "*0#")
_DTMF = {
    key: (row_hz, col_hz)
    for keys, row_hz in zip(_KEYPAD, (697, 770, 852, 941), strict=True)
    for key, col_hz in zip(keys, (1209, 1336, 1477), strict=True)
}


def dtmf(seconds: float, digits: str = "4155550123#*908") -> Samples:
    """DTMF digits, 100 ms on and 100 ms off, repeated to fill ``seconds``."""
    parts = [
        np.concatenate([_fade(_sines(*_DTMF[d])(0.1), 0.005), np.zeros(SR // 10)]) for d in digits
    ]
    seq = np.concatenate(parts)
    reps = int(np.ceil(seconds * SR / len(seq)))
    return _at_level(np.tile(seq, reps)[: round(seconds * SR)], -18.0)


def pink_noise(seconds: float, dbfs: float = -25.0) -> Samples:
    """Pink (1/f power) noise, shaped in the frequency domain from seeded white noise."""
    n = round(seconds * SR)
    spectrum = np.fft.rfft(np.random.default_rng(13).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    return _at_level(_fade(np.fft.irfft(spectrum, n), 0.05), dbfs)


def silence(seconds: float) -> Samples:
    """Digital silence: all zeros."""
    return np.zeros(round(seconds * SR), dtype=np.float32)


INSERTS: dict[str, Callable[[float], Samples]] = {
    "hold music": hold_music,
    "organ chords": organ_chords,
    "sung melody": sung_melody,
    "sung low": sung_low,
    "ringback": ringback,
    "busy": busy,
    "fax CNG": fax_cng,
    "fax CED": fax_ced,
    "DTMF": dtmf,
    "pink noise": pink_noise,
    "silence": silence,
}
"""Every kind of insert, by name: ``INSERTS[name](seconds)`` gives the samples."""


def make_insert(name: str, seconds: float) -> Samples:
    """``seconds`` of the insert called ``name`` (a key of :data:`INSERTS`)."""
    return INSERTS[name](seconds)


@dataclass(frozen=True)
class Call:
    """A mixed recording and where its parts lie (seconds from its start)."""

    audio: Samples
    speech: tuple[tuple[float, float], ...]
    inserts: tuple[tuple[str, float, float], ...]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.audio) / SR


def call(parts: Sequence[Samples | tuple[str, float]]) -> Call:
    """Lay speech clips (arrays) and inserts (``(name, seconds)``) end to end, as one call.

    Each insert is preceded and followed by 0.3 s of digital silence (a real
    pause, so the speech around it ends and starts as it was recorded).
    """
    pieces: list[Samples] = []
    speech: list[tuple[float, float]] = []
    inserts: list[tuple[str, float, float]] = []
    pos = 0
    pause = silence(0.3)
    for part in parts:
        if isinstance(part, tuple):
            name, seconds = part
            pieces.append(pause)
            pos += len(pause)
            samples = make_insert(name, seconds)
            inserts.append((name, pos / SR, (pos + len(samples)) / SR))
            pieces += [samples, pause]
            pos += len(samples) + len(pause)
        else:
            speech.append((pos / SR, (pos + len(part)) / SR))
            pieces.append(part.astype(np.float32))
            pos += len(part)
    return Call(np.concatenate(pieces), tuple(speech), tuple(inserts))
