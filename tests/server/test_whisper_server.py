"""svserver with its default engine (Whisper tiny.en), end to end over HTTP."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import httpx
import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr

from svwatchd.client import DecodeStatus, Stream
from svwatchd.client.server import Server
from svwatchd.errors import InvalidStreamError, ServerRefusedError
from svwatchd.server._engines.bundles import TINY_EN, bundle_dir
from tests.conftest import TESTDATA, reference
from tests.nonspeech import make_insert
from tests.normalise import normalise
from tests.server.test_nonspeech import CALLS, LIVE_CALL, build, inside_inserts
from tests.server.test_server import _feeder
from tests.svserver import SvServer, decode_all

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

SENSE = [f"sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920, 930)]


def _convert(src: Path, dst: Path, rate: int, subtype: str, channels: int = 1) -> Path:
    data, sr = sf.read(src, dtype="float32")
    if rate != sr:
        data = soxr.resample(data, sr, rate)
    if channels > 1:
        data = np.stack([data, data * 0.8], axis=1)
    sf.write(dst, data, rate, subtype=subtype, format="WAV")
    return dst


def test_long_form_wer_and_conversions(whisper: tuple[SvServer, Path]) -> None:
    srv, root = whisper
    sets: dict[str, list[Stream]] = {k: [] for k in ("16k", "mulaw", "alaw", "44k", "be")}
    for name in SENSE:
        src = root / name
        shutil.copy(TESTDATA / name, src)
        stem = name[:-4]
        sets["16k"].append(Stream(src, clip=name))
        sets["mulaw"].append(Stream(_convert(src, root / f"{stem}.mu.wav", 8000, "ULAW")))
        sets["alaw"].append(Stream(_convert(src, root / f"{stem}.a.wav", 8000, "ALAW")))
        sets["44k"].append(Stream(_convert(src, root / f"{stem}.44.wav", 44100, "PCM_16", 2)))
        pcm, _ = sf.read(src, dtype="int16")
        (root / f"{stem}.be.raw").write_bytes(pcm.astype(">i2").tobytes())
        sets["be"].append(
            Stream(
                root / f"{stem}.be.raw", samprate=16000, encoding="SPCM", sampwidth=2, endian="BIG"
            )
        )
    refs = [reference(n) for n in SENSE]
    with Server(srv.url) as server:
        decode_all(server, [s for group in sets.values() for s in group])
        wer = {}
        for key, streams in sets.items():
            assert all(s.status is DecodeStatus.DONE for s in streams), [s.error for s in streams]
            hyps = [normalise(" ".join(u.text for u in s.utterances())) for s in streams]
            wer[key] = jiwer.wer(refs, hyps)
        print("WER by format:", {k: round(v, 3) for k, v in wer.items()})
        assert wer["16k"] <= 0.15
        for key in ("mulaw", "alaw", "44k", "be"):
            assert wer[key] <= wer["16k"] + 0.05, (key, wer)

        for s in sets["16k"]:
            utts = s.utterances()
            text = " ".join(u.text for u in utts)
            assert any(c.isupper() for c in text) and text.rstrip()[-1] in ".?!", text  # as spoken
            assert [u.start for u in utts] == sorted(u.start for u in utts)
            for u in utts:
                assert 0.0 <= u.confidence <= 1.0
                for w in u.words:
                    assert u.start <= w.start <= w.end <= u.end
                    assert 0.0 <= w.confidence <= 1.0


def test_sysinfo_reports_engine_and_model(whisper: tuple[SvServer, Path]) -> None:
    srv, _ = whisper
    with Server(srv.url) as server:
        info = server.sysinfo()
        assert server.getparams("engine") == {"engine": "whisper"}
    engine = info["engine"]
    assert engine["engine"] == "whisper" and engine["model"] == "tiny.en"
    assert str(engine["model_digest"]).startswith("sha256:")
    assert engine["device"] == "cpu" and engine["compute_type"] == "int8"
    assert engine["threads"] == 1 and engine["workers"] == 2
    assert info["cores"] >= 1 and info["uptime"] >= 0 and info["version"]


def test_live_feed_reaches_a_listener_before_it_ends(whisper: tuple[SvServer, Path]) -> None:
    srv, _ = whisper
    silence = np.zeros(16000, dtype=np.int16)
    parts = []
    for name in SENSE[:3]:
        pcm, _ = sf.read(TESTDATA / name, dtype="int16")
        parts += [pcm, silence]
    feed = np.concatenate(parts).astype("<i2").tobytes()
    port, thread = _feeder(feed, 32000)
    with Server(srv.url) as server:
        s = Stream(("127.0.0.1", port), samprate=16000, encoding="SPCM", sampwidth=2)
        server.decodestreams(s)
        began = time.monotonic()
        arrivals = [(time.monotonic() - began, u.text) for u in s.listen()]
    feed_seconds = len(feed) / 32000
    assert arrivals and arrivals[0][0] < feed_seconds - 3.0, (arrivals, feed_seconds)
    heard = normalise(" ".join(t for _, t in arrivals))
    assert jiwer.wer(" ".join(reference(n) for n in SENSE[:3]), heard) <= 0.2, heard
    thread.join(5)


def test_tampered_model_refuses_to_start(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(bundle_dir(TINY_EN, None), copy)
    manifest = tmp_path / "SHA256SUMS"
    manifest.write_text("".join(f"{h}  {n}\n" for n, h in TINY_EN.files.items()))
    vocab = copy / "vocabulary.txt"
    data = bytearray(vocab.read_bytes())
    data[100] ^= 0x01
    vocab.write_bytes(bytes(data))
    srv = SvServer(
        tmp_path / "data",
        engine="whisper",
        workers=1,
        args=["--model", str(copy), "--model-sha256", str(manifest)],
    )
    with pytest.raises(RuntimeError, match="exited") as err:
        srv.start(timeout=120)
    message = str(err.value)
    assert "vocabulary.txt" in message
    assert TINY_EN.files["vocabulary.txt"] in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message


def test_language_tag_is_checked_against_the_model(whisper: tuple[SvServer, Path]) -> None:
    """tiny.en is English-only: a stream tagged with another language is refused at once,
    naming the language and the model, and so is ``language: auto`` (it cannot detect);
    'en' decodes as usual. (Multilingual models: tests/server/test_languages.py.)"""
    srv, root = whisper
    src = root / "lang.wav"
    shutil.copy(TESTDATA / SENSE[4], src)
    with Server(srv.url) as server:
        german = Stream(src, language="de")
        with pytest.raises(ServerRefusedError) as err:
            server.decodestreams(german)
        assert err.value.status_code == 400
        assert "'de'" in str(err.value) and "tiny.en" in str(err.value)
        assert "English-only" in str(err.value)
        with pytest.raises(ServerRefusedError) as err:
            server.decodestreams(Stream(src, language="auto"))
        assert "language: auto" in str(err.value) and "cannot tell languages apart" in str(
            err.value
        )
        with pytest.raises(InvalidStreamError, match="language code") as bad:
            Stream(src, language="German")  # the client's boundary refuses it first ...
        assert bad.value.field == "language"
        spec = {  # ... and svserver's, by the same rule, for a client that skips it
            "id": "lang-german",
            "source": {"type": "file", "path": str(src)},
            "filetype": "WAV",
            "format": {"encoding": "SPCM", "sampwidth": 2, "samprate": 16000},
            "tags": {"language": "German"},
        }
        answer = httpx.post(f"{srv.url}/v1/streams", json={"streams": [spec]}).json()
        assert answer["rejected"][0]["code"] == "bad_language", answer
        english = Stream(src, language="en")
        decode_all(server, [english])
        assert english.status is DecodeStatus.DONE
        words = normalise(" ".join(u.text for u in english.utterances()))
        assert words == reference(SENSE[4])


def test_not_speech_in_files(whisper: tuple[SvServer, Path]) -> None:
    """Calls with hold music, tones and noise between speech; a sung line alone; a minute of
    digital silence: no utterance inside the non-speech, the speech still transcribed."""
    srv, root = whisper
    calls = {name: build(parts) for name, parts in CALLS.items()}
    streams: dict[str, Stream] = {}
    for k, (name, (mixed, _refs)) in enumerate(calls.items()):
        sf.write(root / f"call{k}.wav", mixed.audio, 16000, subtype="PCM_16")
        streams[name] = Stream(root / f"call{k}.wav")
    for name, audio in (
        ("sung", make_insert("sung melody", 3.0)),
        ("silence", np.zeros(60 * 16000)),
    ):
        sf.write(root / f"{name}.wav", audio, 16000, subtype="PCM_16")
        streams[name] = Stream(root / f"{name}.wav")
    with Server(srv.url) as server:
        decode_all(server, list(streams.values()))
        assert all(s.status is DecodeStatus.DONE for s in streams.values())
        for name, (mixed, refs) in calls.items():
            utterances = streams[name].utterances()
            assert inside_inserts(utterances, mixed) == [], name
            heard = normalise(" ".join(u.text for u in utterances))
            assert jiwer.wer(normalise(" ".join(refs)), heard) <= 0.15, (name, heard)
        assert streams["sung"].utterances() == []
        assert streams["silence"].utterances() == []


def test_not_speech_live(whisper: tuple[SvServer, Path]) -> None:
    """A live call at real-time pace: speech, hold music with a sung line, ringback, speech.
    No utterance comes of the music or the tone; the speech around them is heard."""
    srv, _ = whisper
    mixed, refs = build(LIVE_CALL)
    feed = (np.clip(mixed.audio, -1, 1) * 32767).astype("<i2").tobytes()
    port, thread = _feeder(feed, 32000)
    with Server(srv.url) as server:
        s = Stream(("127.0.0.1", port), samprate=16000, encoding="SPCM", sampwidth=2)
        server.decodestreams(s)
        heard = list(s.listen())
    thread.join(5)
    assert inside_inserts(heard, mixed) == []
    text = normalise(" ".join(u.text for u in heard))
    assert jiwer.wer(normalise(" ".join(refs)), text) <= 0.15, text
