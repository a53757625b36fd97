"""Compressed audio and containers: recognised by content, probed at Stream(), decoded right.

Every file is made here from the shared speech (soundfile writes FLAC, OGG,
Opus and MP3; PyAV writes M4A, MP4 with video, MKV with two language tracks,
WebM/Opus), and checked against the same speech read from its WAV.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from svwatchd._channels import duplicate_channels
from svwatchd._decode import iter_audio, read_audio, read_channels
from svwatchd._media import probe_media
from svwatchd._sniff import sniff
from svwatchd.client import Stream
from svwatchd.errors import AudioDecodeError, InvalidStreamError
from svwatchd.model.languages import language_name, normalise_language, same_language
from tests.conftest import speech_file
from tests.media_files import write_av, write_format

SPEECH = "sense_and_sensibility_01_austen_64kb-0870.wav"

# suffix -> (getfiletype(), rate of the file)
FORMATS = {
    "flac": ("FLAC", 16000),
    "ogg": ("OGG", 16000),
    "opus": ("OGG", 48000),
    "mp3": ("MP3", 16000),
    "m4a": ("M4A", 16000),
    "mp4": ("MP4", 16000),
    "mkv": ("MKV", 16000),
    "webm": ("WEBM", 48000),
}


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    data, rate = sf.read(speech_file(SPEECH), dtype="float32")
    return np.asarray(data, dtype=np.float32), int(rate)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, speech: tuple[np.ndarray, int]) -> Path:
    folder = tmp_path_factory.mktemp("containers")
    samples, rate = speech
    for suffix in FORMATS:
        write_format(folder / f"talk.{suffix}", samples, rate)
    reversed_speech = samples[::-1].copy()
    write_av(
        folder / "two.mkv",
        [samples, reversed_speech],
        rate,
        container="matroska",
        languages=["eng", "ger"],
        default=1,
    )
    stereo = np.stack([samples, np.zeros_like(samples)], axis=1)
    write_av(folder / "stereo.m4a", [stereo], rate, container="mp4")
    write_av(folder / "picture.mp4", [], rate, container="mp4", video=True)
    return folder


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_every_container_is_probed_and_decodes_like_the_wav(
    made: Path, speech: tuple[np.ndarray, int], suffix: str
) -> None:
    samples, rate = speech
    stream = Stream(made / f"talk.{suffix}")
    filetype, file_rate = FORMATS[suffix]
    assert stream.getfiletype() == filetype
    assert stream.fromfile() and not stream.fromwavfile() and not stream.fromrawfile()
    assert stream.samprate() == file_rate and stream.channels() == 1
    assert stream.size() == (made / f"talk.{suffix}").stat().st_size
    frames = stream.frames()
    assert frames is not None and abs(frames / file_rate - len(samples) / rate) < 0.1
    decoded = read_audio(str(stream.source), stream.format, target_rate=rate)
    assert abs(len(decoded) - len(samples)) < rate * 0.01
    assert _similarity(decoded, samples) > 0.98, f"{suffix} decodes to other audio"


def test_content_decides_not_the_name(made: Path, tmp_path: Path) -> None:
    disguised = shutil.copy(made / "talk.flac", tmp_path / "talk.raw")
    assert Stream(disguised).getfiletype() == "FLAC"
    nameless = shutil.copy(made / "talk.m4a", tmp_path / "recording")
    assert Stream(nameless).getfiletype() == "M4A"


def test_raw_without_format_fields_says_what_was_found(tmp_path: Path) -> None:
    pcm = tmp_path / "call.raw"
    pcm.write_bytes((np.arange(4000, dtype=np.int16) % 300).tobytes())
    with pytest.raises(InvalidStreamError, match="samprate and encoding") as err:
        Stream(pcm)
    assert str(pcm) in str(err.value) and err.value.field == "samprate"
    raw = Stream(pcm, samprate=8000, encoding="SPCM", sampwidth=2)
    assert raw.getfiletype() == "RAW" and raw.fromrawfile()


def test_raw_pcm_that_starts_like_an_mp3_frame_stays_raw(tmp_path: Path) -> None:
    # int16 -1025 is 0xFBFF: little-endian bytes FF FB, an MPEG-1 layer III frame sync
    rng = np.random.default_rng(7)
    data = rng.integers(-3000, 3000, 16000, dtype=np.int16)
    data[0] = -1025
    pcm = tmp_path / "starts.raw"
    pcm.write_bytes(data.tobytes())
    assert pcm.read_bytes()[:2] == b"\xff\xfb"
    assert sniff(pcm.read_bytes()[:4096], pcm.stat().st_size) is None
    assert Stream(pcm, samprate=16000, encoding="SPCM", sampwidth=2).getfiletype() == "RAW"


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("cut.mp3", "truncate_mp3", "truncated"),
        ("cut.flac", "truncate_flac", "truncated"),
        ("empty.m4a", "empty", "empty"),
        ("picture.mp4", "no_audio", "no audio track"),
        ("notes.flac", "text", "found text"),
        ("broken.m4a", "truncate_m4a", "truncated"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_the_problem(
    made: Path, tmp_path: Path, name: str, make: str, message: str
) -> None:
    path = tmp_path / name
    if make.startswith("truncate_"):
        whole = (made / f"talk.{make.split('_')[1]}").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "no_audio":
        shutil.copy(made / "picture.mp4", path)
    else:
        path.write_text("meeting notes, not audio\n")
    with pytest.raises(InvalidStreamError, match=message) as err:
        Stream(path)
    assert str(path) in str(err.value)


def test_format_fields_that_contradict_the_container(made: Path) -> None:
    with pytest.raises(InvalidStreamError, match="samprate=8000 contradicts") as err:
        Stream(made / "talk.flac", samprate=8000)
    assert "16000" in str(err.value) and err.value.field == "samprate"
    with pytest.raises(InvalidStreamError, match="does not apply") as err:
        Stream(made / "talk.mp3", encoding="ULAW")
    assert err.value.field == "encoding"
    assert Stream(made / "talk.flac", samprate="16k", channels=1).samprate() == 16000


def test_tracks_chosen_by_number_language_or_default(
    made: Path, speech: tuple[np.ndarray, int]
) -> None:
    samples, rate = speech
    two = made / "two.mkv"
    media = probe_media(str(two))
    assert media is not None and [t.language for t in media.tracks] == ["eng", "ger"]
    assert media.choose().number == 1  # the container's default track
    assert media.choose(language="en").number == 0
    assert media.choose("deu").number == 1 and media.choose(0).number == 0
    with pytest.raises(ValueError, match="track 5 does not exist"):
        media.choose(5)
    with pytest.raises(InvalidStreamError, match="no audio track in language 'fr'") as err:
        Stream(two, track="fr")
    assert err.value.field == "track" and "eng" in str(err.value)

    english = Stream(two, track="en")
    decoded = read_audio(str(english.source), english.format, target_rate=rate, track="en")
    assert _similarity(decoded, samples) > 0.98
    german = read_audio(str(english.source), english.format, target_rate=rate, language="de")
    assert _similarity(german, samples[::-1]) > 0.98


def test_stereo_container_is_mixed_to_mono(made: Path, speech: tuple[np.ndarray, int]) -> None:
    samples, rate = speech
    stream = Stream(made / "stereo.m4a")
    assert stream.channels() == 2
    decoded = read_audio(str(stream.source), stream.format, target_rate=rate)
    assert _similarity(decoded, samples) > 0.98
    assert np.abs(decoded).max() < np.abs(samples).max()  # averaged with the silent channel


def test_a_file_that_changed_kind_since_its_stream_was_made(made: Path, tmp_path: Path) -> None:
    path = shutil.copy(made / "talk.mp3", tmp_path / "talk.mp3")
    stream = Stream(path)
    Path(path).write_text("replaced by text")
    with pytest.raises(AudioDecodeError, match=r"no longer a .* file"):
        read_audio(str(path), stream.format)


def test_language_codes_match_across_standards() -> None:
    assert same_language("de", "deu") and same_language("ger", "German")
    assert same_language("en", "eng") and not same_language("en", "deu")
    assert not same_language(None, "en") and normalise_language("jv") == "jw"
    assert language_name("eng") == "english" and language_name("xx") is None


def test_channels_decode_apart_in_every_layout(
    made: Path, tmp_path: Path, speech: tuple[np.ndarray, int]
) -> None:
    samples, rate = speech
    other = samples[::-1].copy()
    pair = np.stack([samples, other], axis=1)
    wav = tmp_path / "call.wav"
    sf.write(wav, pair, rate, subtype="PCM_16")
    flac = tmp_path / "call.flac"
    sf.write(flac, pair, rate)
    m4a = write_av(tmp_path / "call.m4a", [pair], rate, container="mp4")
    raw = tmp_path / "call.raw"
    raw.write_bytes((pair * 32767).astype("<i2").tobytes())
    streams = [
        Stream(wav),
        Stream(flac),
        Stream(m4a),
        Stream(raw, samprate=rate, encoding="SPCM", sampwidth=2, channels=2),
    ]
    for stream in streams:
        left, right = read_channels(str(stream.source), stream.format, target_rate=8000)
        want_left, want_right = (x[::2] for x in (samples, other))
        assert _similarity(left, want_left) > 0.97, stream.getfiletype()
        assert _similarity(right, want_right) > 0.97, stream.getfiletype()
        assert duplicate_channels([left, right]) == {}


def test_identical_channels_are_found_once(speech: tuple[np.ndarray, int]) -> None:
    samples, _ = speech
    quiet = samples * 0.5
    silence = np.zeros_like(samples)
    assert duplicate_channels([samples, samples.copy()]) == {1: 0}
    assert duplicate_channels([samples, samples[::-1].copy()]) == {}
    assert duplicate_channels([samples, quiet]) == {}  # same words, another level: a second mic
    assert duplicate_channels([silence, samples, silence.copy(), samples.copy()]) == {2: 0, 3: 1}


@pytest.mark.parametrize("name", ["talk.wav", "talk.raw", "talk.flac", "talk.mp3", "talk.m4a"])
def test_streamed_from_a_position_matches_the_whole_read(
    made: Path, speech: tuple[np.ndarray, int], tmp_path: Path, name: str
) -> None:
    samples, rate = speech
    path = made / name
    if name == "talk.wav":
        sf.write(path, samples, rate, subtype="PCM_16")
    elif name == "talk.raw":
        path.write_bytes((samples * 32767).astype("<i2").tobytes())
    fields = {"samprate": rate, "encoding": "SPCM", "sampwidth": 2} if name.endswith("raw") else {}
    stream = Stream(path, **fields)
    whole = read_audio(str(path), stream.format, target_rate=8000)
    blocks = list(iter_audio(str(path), stream.format, target_rate=8000, block_seconds=1.0))
    assert max(len(b[0]) for b in blocks) <= 8000 + 400  # memory follows the block
    streamed = np.concatenate([b[0] for b in blocks])
    assert abs(len(streamed) - len(whole)) <= 80 and _similarity(streamed, whole) > 0.99
    tail = np.concatenate(
        [b[0] for b in iter_audio(str(path), stream.format, target_rate=8000, start=3.0)]
    )
    assert abs(len(tail) - (len(whole) - 3 * 8000)) <= 0.05 * 8000, (len(tail), len(whole))
    assert _similarity(tail, whole[3 * 8000 :]) > 0.98
