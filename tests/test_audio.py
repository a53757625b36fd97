"""svwatchd._audio against real speech and formats derived from it with soundfile/numpy.

Each derived format is decoded back to 16 kHz and compared with the original decoded
the plain way: a near-equal length, a strong correlation and the right gain prove
that byte order, signedness, channel mixing and resampling are all right.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import soxr

from svwatchd._audio import RawStreamDecoder, WavInfo, is_riff, probe_wav
from svwatchd._decode import duration_seconds, read_audio
from svwatchd.errors import AudioDecodeError, InvalidInputError, SvwatchdError
from svwatchd.model.enums import Encoding, Endian
from svwatchd.model.format import AudioFormat
from tests.conftest import speech_file

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int16]
LE, BE = Endian.LITTLE, Endian.BIG
SPCM, UPCM, ULAW, ALAW = Encoding.SPCM, Encoding.UPCM, Encoding.ULAW, Encoding.ALAW
CHUNKS = (1, 3, 1001)  # odd sizes that split frames of every width


@pytest.fixture(scope="module")
def refs() -> dict[str, Ints]:
    """The clean 16 kHz mono int16 references, decoded the plain way."""
    wav, _ = sf.read(speech_file("001.wav"), dtype="int16")
    raw = np.fromfile(speech_file("goforward.raw"), dtype="<i2")
    return {"001.wav": wav, "goforward.raw": raw}


def _float(x: Ints) -> Floats:
    return x.astype(np.float32) / np.float32(32768)


def _pack(values: npt.NDArray[np.int64], width: int, *, signed: bool, endian: Endian) -> bytes:
    """Integer samples as ``width``-byte PCM, built with numpy (offset binary if unsigned)."""
    bits = 8 * width
    words = (values + (0 if signed else 1 << (bits - 1))) % (1 << bits)
    raw = words.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    return (raw[:, ::-1] if endian is BE else raw).tobytes()


def _scaled(ref: Ints, width: int) -> npt.NDArray[np.int64]:
    return ref.astype(np.int64) << (8 * width - 16)


# --- derived formats: (reference, builder(ref, path) -> AudioFormat, min r, gain) ----------

Builder = Callable[[Ints, Path], AudioFormat]


def _wav8k(subtype: str, encoding: Encoding) -> Builder:
    def build(ref: Ints, path: Path) -> AudioFormat:
        x = soxr.resample(_float(ref), 16000, 8000)
        sf.write(path, x, 8000, format="WAV", subtype=subtype)
        return AudioFormat("WAV", encoding, 1, 8000)

    return build


def _stereo48k(ref: Ints, path: Path) -> AudioFormat:
    x = soxr.resample(_float(ref), 16000, 48000)
    sf.write(path, np.stack([x, 0.5 * x], axis=1), 48000, format="WAV", subtype="PCM_16")
    return AudioFormat("WAV", SPCM, 2, 48000, 2)


def _rifx(ref: Ints, path: Path) -> AudioFormat:
    sf.write(path, ref, 16000, format="WAV", subtype="PCM_16", endian="BIG")
    assert path.read_bytes()[:4] == b"RIFX"
    return AudioFormat("WAV", SPCM, 2, 16000, 1, BE)


def _u8wav(ref: Ints, path: Path) -> AudioFormat:
    sf.write(path, ref, 16000, format="WAV", subtype="PCM_U8")
    return AudioFormat("WAV", UPCM, 1, 16000)


def _sfraw(subtype: str, fmt: AudioFormat, rate: int = 16000) -> Builder:
    def build(ref: Ints, path: Path) -> AudioFormat:
        x = _float(ref) if rate == 16000 else soxr.resample(_float(ref), 16000, rate)
        sf.write(path, x, rate, format="RAW", subtype=subtype, endian=fmt.endian.value)
        return fmt

    return build


def _be16raw(ref: Ints, path: Path) -> AudioFormat:
    fmt = _sfraw("PCM_16", AudioFormat("RAW", SPCM, 2, 16000, 1, BE))(ref, path)
    assert np.array_equal(np.fromfile(path, dtype=">i2"), ref)  # really big-endian
    return fmt


def _be24stereo22k(ref: Ints, path: Path) -> AudioFormat:
    x = soxr.resample(_float(ref), 16000, 22050)
    sf.write(path, np.stack([x, x], 1), 22050, format="RAW", subtype="PCM_24", endian="BIG")
    return AudioFormat("RAW", SPCM, 3, 22050, 2, BE)


def _upcm(width: int, endian: Endian) -> Builder:
    def build(ref: Ints, path: Path) -> AudioFormat:
        path.write_bytes(_pack(_scaled(ref, width), width, signed=False, endian=endian))
        return AudioFormat("RAW", UPCM, width, 16000, 1, endian)

    return build


WAV_CASES = [
    pytest.param("001.wav", _wav8k("ULAW", ULAW), 0.999, 1.0, id="ulaw-8k-wav"),
    pytest.param("001.wav", _wav8k("ALAW", ALAW), 0.999, 1.0, id="alaw-8k-wav"),
    pytest.param("001.wav", _stereo48k, 0.99, 0.75, id="stereo-48k-wav"),
    pytest.param("001.wav", _rifx, 0.999, 1.0, id="rifx-16bit-wav"),
    pytest.param("001.wav", _u8wav, 0.99, 1.0, id="u8-wav"),
]
RAW_CASES = [
    pytest.param("goforward.raw", _be16raw, 0.999, 1.0, id="s16-be-raw"),
    pytest.param(
        "goforward.raw",
        _sfraw("PCM_U8", AudioFormat("RAW", UPCM, 1, 16000)),
        0.99,
        1.0,
        id="u8-raw",
    ),
    pytest.param(
        "goforward.raw",
        _sfraw("PCM_S8", AudioFormat("RAW", SPCM, 1, 16000)),
        0.99,
        1.0,
        id="s8-raw",
    ),
    pytest.param(
        "goforward.raw", _sfraw("PCM_24", AudioFormat("RAW", SPCM, 3, 16000)), 0.999, 1.0, id="s24"
    ),
    pytest.param(
        "goforward.raw", _sfraw("PCM_32", AudioFormat("RAW", SPCM, 4, 16000)), 0.999, 1.0, id="s32"
    ),
    pytest.param(
        "goforward.raw",
        _sfraw("ULAW", AudioFormat("RAW", ULAW, 1, 8000), rate=8000),
        0.999,
        1.0,
        id="ulaw-8k-raw",
    ),
    pytest.param("goforward.raw", _be24stereo22k, 0.99, 1.0, id="s24-be-stereo-22k-raw"),
    pytest.param("goforward.raw", _upcm(2, LE), 0.999, 1.0, id="u16-le-raw"),
    pytest.param("goforward.raw", _upcm(2, BE), 0.999, 1.0, id="u16-be-raw"),
    pytest.param("goforward.raw", _upcm(3, LE), 0.999, 1.0, id="u24-le-raw"),
    pytest.param("goforward.raw", _upcm(4, BE), 0.999, 1.0, id="u32-be-raw"),
]


def _compare(out: Floats, ref: Floats, min_r: float, gain: float) -> None:
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(ref)) <= 4, (len(out), len(ref))
    n = min(len(out), len(ref))
    r = float(np.corrcoef(out[:n], ref[:n])[0, 1])
    assert r > min_r, f"correlation {r:.4f} with the reference"
    fitted = float(np.dot(out[:n], ref[:n]) / np.dot(ref[:n], ref[:n]))
    assert fitted == pytest.approx(gain, rel=0.05), "wrong scale or channel mix"


@pytest.mark.parametrize(("source", "build", "min_r", "gain"), WAV_CASES + RAW_CASES)
def test_read_audio_derived_formats(
    refs: dict[str, Ints], tmp_path: Path, source: str, build: Builder, min_r: float, gain: float
) -> None:
    ref = refs[source]
    fmt = build(ref, tmp_path / "audio")
    expected = _float(ref)
    if fmt.samprate < 16000:  # what survives the trip through a lower rate
        expected = soxr.resample(soxr.resample(expected, 16000, fmt.samprate), fmt.samprate, 16000)
    _compare(read_audio(tmp_path / "audio", fmt), expected, min_r, gain)
    if fmt.filetype == "WAV":
        info = probe_wav(tmp_path / "audio")
        assert info.format == fmt
        assert info.duration == pytest.approx(len(ref) / 16000, abs=1e-3)


@pytest.mark.parametrize(("source", "build", "min_r", "gain"), RAW_CASES)
def test_stream_decoder_matches_read_audio(
    refs: dict[str, Ints], tmp_path: Path, source: str, build: Builder, min_r: float, gain: float
) -> None:
    fmt = build(refs[source], tmp_path / "audio")
    data = (tmp_path / "audio").read_bytes()
    decoder = RawStreamDecoder(fmt)
    parts, pos, i = [], 0, 0
    while pos < len(data):
        parts.append(decoder.feed(data[pos : pos + CHUNKS[i % 3]]))
        pos, i = pos + CHUNKS[i % 3], i + 1
    parts.append(decoder.flush())
    streamed, whole = np.concatenate(parts), read_audio(tmp_path / "audio", fmt)
    assert streamed.dtype == np.float32
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-4)
    assert decoder.seconds_received == pytest.approx(len(data) / fmt.frame_bytes / fmt.samprate)


def test_plain_16k_sources_decode_unchanged(refs: dict[str, Ints]) -> None:
    wav = read_audio(speech_file("001.wav"), AudioFormat("WAV", SPCM, 2, 16000))
    raw = read_audio(speech_file("goforward.raw"), AudioFormat("RAW", SPCM, 2, 16000))
    np.testing.assert_array_equal(wav, _float(refs["001.wav"]))
    np.testing.assert_array_equal(raw, _float(refs["goforward.raw"]))


@pytest.mark.parametrize("endian", [LE, BE])
@pytest.mark.parametrize("width", [2, 3, 4])
def test_unsigned_numpy_path_scales_like_libsndfile_signed(
    tmp_path: Path, width: int, endian: Endian
) -> None:
    bits = 8 * width
    values = np.random.default_rng(width).integers(-(1 << (bits - 1)), 1 << (bits - 1), 3000)
    values[:2] = [-(1 << (bits - 1)), (1 << (bits - 1)) - 1]  # the extremes
    (tmp_path / "s").write_bytes(_pack(values, width, signed=True, endian=endian))
    (tmp_path / "u").write_bytes(_pack(values, width, signed=False, endian=endian))
    signed = read_audio(tmp_path / "s", AudioFormat("RAW", SPCM, width, 16000, 1, endian))
    unsigned = read_audio(tmp_path / "u", AudioFormat("RAW", UPCM, width, 16000, 1, endian))
    np.testing.assert_array_equal(unsigned, signed)
    assert signed[0] == -1.0


def test_probe_wav_real_file() -> None:
    info = probe_wav(speech_file("001.wav"))
    assert info == WavInfo(AudioFormat("WAV", SPCM, 2, 16000, 1, LE), 17526)
    assert info.duration == pytest.approx(17526 / 16000)


def test_trailing_partial_frame_is_dropped(refs: dict[str, Ints], tmp_path: Path) -> None:
    path = tmp_path / "odd.raw"
    path.write_bytes(speech_file("goforward.raw").read_bytes() + b"\x7f")
    fmt = AudioFormat("RAW", SPCM, 2, 16000)
    np.testing.assert_array_equal(read_audio(path, fmt), _float(refs["goforward.raw"]))
    assert duration_seconds(path, fmt) == pytest.approx(len(refs["goforward.raw"]) / 16000)


@pytest.mark.parametrize("content", [b"", b"\x01"], ids=["empty", "one-byte"])
def test_raw_without_a_whole_frame_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tiny.raw"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match=r"tiny\.raw: the raw file holds no complete"):
        read_audio(path, AudioFormat("RAW", SPCM, 2, 16000))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("bad.wav", "not a valid RIFF/WAVE"),
        ("evil.wav", "not a valid RIFF/WAVE"),
        ("awful.wav", "1092676 Hz is outside 8000..48000"),
        ("null.wav", "no audio frames"),
    ],
)
@pytest.mark.parametrize("call", ["probe", "read"])
def test_malformed_files_raise_audio_decode_error(name: str, problem: str, call: str) -> None:
    path = speech_file(name)
    with pytest.raises(AudioDecodeError) as info:
        if call == "probe":
            probe_wav(path)
        else:
            read_audio(path, AudioFormat("WAV", SPCM, 2, 16000))
    exc = info.value
    assert str(exc).startswith(f"Cannot decode {path}: ") and problem in str(exc)
    assert exc.source == str(path)
    assert isinstance(exc, InvalidInputError)
    assert isinstance(exc, SvwatchdError) and isinstance(exc, ValueError)


def test_unsupported_and_foreign_files(tmp_path: Path) -> None:
    sf.write(tmp_path / "float.wav", np.zeros(100), 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="unsupported WAV sample encoding FLOAT"):
        probe_wav(tmp_path / "float.wav")
    with pytest.raises(AudioDecodeError, match=r"goforward\.raw: not a valid RIFF/WAVE"):
        probe_wav(speech_file("goforward.raw"))
    with pytest.raises(FileNotFoundError):  # OS failures are not decode errors
        probe_wav(tmp_path / "missing.wav")
    assert is_riff(speech_file("001.wav")) and not is_riff(speech_file("goforward.raw"))


def test_audio_decode_error_pickles() -> None:
    exc = pickle.loads(pickle.dumps(AudioDecodeError("/x/bad.wav", "not a valid RIFF/WAVE file")))
    assert str(exc) == "Cannot decode /x/bad.wav: not a valid RIFF/WAVE file"
    assert (exc.source, exc.problem) == ("/x/bad.wav", "not a valid RIFF/WAVE file")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samprate": 7999}, "outside 8000..48000"),
        ({"samprate": 48001}, "outside 8000..48000"),
        ({"sampwidth": 0}, "1 to 4 bytes"),
        ({"sampwidth": 5}, "1 to 4 bytes"),
        ({"encoding": ULAW}, "1 byte wide"),
        ({"encoding": ALAW, "sampwidth": 3}, "1 byte wide"),
        ({"channels": 0}, "1 to 64"),
        ({"channels": 65}, "1 to 64"),
        ({"filetype": "MPEG9"}, "filetype"),
        ({"encoding": "opus"}, "not one of"),
        ({"samprate": 16000.0}, "integer"),
    ],
)
def test_audio_format_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "filetype": "RAW",
        "encoding": SPCM,
        "sampwidth": 2,
        "samprate": 16000,
    }
    with pytest.raises(ValueError, match=message):
        AudioFormat(**(fields | kwargs))  # type: ignore[arg-type]


def test_audio_format_parses_names() -> None:
    fmt = AudioFormat("RAW", "ulaw", 1, 8000, endian="big")  # type: ignore[arg-type]
    assert (fmt.encoding, fmt.endian, fmt.channels, fmt.frame_bytes) == (ULAW, BE, 1, 1)


def test_stream_decoder_lifecycle() -> None:
    fmt = AudioFormat("RAW", SPCM, 2, 8000)
    decoder = RawStreamDecoder(fmt)
    assert len(decoder.feed(b"\x00")) == 0 and decoder.seconds_received == 0.0
    decoder.feed(b"\x00" * 15999)  # completes 8000 frames: one second
    assert decoder.seconds_received == pytest.approx(1.0)
    decoder.flush()
    assert len(decoder.flush()) == 0
    with pytest.raises(RuntimeError, match="after flush"):
        decoder.feed(b"\x00\x00")
    with pytest.raises(ValueError, match="RAW"):
        RawStreamDecoder(AudioFormat("WAV", SPCM, 2, 16000))


@pytest.mark.parametrize("rate", [44100, 22050, 8000])
def test_streamed_file_keeps_time_to_the_end(rate: int, tmp_path: Path) -> None:
    """A long file streamed a block at a time (as long files are decoded) resamples to the
    same samples as one pass over the whole file: no drift, so times at the end are as
    right as at the start (ten minutes, at rates whose ratio to 16 kHz is not whole)."""
    from svwatchd._decode import iter_audio
    from svwatchd.client import Stream

    rng = np.random.default_rng(rate)
    signal = rng.normal(0, 0.1, rate * 600).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, signal, rate, subtype="PCM_16")
    pcm = sf.read(path, dtype="float32")[0]
    streamed = np.concatenate([b[0] for b in iter_audio(path, Stream(path).format)])
    whole = np.asarray(soxr.resample(pcm, rate, 16000, quality="HQ"), np.float32)
    assert len(streamed) == len(whole) == 600 * 16000
    np.testing.assert_allclose(streamed[-16000:], whole[-16000:], atol=1e-4)
