"""The Stream contract of ../shared/spec/stream-module.txt, on real and derived audio files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from svwatchd.client import DecodeStatus, Encoding, Endian, Stream, createdirstreams, createstreams
from svwatchd.errors import InvalidStreamError, StreamsError, StreamStateError, SvwatchdError
from tests.conftest import speech_file


def test_wav_format_comes_from_header() -> None:
    s = Stream(speech_file("001.wav"))
    assert s.fromfile() and s.fromwavfile() and not s.fromrawfile() and not s.fromsocket()
    assert s.getfiletype() == "WAV"
    assert s.sourcename() == "001.wav"
    assert (s.samprate(), s.sampwidth(), s.channels()) == (16000, 2, 1)
    assert s.encoding() is Encoding.SPCM and s.endian() is Endian.LITTLE
    assert s.size() == os.path.getsize(speech_file("001.wav"))
    assert s.status is None and s.start is None and s.end is None


def test_raw_needs_samprate_and_encoding() -> None:
    raw = speech_file("goforward.raw")
    with pytest.raises(InvalidStreamError, match="samprate") as err:
        Stream(raw, encoding="SPCM", sampwidth=2)
    assert err.value.field == "samprate" and "goforward.raw" in str(err.value)
    with pytest.raises(InvalidStreamError, match="encoding"):
        Stream(raw, samprate=16000, sampwidth=2)
    with pytest.raises(InvalidStreamError, match="sampwidth"):
        Stream(raw, samprate=16000, encoding="spcm")
    s = Stream(raw, samprate="16k", encoding="spcm", sampwidth=2)
    assert s.getfiletype() == "RAW" and s.fromrawfile()
    assert s.samprate() == 16000 and s.encoding() is Encoding.SPCM
    assert s.channels() == 1 and s.endian() is Endian.LITTLE


@pytest.mark.parametrize(
    ("given", "hz"),
    [
        (8000, 8000),
        ("8k", 8000),
        ("8K", 8000),
        ("44.1k", 44100),
        ("22.05k", 22050),
        ("48000", 48000),
    ],
)
def test_samprate_forms(given: object, hz: int) -> None:
    s = Stream(speech_file("goforward.raw"), samprate=given, encoding="ULAW")
    assert s.samprate() == hz
    assert s.sampwidth() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("samprate", 7999),
        ("samprate", "48001"),
        ("samprate", "8.0005k"),
        ("samprate", "fast"),
        ("samprate", True),
        ("sampwidth", 5),
        ("sampwidth", 0),
        ("channels", 0),
        ("encoding", "MP3"),
        ("endian", "middle"),
    ],
)
def test_bad_format_fields_name_source_and_field(field: str, value: object) -> None:
    meta: dict[str, object] = {"samprate": 16000, "encoding": "SPCM", "sampwidth": 2}
    meta[field] = value
    with pytest.raises(InvalidStreamError) as err:
        Stream(speech_file("goforward.raw"), **meta)
    assert err.value.field == field
    assert field in str(err.value) and "goforward.raw" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, SvwatchdError)


def test_law_encodings_need_width_one() -> None:
    with pytest.raises(InvalidStreamError, match="sampwidth must be 1"):
        Stream(speech_file("goforward.raw"), samprate=8000, encoding="alaw", sampwidth=2)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("bad.wav", "bad.wav"),
        ("evil.wav", "evil.wav"),
        ("awful.wav", "1092676"),
        ("null.wav", "null.wav"),
    ],
)
def test_malformed_wav_files_are_clear_errors(name: str, needle: str) -> None:
    with pytest.raises(InvalidStreamError) as err:
        Stream(speech_file(name))
    assert needle in str(err.value)
    assert name in str(err.value)


def test_wav_name_never_treated_as_raw(tmp_path: Path) -> None:
    fake = tmp_path / "notreally.wav"
    shutil.copy(speech_file("goforward.raw"), fake)
    with pytest.raises(InvalidStreamError, match=r"notreally\.wav"):
        Stream(fake, samprate=16000, encoding="SPCM", sampwidth=2)


def test_riff_content_is_wav_whatever_the_name(tmp_path: Path) -> None:
    odd = tmp_path / "call.audio"
    shutil.copy(speech_file("001.wav"), odd)
    s = Stream(odd)
    assert s.fromwavfile() and s.samprate() == 16000


def test_metadata_contradicting_header_names_both_values() -> None:
    with pytest.raises(InvalidStreamError) as err:
        Stream(speech_file("001.wav"), samprate="8k")
    msg = str(err.value)
    assert "8000" in msg and "16000" in msg and err.value.field == "samprate"
    # agreeing values are fine, in any spelling
    s = Stream(speech_file("001.wav"), samprate="16k", encoding="spcm", endian="little")
    assert s.samprate() == 16000


def _derive(tmp_path: Path, name: str, rate: int, subtype: str, channels: int = 1) -> Path:
    data, sr = sf.read(speech_file("001.wav"), dtype="float32")
    if rate != sr:
        import soxr

        data = soxr.resample(data, sr, rate)
    if channels > 1:
        data = np.stack([data] * channels, axis=1)
    out = tmp_path / name
    sf.write(out, data, rate, subtype=subtype, format="WAV")
    return out


@pytest.mark.parametrize(
    ("rate", "subtype", "channels", "encoding", "width"),
    [
        (8000, "ULAW", 1, Encoding.ULAW, 1),
        (8000, "ALAW", 1, Encoding.ALAW, 1),
        (48000, "PCM_16", 2, Encoding.SPCM, 2),
        (16000, "PCM_U8", 1, Encoding.UPCM, 1),
        (44100, "PCM_24", 1, Encoding.SPCM, 3),
    ],
)
def test_derived_wav_formats(
    tmp_path: Path, rate: int, subtype: str, channels: int, encoding: Encoding, width: int
) -> None:
    path = _derive(tmp_path, f"x-{subtype}.wav", rate, subtype, channels)
    s = Stream(path)
    assert (s.samprate(), s.channels(), s.encoding(), s.sampwidth()) == (
        rate,
        channels,
        encoding,
        width,
    )


def test_big_endian_raw(tmp_path: Path) -> None:
    pcm = np.fromfile(speech_file("goforward.raw"), dtype="<i2")
    path = tmp_path / "be.raw"
    pcm.astype(">i2").tofile(path)
    s = Stream(path, samprate=16000, encoding="SPCM", sampwidth=2, endian="BIG")
    assert s.endian() is Endian.BIG and s.size() == pcm.size * 2


def test_socket_source() -> None:
    s = Stream(("recorder.local", 4155), samprate="8k", encoding="ulaw")
    assert s.fromsocket() and not s.fromfile()
    assert s.sourcename() == "4155@recorder.local"
    assert s.getfiletype() is None and s.size() is None
    assert s.source == ("recorder.local", 4155)
    with pytest.raises(InvalidStreamError, match="samprate"):
        Stream(("recorder.local", 4155), encoding="ulaw")
    with pytest.raises(InvalidStreamError, match="port"):
        Stream(("recorder.local", 70000), samprate="8k", encoding="ulaw")


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidStreamError, match=r"nothere\.wav"):
        Stream(tmp_path / "nothere.wav")


def test_tags_kept_and_matched() -> None:
    s = Stream(speech_file("001.wav"), customer="acme", priority=3, urgent=False, score=0.5)
    assert s.tags == {"customer": "acme", "priority": 3, "urgent": False, "score": 0.5}
    assert s.tagsmatch({"customer": "acme"})
    assert s.tagsmatch({"customer": "acme", "priority": 3})
    assert s.tagsmatch({"samprate": "16k"})
    assert s.tagsmatch({})
    assert not s.tagsmatch({"customer": "other"})
    assert not s.tagsmatch({"missing": "x"})
    assert not s.tagsmatch({"samprate": 8000})


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, None, float("nan")])
def test_tag_values_must_be_scalars(value: object) -> None:
    with pytest.raises(InvalidStreamError, match="bad"):
        Stream(speech_file("001.wav"), bad=value)


def test_recorded_at_must_be_iso() -> None:
    Stream(speech_file("001.wav"), recorded_at="2026-11-24T09:30:00+01:00")
    with pytest.raises(InvalidStreamError, match="recorded_at"):
        Stream(speech_file("001.wav"), recorded_at="yesterday")


def test_status_predicates_follow_status() -> None:
    s = Stream(speech_file("001.wav"))
    preds = {
        DecodeStatus.QUEUED: s.isqueued,
        DecodeStatus.ACTIVE: s.isactive,
        DecodeStatus.PAUSED: s.ispaused,
        DecodeStatus.ERROR: s.iserror,
        DecodeStatus.CLOSED: s.isclosed,
        DecodeStatus.DELETED: s.isdeleted,
    }
    assert not any(p() for p in preds.values()) and not s.isdone()
    for status in DecodeStatus:
        s.status = status
        for st, pred in preds.items():
            assert pred() == (st is status)
        assert s.isdone() == (status in {"DONE", "ERROR", "CLOSED", "DELETED"})


def test_server_methods_before_submission_say_so() -> None:
    s = Stream(speech_file("001.wav"))
    for call in (
        s.refresh,
        s.joinstart,
        s.stats,
        s.sourceseconds,
        s.listenerinfo,
        s.pause,
        s.resume,
        s.close,
        s.delete,
        s.utterances,
    ):
        with pytest.raises(StreamStateError, match="not been submitted"):
            call()


def test_stream_id_is_client_chosen_and_validated() -> None:
    a, b = Stream(speech_file("001.wav")), Stream(speech_file("001.wav"))
    assert a.id != b.id
    a.id = "file-0001.v2"
    assert a.id == "file-0001.v2"
    with pytest.raises(InvalidStreamError, match="id"):
        a.id = "../etc"


def test_createstreams_reports_every_failure() -> None:
    good = speech_file("001.wav")
    with pytest.raises(StreamsError) as err:
        createstreams([good, speech_file("bad.wav"), speech_file("awful.wav")], customer="x")
    assert len(err.value.errors) == 2 and len(err.value.streams) == 1
    assert "bad.wav" in str(err.value) and "awful.wav" in str(err.value)
    assert err.value.streams[0].tags == {"customer": "x"}  # type: ignore[attr-defined]
    assert [s.sourcename() for s in createstreams([good, good])] == ["001.wav", "001.wav"]


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "calls"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    shutil.copy(speech_file("001.wav"), root / "a.wav")
    shutil.copy(speech_file("002.wav"), root / "B.WAV")
    shutil.copy(speech_file("003.wav"), root / "sub" / "c.wav")
    shutil.copy(speech_file("004.wav"), root / "sub" / "deeper" / "d.wav")
    shutil.copy(speech_file("goforward.raw"), root / "sub" / "e.raw")
    (root / "notes.txt").write_text("not audio")
    return root


def test_createdirstreams_exts_recursive_filters(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    names = sorted(s.sourcename() for s in createdirstreams(root, exts=["wav"]))
    assert names == ["B.WAV", "a.wav", "c.wav", "d.wav"]
    names = sorted(
        s.sourcename() for s in createdirstreams(str(root), exts=".WAV", recursive=False)
    )
    assert names == ["B.WAV", "a.wav"]
    names = sorted(s.sourcename() for s in createdirstreams([root], exts="wav", filters=[r"/sub/"]))
    assert names == ["c.wav", "d.wav"]
    streams = createdirstreams(root, exts=["raw"], samprate=16000, encoding="SPCM", sampwidth=2)
    assert [s.sourcename() for s in streams] == ["e.raw"]


def test_createdirstreams_collects_failures(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    with pytest.raises(StreamsError) as err:
        createdirstreams([root, tmp_path / "absent"])  # no exts: notes.txt, e.raw lack format
    msgs = [str(e) for e in err.value.errors]
    assert any("absent" in m for m in msgs)
    assert any("notes.txt" in m for m in msgs) and any("e.raw" in m for m in msgs)
    assert len(err.value.streams) == 4


def test_createdirstreams_bad_regex(tmp_path: Path) -> None:
    with pytest.raises(InvalidStreamError, match="regular expression"):
        createdirstreams(tmp_path, filters=["("])


def test_a_nul_byte_in_a_path_is_an_invalid_stream() -> None:
    with pytest.raises(InvalidStreamError, match="NUL byte"):
        Stream("/tmp/a\0b.wav")
