"""Tests for svwatchd.client.speechdata: the result model, its validation and its writers."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from svwatchd.model.contract import OUTPUT_FORMATS
from svwatchd.model.speechdata import (
    MAX_CUE_SECONDS,
    MAX_LINE_CHARS,
    Cue,
    Utterance,
    Word,
    format_timestamp,
    from_json,
    make_cues,
    render,
    srt_timestamp,
    to_json,
    to_srt,
    to_text,
    to_vtt,
    vtt_timestamp,
    wrap_cue_text,
)

TIMESTAMP = re.compile(r"(\d{2,}):(\d{2}):(\d{2})[,.](\d{3})")


def _utt(start: float, end: float, text: str, words: tuple[Word, ...] = ()) -> Utterance:
    return Utterance(start, end, text, 0.9, words)


def _timed(text: str, start: float = 0.0, step: float = 0.5, dur: float = 0.4) -> Utterance:
    """An utterance whose words follow each other every ``step`` seconds."""
    words = tuple(
        Word(t, start + i * step, start + i * step + dur, 0.8) for i, t in enumerate(text.split())
    )
    return _utt(start, words[-1].end, text, words)


def _parse(stamp: str) -> Decimal:
    m = TIMESTAMP.fullmatch(stamp)
    assert m is not None, stamp
    h, mi, s, ms = (int(g) for g in m.groups())
    return Decimal(h * 3600 + mi * 60 + s) + Decimal(ms) / 1000


def _assert_cue_bounds(cue: Cue) -> None:
    lines = wrap_cue_text(cue.text)
    assert 1 <= len(lines) <= 2
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert cue.end - cue.start <= MAX_CUE_SECONDS + 1e-9


SAMPLE = [
    _utt(3.0, 4.5, "Second  line\nhere", ()),
    _utt(0.5, 2.25, "Héllo world.", (Word("Héllo", 0.5, 1.0, 0.9), Word("world.", 1.1, 2.25, 0.8))),
    _utt(5.0, 5.5, "   ", ()),
]


# --- writers: exact output -------------------------------------------------------------


def test_srt_exact() -> None:
    assert to_srt(SAMPLE) == (
        "1\n00:00:00,500 --> 00:00:02,250\nHéllo world.\n"
        "\n"
        "2\n00:00:03,000 --> 00:00:04,500\nSecond line here\n"
    )


def test_vtt_exact() -> None:
    assert to_vtt(SAMPLE) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.500 --> 00:00:02.250\nHéllo world.\n"
        "\n"
        "00:00:03.000 --> 00:00:04.500\nSecond line here\n"
    )


def test_vtt_escapes_markup_characters() -> None:
    out = to_vtt([_utt(0, 1, "a <b> & c --> d")])
    assert out.endswith("\na &lt;b&gt; &amp; c --&gt; d\n")


def test_text_one_line_per_utterance_in_time_order() -> None:
    assert to_text(SAMPLE) == "Héllo world.\nSecond line here\n"


def test_empty_input() -> None:
    assert to_text([]) == ""
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"
    assert json.loads(to_json([])) == {"utterances": []}


def test_long_cue_text_is_wrapped_into_two_lines() -> None:
    text = "this is a rather long sentence that needs two lines on screen"
    out = to_srt([_utt(1, 4, text)])
    assert out == (
        "1\n00:00:01,000 --> 00:00:04,000\n"
        "this is a rather long sentence\nthat needs two lines on screen\n"
    )


def test_wrap_cue_text() -> None:
    assert wrap_cue_text("short one") == ["short one"]
    assert wrap_cue_text("") == []
    assert wrap_cue_text("x" * 50) == ["x" * 50]
    lines = wrap_cue_text("aaaa bbbb cccc dddd eeee ffff", width=15)
    assert lines == ["aaaa bbbb cccc", "dddd eeee ffff"]


# --- JSON and dict round trips -------------------------------------------------------


def test_json_round_trip_with_extra_fields() -> None:
    doc = to_json(SAMPLE, source="réunion.wav", fingerprint="abc123", stream_id=7)
    assert "réunion" in doc  # ensure_ascii=False
    parsed = json.loads(doc)
    assert list(parsed) == ["utterances", "source", "fingerprint", "stream_id"]
    assert parsed["stream_id"] == 7
    assert parsed["utterances"][0]["words"][1] == {
        "text": "world.",
        "start": 1.1,
        "end": 2.25,
        "confidence": 0.8,
    }
    back = from_json(doc)
    assert back == sorted(SAMPLE, key=lambda u: u.start)
    assert to_json(back, source="réunion.wav", fingerprint="abc123", stream_id=7) == doc


def test_json_is_stable() -> None:
    assert to_json(SAMPLE, a=1) == to_json(list(SAMPLE), a=1)


def test_json_rejects_extra_utterances_key_and_nan() -> None:
    with pytest.raises(ValueError, match="utterances"):
        to_json(SAMPLE, utterances=[])
    with pytest.raises(ValueError):
        to_json([_utt(0, 1, "x", (Word("x", 0, math.nan, 1),))])


def test_from_json_rejects_bad_documents() -> None:
    for bad in ("not json", "[]", "{}", '{"utterances": {}}', '{"utterances": [1]}'):
        with pytest.raises(ValueError):
            from_json(bad)


def test_dict_round_trip() -> None:
    for u in SAMPLE:
        assert Utterance.from_dict(u.to_dict()) == u
        for w in u.words:
            assert Word.from_dict(w.to_dict()) == w


def test_from_dict_accepts_ints_missing_words_and_unknown_keys() -> None:
    u = Utterance.from_dict({"start": 0, "end": 1, "text": "hi", "confidence": 1, "x": None})
    assert u == Utterance(0.0, 1.0, "hi", 1.0, ())
    assert isinstance(u.start, float)


def _good() -> dict[str, Any]:
    return Utterance(1.0, 2.0, "hi there", 0.5, (Word("hi", 1.0, 1.4, 0.5),)).to_dict()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("start"), r"utterance\.start: missing"),
        (lambda d: d.pop("text"), r"utterance\.text: missing"),
        (lambda d: d.pop("confidence"), r"confidence: missing"),
        (lambda d: d.update(start="1.0"), r"start: expected a number, got str"),
        (lambda d: d.update(end=True), r"end: expected a number, got bool"),
        (lambda d: d.update(end=math.inf), r"end: expected a finite number"),
        (lambda d: d.update(text=3), r"text: expected a string, got int"),
        (lambda d: d.update(start=-0.5), r"start: negative time"),
        (lambda d: d.update(end=0.5), r"end: 0.5 is before start 1.0"),
        (lambda d: d.update(confidence=1.5), r"confidence: 1.5 is outside \[0, 1\]"),
        (lambda d: d.update(confidence=-0.1), r"outside \[0, 1\]"),
        (lambda d: d.update(words="hi"), r"words: expected a list, got str"),
        (lambda d: d.update(words=[1]), r"words\[0\]: expected an object, got int"),
        (lambda d: d["words"][0].pop("end"), r"utterance\.words\[0\]\.end: missing"),
        (lambda d: d["words"][0].update(start=-1), r"words\[0\]\.start: negative time"),
        (lambda d: d["words"][0].update(end=0.5), r"words\[0\]\.end: .* before start"),
        (lambda d: d["words"][0].update(confidence=2), r"words\[0\]\.confidence: .*outside"),
    ],
)
def test_from_dict_rejects_malformed(mutate: Any, message: str) -> None:
    data = _good()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        Utterance.from_dict(data)


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="expected an object, got list"):
        Utterance.from_dict([1, 2])
    with pytest.raises(ValueError, match="word: expected an object"):
        Word.from_dict("hello")


# --- timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "srt"),
    [
        (0, "00:00:00,000"),
        (0.0005, "00:00:00,001"),
        (1.2344, "00:00:01,234"),
        (59.9996, "00:01:00,000"),
        (3599.9996, "01:00:00,000"),
        (3661.5, "01:01:01,500"),
        (86399.9999, "24:00:00,000"),
        (360000.25, "100:00:00,250"),
    ],
)
def test_timestamps_round_and_carry(seconds: float, srt: str) -> None:
    assert srt_timestamp(seconds) == srt
    assert vtt_timestamp(seconds) == srt.replace(",", ".")
    assert format_timestamp(seconds, ",") == srt


@pytest.mark.parametrize("bad", [-0.001, -1, math.nan, math.inf])
def test_timestamps_reject_bad_input(bad: float) -> None:
    with pytest.raises(ValueError):
        srt_timestamp(bad)


def test_timestamp_rejects_bad_separator() -> None:
    with pytest.raises(ValueError, match="separator"):
        format_timestamp(1.0, ":")


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False), st.sampled_from([",", "."]))
def test_timestamp_parses_back_within_half_a_millisecond(seconds: float, sep: str) -> None:
    stamp = format_timestamp(seconds, sep)
    assert TIMESTAMP.fullmatch(stamp)
    assert stamp[-4] == sep
    assert abs(_parse(stamp) - Decimal(seconds)) <= Decimal("0.0005")


# --- cue splitting ---------------------------------------------------------------------

LONG = (
    "The quick brown fox jumps over the lazy dog, and then it runs away into the forest "
    "where nobody can find it again until the spring comes back to the valley."
)


def test_short_utterance_is_one_cue_with_its_own_span() -> None:
    u = _utt(
        1.25, 3.5, "  hello   there ", (Word("hello", 1.3, 2.0, 1), Word("there", 2.1, 3.4, 1))
    )
    assert make_cues([u]) == [Cue(1.25, 3.5, "hello there")]


def test_long_utterance_with_words_is_split_at_word_times() -> None:
    u = _timed(LONG)
    cues = make_cues([u])
    assert len(cues) > 1
    for cue in cues:
        _assert_cue_bounds(cue)
    assert " ".join(c.text for c in cues) == LONG
    starts = {w.start for w in u.words}
    ends = {w.end for w in u.words}
    assert all(c.start in starts and c.end in ends for c in cues)
    assert cues[0].start == u.start
    assert cues[-1].end == u.end
    assert all(a.end <= b.start for a, b in pairwise(cues))


def test_long_utterance_without_words_is_split_proportionally() -> None:
    u = _utt(10.0, 40.0, LONG)
    cues = make_cues([u])
    assert len(cues) >= math.ceil(30 / MAX_CUE_SECONDS)
    for cue in cues:
        _assert_cue_bounds(cue)
    assert " ".join(c.text for c in cues) == LONG
    assert cues[0].start == 10.0
    assert cues[-1].end == 40.0
    assert all(a.end == b.start for a, b in pairwise(cues))
    # Time is shared out by length: a cue's share of the span tracks its share of the text.
    for c in cues:
        assert (c.end - c.start) / 30 == pytest.approx(
            (len(c.text) + 1) / (len(LONG) + 1), abs=0.02
        )


def test_split_is_balanced_and_srt_numbers_every_piece() -> None:
    cues = make_cues([_utt(0, 20, LONG)])
    sizes = [len(c.text) for c in cues]
    assert max(sizes) - min(sizes) < 20  # no one-word leftover cue
    srt = to_srt([_utt(0, 20, LONG)])
    assert [int(b.split("\n")[0]) for b in srt.split("\n\n")] == list(range(1, len(cues) + 1))


def test_oversized_word_gets_a_cue_of_its_own() -> None:
    giant = "x" * 100
    cues = make_cues([_utt(0, 3, f"before {giant} after")])
    assert [c.text for c in cues] == ["before", giant, "after"]


def test_long_silent_word_span_splits_on_time() -> None:
    words = (Word("one", 0, 1, 1), Word("two", 5, 6, 1), Word("three", 12, 13, 1))
    cues = make_cues([_utt(0, 13, "one two three", words)])
    assert [(c.start, c.end, c.text) for c in cues] == [(0, 6, "one two"), (12, 13, "three")]


def test_blank_utterances_give_no_cue_and_order_is_by_time() -> None:
    cues = make_cues([_utt(5, 6, "later"), _utt(0, 1, " \n "), _utt(1, 2, "sooner")])
    assert [c.text for c in cues] == ["sooner", "later"]


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé", min_size=1, max_size=18).flatmap(
    lambda t: st.sampled_from([t, t + ",", t + "."])
)


@st.composite
def _timed_utterance(draw: st.DrawFn) -> Utterance:
    tokens = draw(st.lists(_token, min_size=1, max_size=60))
    t = draw(st.floats(min_value=0, max_value=1e5))
    words = []
    for tok in tokens:
        t += draw(st.floats(min_value=0, max_value=3))
        dur = draw(st.floats(min_value=0, max_value=4))
        words.append(Word(tok, t, t + dur, 1.0))
        t += dur
    with_words = draw(st.booleans())
    start = words[0].start
    return _utt(start, max(t, start), " ".join(tokens), tuple(words) if with_words else ())


@given(_timed_utterance())
@example(Utterance(1.2605723871878478, 18.200362660662552, "a a a a a a a a a a", 0.9))  # 1 ulp
def test_cue_splitting_properties(u: Utterance) -> None:
    cues = make_cues([u])
    assert [tok for c in cues for tok in c.text.split()] == u.text.split()
    assert all(c.end >= c.start for c in cues)
    assert all(a.end <= b.start for a, b in pairwise(cues))
    assert cues[0].start >= u.start
    assert cues[-1].end <= u.end
    for cue in cues:
        if " " in cue.text:  # a lone oversized word may exceed the bounds
            _assert_cue_bounds(cue)


@given(st.lists(_timed_utterance(), min_size=2, max_size=4))
def test_cues_of_overlapping_utterances_are_in_start_order(utterances: list[Utterance]) -> None:
    cues = make_cues(utterances)
    assert all(a.start <= b.start for a, b in pairwise(cues))
    words = sorted(tok for c in cues for tok in c.text.split())
    assert words == sorted(tok for u in utterances for tok in u.text.split())


# --- render ---------------------------------------------------------------------------


def test_render_dispatches() -> None:
    assert OUTPUT_FORMATS == ("txt", "json", "srt", "vtt")
    assert render(SAMPLE, "txt") == to_text(SAMPLE)
    assert render(SAMPLE, "srt") == to_srt(SAMPLE)
    assert render(SAMPLE, "vtt") == to_vtt(SAMPLE)
    assert render(SAMPLE, "json", source="a.wav") == to_json(SAMPLE, source="a.wav")


def test_render_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match=r"'docx'.*txt, json, srt, vtt"):
        render(SAMPLE, "docx")


def test_channel_speaker_and_language_travel_only_when_set() -> None:
    plain = Utterance(0.0, 1.0, "hello there", 0.9)
    assert set(plain.to_dict()) == {"start", "end", "text", "confidence", "words"}
    split = Utterance(1.0, 2.0, "yes", 0.8, (), channel=1, speaker="customer", language="en")
    data = split.to_dict()
    assert (data["channel"], data["speaker"], data["language"]) == (1, "customer", "en")
    assert Utterance.from_dict(data) == split
    assert from_json(to_json([plain, split])) == [plain, split]
    with pytest.raises(ValueError, match="channel"):
        Utterance.from_dict({**data, "channel": -1})
    with pytest.raises(ValueError, match="speaker"):
        Utterance.from_dict({**data, "speaker": 3})


def test_split_channels_are_labelled_and_interleaved_in_every_writer() -> None:
    agent = Utterance(0.0, 1.5, "Good morning, how can I help?", 0.9, channel=0, speaker="agent")
    customer = Utterance(1.6, 2.5, "My card was stolen.", 0.9, channel=1, speaker="customer")
    late = Utterance(2.6, 3.0, "I see.", 0.9, channel=0, speaker="agent")
    utts = [late, customer, agent]  # out of order on purpose: writers sort by time
    assert to_text(utts) == (
        "agent: Good morning, how can I help?\ncustomer: My card was stolen.\nagent: I see.\n"
    )
    srt = to_srt(utts)
    assert "agent: Good morning" in srt and srt.index("customer:") < srt.index("agent: I see")
    assert "customer: My card was stolen." in to_vtt(utts)
