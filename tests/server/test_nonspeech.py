"""Not speech: hold music, tones, noise and silence give no text; the speech around them does.

The corpus is made in ``tests/nonspeech.py`` (chords, a sung line, ringback,
busy, fax CNG and CED, DTMF, pink noise, digital silence) and laid between
real speech clips. The engines are the real ones with their real models; the
guard's rules are also checked directly on faster-whisper's own Segment type.

Utterance times may reach :data:`EDGE` seconds into an insert: Whisper
stretches a last word into the pause after it and starts a first word a
little early.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from faster_whisper.transcribe import Segment, Word

from svwatchd.model.speechdata import Utterance
from svwatchd.server._engines import Engine, EngineConfig, load_engine
from svwatchd.server._engines.guard import rejects, screen
from svwatchd.server._engines.packing import Placed, touched
from svwatchd.server._segmenter import LiveSegmenter
from tests.conftest import speech_file
from tests.nonspeech import INSERTS, Call, call, make_insert
from tests.server.test_engines import (
    LONG_FORM,
    SR,
    assert_well_formed,
    load_speech,
    reference,
    text_of,
    wer,
)

EDGE = 0.3
"""Seconds an utterance may reach into an insert at either end."""

TONES_AND_NOISE = [n for n in INSERTS if not n.startswith("sung")]
"""The inserts no VAD should take for speech (the sung lines pass Silero as speech)."""

CALLS: dict[str, list[str | tuple[str, float]]] = {
    "music and tones": [
        LONG_FORM[0],
        ("hold music", 6.0),
        LONG_FORM[1],
        ("ringback", 6.0),
        LONG_FORM[2],
        ("fax CNG", 4.0),
        LONG_FORM[3],
        ("DTMF", 3.0),
        LONG_FORM[4],
    ],
    "voice-like music, noise and silence": [
        LONG_FORM[1],
        ("sung melody", 3.0),
        LONG_FORM[4],
        ("pink noise", 4.0),
        LONG_FORM[0],
        ("busy", 3.0),
        LONG_FORM[2],
        ("fax CED", 3.0),
        LONG_FORM[3],
        ("organ chords", 4.0),
        LONG_FORM[1],
        ("silence", 8.0),
        LONG_FORM[4],
    ],
}
"""Two calls of real speech (the five LibriVox clips) with inserts between them."""


def build(parts: Sequence[str | tuple[str, float]]) -> tuple[Call, list[str]]:
    """The call of ``parts`` (speech file names and inserts) and its speech's references."""
    clips = [load_speech(p) if isinstance(p, str) else p for p in parts]
    return call(clips), [reference(p) for p in parts if isinstance(p, str)]


def inside_inserts(utterances: Sequence[Utterance], mixed: Call) -> list[str]:
    """The utterances that reach more than :data:`EDGE` s into an insert, described."""
    return [
        f"{u.text!r} at {u.start:.2f}-{u.end:.2f} s inside {name} ({lo:.2f}-{hi:.2f} s)"
        for u in utterances
        for name, lo, hi in mixed.inserts
        if u.start < hi - EDGE and u.end > lo + EDGE
    ]


def without_inserts(parts: Sequence[str | tuple[str, float]]) -> np.ndarray:
    """The same speech clips, each insert replaced by a 0.6 s pause (the pauses around it)."""
    return call([load_speech(p) if isinstance(p, str) else ("silence", 0.0) for p in parts]).audio


@pytest.fixture(scope="module")
def whisper() -> Engine:
    speech_file("001.wav")
    return load_engine(EngineConfig())


@pytest.fixture(scope="module")
def sphinx() -> Engine:
    speech_file("001.wav")
    return load_engine(EngineConfig(name="pocketsphinx"))


def dropped(engine: Engine) -> int:
    return int(str(engine.info()["dropped_segments"]))


# -- the guard's rules, on faster-whisper's own types -------------------------------------------


def segment(
    text: str,
    *,
    seek: int = 0,
    nsp: float = 0.05,
    lp: float = -0.3,
    cr: float = 1.1,
    t: float = 0.0,
    p: Sequence[float] = (),
) -> Segment:
    """A decoded segment as faster-whisper yields it; word probabilities ``p`` (else 0.9)."""
    texts = text.split() or [text]
    probs = list(p) or [0.9] * len(texts)
    words = [
        Word(i * 0.3, i * 0.3 + 0.25, " " + w, q)
        for i, (w, q) in enumerate(zip(texts, probs, strict=True))
    ]
    return Segment(0, seek, 0.0, 1.0, " " + text, [], lp, cr, nsp, words, t)


def test_guard_rules() -> None:
    speech = segment("He might even have been made amiable himself.")
    assert rejects(speech, 0.9) is None
    # Whisper's own rule: likely no speech and an unlikely text
    assert rejects(segment("Ah, eeee", nsp=0.69, lp=-1.24), 0.9) == "not_speech"
    # the measured "Thank you." on a sung line: Whisper's rule keeps it (-0.74 > -1.0),
    # its improbable first word does not
    thanks = segment("Thank you.", nsp=0.77, lp=-0.74, cr=0.56, p=(0.03, 0.97))
    assert rejects(thanks, 0.9) is None and rejects(thanks, 0.03) == "not_speech"
    # sampled text (the greedy text looped) on a window the model hears as no speech
    assert rejects(segment("A-a-a-a", nsp=0.69, lp=-0.47, t=0.8), 0.9) == "not_speech"
    # but a real, if short, utterance the model is unsure about is kept
    assert rejects(segment("5 5", nsp=0.56, lp=-0.61, cr=0.27), 0.40) is None
    assert rejects(segment("Go forward.", nsp=0.2, lp=-0.5, t=0.4), 0.05) is None
    assert rejects(segment("Beep " * 14, nsp=0.3, lp=-0.05, cr=29.3), 0.35) == "repetition"
    assert rejects(segment("."), 1.0) == "no_words" and rejects(segment("♪ ♪"), 1.0) == "no_words"
    assert rejects(segment("10."), 0.9) is None


def test_screen_judges_each_window_by_its_first_word() -> None:
    first = segment("Thank you.", seek=0, nsp=0.8, lp=-0.7, p=(0.03, 0.97))
    second = segment("Thank you.", seek=0, nsp=0.8, lp=-0.7, p=(0.95, 0.97))
    other = segment("Go somewhere and do something.", seek=3000, nsp=0.8, lp=-0.4)
    out = screen([first, second, segment("."), other])
    assert out.kept == [other]
    assert [rule for _s, rule in out.dropped] == ["not_speech", "not_speech", "no_words"]
    assert out.rules == {"not_speech": 2, "no_words": 1}


def test_touched_names_the_clips_a_dropped_segment_met() -> None:
    # clips of 1 s at window offsets 0, 3 and 6 s
    window = [Placed(k, ((0, SR),), 3 * k * SR) for k in range(3)]
    assert touched(window, [(0.2, 0.8)]) == {0}
    assert touched(window, [(0.5, 3.5)]) == {0, 1}
    assert touched(window, [(4.2, 5.5)]) == {1, 2}  # in a gap: both neighbours
    assert touched(window, [(7.5, 8.0)]) == {2}  # after the last clip
    assert touched(window, []) == set()


# -- Whisper --------------------------------------------------------------------------------


@pytest.mark.slow
def test_whisper_inserts_alone_give_no_text(whisper: Engine) -> None:
    """Each insert as a clip of its own (a file, or a live segment): no utterance."""
    before = whisper.info().get("dropped_segments")
    heard = {
        f"{name} {seconds:g} s": text_of(whisper.transcribe(make_insert(name, seconds)))
        for name in INSERTS
        for seconds in (2.0, 3.0, 6.0)
    }
    heard["60 s of digital silence"] = text_of(whisper.transcribe(make_insert("silence", 60.0)))
    assert {k: v for k, v in heard.items() if v} == {}
    assert dropped(whisper) > int(
        str(before)
    )  # the guard, not the VAD alone, kept the sung lines out


@pytest.mark.slow
def test_whisper_packed_inserts_give_no_text_and_cards_keep_theirs(whisper: Engine) -> None:
    """Short clips packed into shared windows: inserts get nothing, speech keeps its words."""
    names = ["001.wav", "003.wav", "goforward.raw", "005.wav"]
    inserts = [("sung melody", 3.0), ("ringback", 4.0), ("sung low", 6.0), ("DTMF", 3.0)]
    inserts += [("hold music", 4.0), ("pink noise", 3.0), ("sung melody", 2.0), ("silence", 5.0)]
    clips = [make_insert(n, s) for n, s in inserts]
    for k, name in enumerate(names):
        clips.insert(3 * k, load_speech(name))
    results = whisper.transcribe_many(clips)
    speech_at = [3 * k for k in range(len(names))]
    for k, (name, seconds) in enumerate(inserts):
        index = [i for i in range(len(clips)) if i not in speech_at][k]
        assert results[index] == [], (name, seconds, text_of(results[index]))
    refs = [reference(n) for n in names]
    hyps = [text_of(results[i]) for i in speech_at]
    for i, name in zip(speech_at, names, strict=True):
        assert results[i], name
        assert_well_formed(results[i], len(clips[i]) / SR)
    assert wer(refs, hyps) <= 0.25, hyps


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CALLS))
def test_whisper_call_with_inserts(whisper: Engine, name: str) -> None:
    """No utterance inside an insert; the speech around them as good as without them."""
    mixed, refs = build(CALLS[name])
    utterances = whisper.transcribe(mixed.audio)
    assert_well_formed(utterances, mixed.duration)
    assert inside_inserts(utterances, mixed) == []
    plain = whisper.transcribe(without_inserts(CALLS[name]))
    with_inserts, baseline = (
        wer([" ".join(refs)], [text_of(utterances)]),
        wer([" ".join(refs)], [text_of(plain)]),
    )
    print(f"{name}: WER {with_inserts:.3f} with the inserts, {baseline:.3f} without")
    assert with_inserts <= baseline + 0.03 and with_inserts <= 0.15


LIVE_CALL: list[str | tuple[str, float]] = [
    LONG_FORM[1],
    ("silence", 0.6),
    ("sung melody", 3.0),
    ("silence", 0.6),
    ("ringback", 6.0),
    ("silence", 0.6),
    LONG_FORM[4],
]
"""A live call: speech, hold music with a sung line, ringback, speech (pauses between)."""


@pytest.mark.slow
def test_whisper_live_segments(whisper: Engine) -> None:
    """The live path as svserver runs it: the call arrives in 0.1 s reads, the live
    segmenter cuts it on the VAD, each segment is decoded alone. The sung line comes
    out in pieces of its own (alone, Whisper hears "Good." and "Thank you." in them)."""
    mixed, refs = build(LIVE_CALL)
    segmenter = LiveSegmenter()
    segments = []
    for i in range(0, len(mixed.audio), SR // 10):
        segments += segmenter.feed(mixed.audio[i : i + SR // 10])
    segments += segmenter.flush()
    assert len(segments) > 3  # the inserts were cut apart from the speech
    utterances = [
        replace(u, start=u.start + seg.start, end=u.end + seg.start)
        for seg in segments
        for u in whisper.transcribe_many([seg.audio])[0]
    ]
    assert inside_inserts(utterances, mixed) == []
    assert wer([" ".join(refs)], [text_of(utterances)]) <= 0.15


@pytest.mark.slow
def test_whisper_sixty_seconds_of_silence(whisper: Engine) -> None:
    silence = make_insert("silence", 60.0)
    assert whisper.transcribe(silence) == []
    assert whisper.transcribe_many([silence, silence]) == [[], []]


# -- pocketsphinx ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sphinx_tones_and_noise_alone_give_no_text(sphinx: Engine) -> None:
    """Without speech, the VAD's veto leaves pocketsphinx nothing to decode (a sung line
    passes the VAD as speech and comes out as words: pocketsphinx has no guard for it)."""
    heard = {
        f"{name} {seconds:g} s": text_of(sphinx.transcribe(make_insert(name, seconds)))
        for name in TONES_AND_NOISE
        for seconds in (3.0, 8.0)
    }
    heard["60 s of digital silence"] = text_of(sphinx.transcribe(make_insert("silence", 60.0)))
    assert {k: v for k, v in heard.items() if v} == {}


def set_off(parts: Sequence[str | tuple[str, float]]) -> list[str | tuple[str, float]]:
    """``parts`` with 0.4 s more silence either side of each insert (1 s pauses in all)."""
    out: list[str | tuple[str, float]] = []
    for part in parts:
        out += [("silence", 0.4), part, ("silence", 0.4)] if isinstance(part, tuple) else [part]
    return out


@pytest.mark.slow
def test_sphinx_call_with_tones_and_noise_set_off(sphinx: Engine) -> None:
    """Inserts with a 1 s pause either side: no text in them. (Right after speech, with no
    pause the Endpointer hears, pocketsphinx still decodes music with the speech; and the
    Endpointer holds the DTMF and the pause after it in the last clip's stretch, which
    costs that clip four words: "made the amiable himself" becomes "made a real goal in
    itself", hence the slack.)"""
    parts = set_off(CALLS["music and tones"])
    mixed, refs = build(parts)
    utterances = sphinx.transcribe(mixed.audio)
    assert_well_formed(utterances, mixed.duration)
    assert inside_inserts(utterances, mixed) == []
    with_inserts = wer([" ".join(refs)], [text_of(utterances)])
    baseline = wer([" ".join(refs)], [text_of(sphinx.transcribe(without_inserts(parts)))])
    print(f"pocketsphinx: WER {with_inserts:.3f} with the inserts, {baseline:.3f} without")
    assert with_inserts <= baseline + 0.06
