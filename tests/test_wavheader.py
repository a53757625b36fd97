"""The Python fast path for WAV headers never disagrees with libsndfile.

`probe_wav` reads plain headers itself and hands everything else to
libsndfile; `_read_wav(..., samples=True)` always asks libsndfile. On every
layout below, the two give the same answer (the same info, or both an error).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svwatchd import _audio as audio
from svwatchd._audio import WavInfo, probe_wav
from svwatchd._wavheader import read_plain_header
from svwatchd.errors import AudioDecodeError
from tests.conftest import TESTDATA


def by_libsndfile(path: Path) -> WavInfo | str:
    try:
        return audio._read_wav(path, samples=True)[0]
    except AudioDecodeError:
        return "error"


def by_probe(path: Path) -> WavInfo | str:
    try:
        return probe_wav(path)
    except AudioDecodeError:
        return "error"


SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"]


@pytest.mark.parametrize("subtype", SUBTYPES)
@pytest.mark.parametrize("endian", ["LITTLE", "BIG"])
@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (16000, 2), (44100, 1), (48000, 3)])
def test_written_files_take_the_fast_path_and_agree(
    tmp_path: Path, subtype: str, endian: str, rate: int, channels: int
) -> None:
    path = tmp_path / "a.wav"
    frames = np.zeros((777, channels), dtype=np.float32)
    sf.write(path, frames, rate, subtype=subtype, format="WAV", endian=endian)
    head = path.read_bytes()[:512]
    assert read_plain_header(head, path.stat().st_size) is not None  # the plain layout
    assert by_probe(path) == by_libsndfile(path)
    assert probe_wav(path).frames == 777


def test_shared_test_files_agree() -> None:
    wavs = sorted(TESTDATA.glob("*.wav"))
    if not wavs:
        pytest.skip(f"no test audio in {TESTDATA}")
    for path in wavs:  # including bad.wav, evil.wav, awful.wav, null.wav
        assert by_probe(path) == by_libsndfile(path), path.name


def _wav(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, extra: bytes) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fmt_tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 2]),
    channels=st.integers(0, 3),
    rate=st.sampled_from([0, 7999, 8000, 22050, 48000, 48001]),
    bits=st.sampled_from([0, 4, 8, 12, 16, 24, 32]),
    data_len=st.integers(0, 64),
    extra=st.sampled_from([b"", b"LIST\x04\x00\x00\x00INFO", b"junk\x02\x00\x00\x00ab"]),
    flips=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=3),
    cut=st.integers(0, 8),
)
def test_mangled_headers_agree(
    tmp_path: Path,
    fmt_tag: int,
    channels: int,
    rate: int,
    bits: int,
    data_len: int,
    extra: bytes,
    flips: list[tuple[int, int]],
    cut: int,
) -> None:
    raw = bytearray(_wav(fmt_tag, channels, rate, bits, os.urandom(data_len), extra))
    for at, value in flips:
        raw[at % len(raw)] = value
    if cut:
        raw = raw[:-cut]
    path = tmp_path / "m.wav"
    path.write_bytes(bytes(raw))
    fast = read_plain_header(bytes(raw[:512]), len(raw))
    slow = by_libsndfile(path)
    if fast is not None:  # whatever the fast path vouches for, libsndfile reads the same
        assert slow != "error", bytes(raw[:64])
        assert isinstance(slow, WavInfo)
        assert (slow.format.encoding, slow.format.sampwidth, slow.format.samprate) == fast[:3]
        assert (slow.format.channels, slow.frames) == fast[3:5]
    assert by_probe(path) == slow
