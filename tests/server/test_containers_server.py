"""Containers, tracks and stereo calls through a real svserver with its default engine (Whisper).

Every file is made here from the shared speech (see ``tests/media_files.py``);
transcripts are compared through the normaliser and a word error rate.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.conftest import TESTDATA, reference
from tests.media_files import write_av, write_format
from tests.normalise import normalise
from tests.svserver import SvServer, decode_all

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

SENSE = [f"sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920, 930)]
FORMATS = ("flac", "ogg", "opus", "mp3", "m4a", "mp4", "mkv", "webm")
RATE = 16000


def _speech(name: str) -> np.ndarray:
    data, rate = sf.read(TESTDATA / name, dtype="float32")
    assert rate == RATE
    return np.asarray(data, dtype=np.float32)


def _text(stream: Stream) -> str:
    return normalise(" ".join(u.text for u in stream.utterances()))


def test_every_container_transcribes_as_well_as_the_wav(whisper: tuple[SvServer, Path]) -> None:
    srv, root = whisper
    groups: dict[str, list[Stream]] = {"wav": [], **{f: [] for f in FORMATS}}
    for name in SENSE:
        wav = Path(shutil.copy(TESTDATA / name, root / name))
        groups["wav"].append(Stream(wav))
        for suffix in FORMATS:
            made = write_format(root / f"{wav.stem}.{suffix}", _speech(name), RATE)
            groups[suffix].append(Stream(made))
    refs = [reference(n) for n in SENSE]
    with Server(srv.url) as server:
        for group in groups.values():  # one at a time: each packs into the same windows
            decode_all(server, group)
        wer = {key: jiwer.wer(refs, [_text(s) for s in group]) for key, group in groups.items()}
    print("WER by container:", {k: round(v, 3) for k, v in wer.items()})
    assert wer["wav"] <= 0.15
    for suffix in FORMATS:
        assert wer[suffix] <= wer["wav"] + 0.03, (suffix, wer)
        assert {s.getfiletype() for s in groups[suffix]} != {"WAV"}


def test_stereo_call_is_decoded_per_channel_and_labelled(whisper: tuple[SvServer, Path]) -> None:
    srv, root = whisper
    left_names, right_names = [SENSE[0], SENSE[2]], [SENSE[1], SENSE[4]]
    parts = [(_speech(n), 0) for n in left_names[:1]]
    parts += [(_speech(right_names[0]), 1), (_speech(left_names[1]), 0)]
    parts += [(_speech(right_names[1]), 1)]
    gap = np.zeros(RATE, dtype=np.float32)
    total = sum(len(p) + len(gap) for p, _ in parts)
    call = np.zeros((total, 2), dtype=np.float32)
    at, spans = 0, []
    for samples, channel in parts:  # alternating turns: only one party speaks at a time
        call[at : at + len(samples), channel] = samples
        spans.append((at / RATE, (at + len(samples)) / RATE, channel))
        at += len(samples) + len(gap)
    path = root / "call.flac"
    sf.write(path, call, RATE)
    labelled = Stream(path, split_channels=True, channel_labels=["agent", "customer"])
    plain = Stream(root / "call.flac")
    with Server(srv.url) as server:
        decode_all(server, [labelled, plain])
        utts = labelled.utterances()
        mixed = plain.utterances()
    assert utts and all(u.channel in (0, 1) for u in utts)
    assert {u.speaker for u in utts} == {"agent", "customer"}
    for u in utts:  # each utterance lies in a turn of its own channel
        middle = (u.start + u.end) / 2
        turn = next((c for s, e, c in spans if s - 0.5 <= middle <= e + 0.5), None)
        assert turn == u.channel, (u, spans)
        assert u.speaker == ("agent" if u.channel == 0 else "customer")
    assert [u.start for u in utts] == sorted(u.start for u in utts)
    by_channel = {c: normalise(" ".join(u.text for u in utts if u.channel == c)) for c in (0, 1)}
    left_ref = " ".join(reference(n) for n in left_names)
    right_ref = " ".join(reference(n) for n in right_names)
    assert jiwer.wer(left_ref, by_channel[0]) <= 0.2, by_channel[0]
    assert jiwer.wer(right_ref, by_channel[1]) <= 0.2, by_channel[1]
    assert labelled.stats()["channels_decoded"] == 2
    assert all(u.channel is None and u.speaker is None for u in mixed)  # the default: mono mix


def test_identical_channels_are_decoded_once(whisper: tuple[SvServer, Path]) -> None:
    srv, root = whisper
    speech = _speech(SENSE[4])
    path = root / "mono-as-stereo.wav"
    sf.write(path, np.stack([speech, speech], axis=1), RATE, subtype="PCM_16")
    stream = Stream(path, split_channels=True)
    with Server(srv.url) as server:
        decode_all(server, [stream])
        utts = stream.utterances()
        text = _text(stream)
    stats = stream.stats()
    assert stats["channels_decoded"] == 1 and stats["channels_repeated"] == 1
    assert {u.channel for u in utts} == {0} and {u.speaker for u in utts} == {"ch0"}
    assert jiwer.wer(reference(SENSE[4]), text) <= 0.2  # said once, not twice


def test_the_chosen_track_is_decoded_and_recorded(whisper: tuple[SvServer, Path]) -> None:
    srv, root = whisper
    english = _speech(SENSE[1])
    noise = np.random.default_rng(3).normal(0, 0.01, len(english)).astype(np.float32)
    path = write_av(
        root / "film.mkv",
        [noise, english],
        RATE,
        container="matroska",
        languages=["fre", "eng"],
        default=0,
    )
    by_tag = Stream(path, track="en")
    by_language = Stream(path, language="en")
    default = Stream(path)
    with Server(srv.url) as server:
        decode_all(server, [by_tag, by_language, default])
        texts = [_text(s) for s in (by_tag, by_language, default)]
    for stream, text in zip((by_tag, by_language), texts, strict=False):
        assert stream.stats()["track"] == 1 and stream.stats()["track_language"] == "eng"
        assert jiwer.wer(reference(SENSE[1]), text) <= 0.4  # AAC at 16 kHz; noise: 1.0
    assert default.stats()["track"] == 0 and default.stats()["track_language"] == "fre"
    assert not texts[2]  # the default track is noise: nothing invented


def test_a_container_damaged_after_submission_ends_in_error(
    whisper: tuple[SvServer, Path],
) -> None:
    srv, root = whisper
    path = write_format(root / "later.mp3", _speech(SENSE[0]), RATE)
    stream = Stream(path)
    path.write_text("not audio any more")
    with Server(srv.url) as server:
        server.decodestreams(stream)
        deadline = time.monotonic() + 60
        while not stream.isdone() and time.monotonic() < deadline:
            time.sleep(0.2)
            server.refreshstreams(stream)
    assert stream.iserror() and str(path) in (stream.error or ""), stream.error
