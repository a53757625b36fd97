"""Long files: cut into pieces at quiet moments, decoded piece by piece, resumed after kill -9.

The recordings are built here from the shared speech (clips one after the
other with pauses, as a meeting recorder writes them), as 48 kHz stereo WAV
and as MP3. svserver runs with short pieces (``--piece-seconds 15``) so a
few minutes of audio make many pieces. Memory and speed are measured in
``benchmarks/long_file.py``, not here.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr

from svwatchd.client import DecodeStatus, Stream
from svwatchd.client.server import Server
from svwatchd.model.speechdata import Utterance
from svwatchd.server._pieces import cut_pieces
from tests.conftest import TESTDATA, speech_file
from tests.media_files import write_soundfile
from tests.normalise import normalise
from tests.svserver import SvServer

SENSE = [f"sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920, 930)]
RATE = 16000


def _recording(rounds: int) -> tuple[np.ndarray, str]:
    """The five clips ``rounds`` times, a second of room noise between: (16 kHz audio, text)."""
    rng = np.random.default_rng(5)
    parts, words = [], []
    for _ in range(rounds):
        for name in SENSE:
            data, rate = sf.read(TESTDATA / name, dtype="float32")
            assert rate == RATE
            parts += [np.asarray(data, np.float32), rng.normal(0, 0.002, RATE).astype(np.float32)]
            words.append(normalise((TESTDATA / name.replace(".wav", ".txt")).read_text()))
    return np.concatenate(parts), " ".join(words)


def test_pieces_cover_the_audio_once_and_cut_in_pauses() -> None:
    rate = 1000
    tone = np.sin(np.arange(int(3.5 * rate)) * 0.3).astype(np.float32)
    gap = np.zeros(rate // 2, dtype=np.float32)
    audio = np.concatenate([np.concatenate([tone, gap]) for _ in range(12)])
    gaps = [(i * 4.0 + 3.5, i * 4.0 + 4.0) for i in range(12)]  # speech 3.5 s, pause 0.5 s
    blocks = ([audio[i : i + 700]] for i in range(0, len(audio), 700))
    pieces = list(cut_pieces(blocks, start=2.0, rate=rate, piece_seconds=10.0))
    assert pieces[0].start == 2.0 and all(p.end - p.start <= 10.0 for p in pieces)
    joined = np.concatenate([p.channels[0] for p in pieces])
    np.testing.assert_array_equal(joined, audio)  # nothing lost, nothing twice
    for a, b in itertools.pairwise(pieces):
        assert a.end == pytest.approx(b.start)
        cut = a.end - 2.0
        assert any(lo - 0.05 <= cut <= hi + 0.05 for lo, hi in gaps), (cut, gaps)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, str]:
    speech_file(SENSE[0])
    root = tmp_path_factory.mktemp("long") / "root"
    root.mkdir()
    audio, text = _recording(rounds=4)  # about 2.5 minutes
    wide = np.asarray(soxr.resample(audio, RATE, 48000), np.float32)
    sf.write(root / "meeting.wav", np.stack([wide, wide * 0.7], axis=1), 48000, subtype="PCM_16")
    write_soundfile(root / "meeting.mp3", audio, RATE)
    return root, audio, text


@pytest.fixture(scope="module")
def whisper(recording: tuple[Path, np.ndarray, str]) -> Iterator[SvServer]:
    root = recording[0]
    srv = SvServer(
        root.parent / "data",
        engine="whisper",
        args=["--allow-root", str(root), "--piece-seconds", "15"],
    ).start()
    yield srv
    srv.stop()


def _wait(server: Server, streams: list[Stream], seconds: float = 400) -> None:
    deadline = time.monotonic() + seconds
    while not all(s.isdone() for s in streams):
        assert time.monotonic() < deadline, streams
        time.sleep(0.5)
        server.refreshstreams(streams)


def _whole_file_transcript(audio: np.ndarray) -> str:
    """The same audio decoded in one go by the same engine, in this process."""
    from svwatchd.server._engines import EngineConfig, load_engine

    engine = load_engine(EngineConfig(name="whisper", threads=1))
    return normalise(" ".join(u.text for u in engine.transcribe(audio)))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_long_file_in_pieces_reads_like_the_whole_file(
    whisper: SvServer, recording: tuple[Path, np.ndarray, str]
) -> None:
    root, audio, reference = recording
    wav, mp3 = Stream(root / "meeting.wav"), Stream(root / "meeting.mp3")
    with Server(whisper.url) as server:
        server.decodestreams([wav, mp3])
        seen_active_with_results = False
        deadline = time.monotonic() + 600
        while not (wav.isdone() and mp3.isdone()):
            assert time.monotonic() < deadline
            time.sleep(0.5)
            server.refreshstreams([wav, mp3])
            if wav.isactive() and wav.utterances():
                seen_active_with_results = True  # committed piece by piece
        texts = {s.getfiletype(): s.utterances() for s in (wav, mp3)}
    assert wav.status is DecodeStatus.DONE and mp3.status is DecodeStatus.DONE, [
        wav.error,
        mp3.error,
    ]
    assert seen_active_with_results
    whole = _whole_file_transcript(audio)
    duration = len(audio) / RATE
    for kind, utts in texts.items():
        starts = [u.start for u in utts]
        assert starts == sorted(starts), kind
        assert all(a.end <= b.start + 0.5 for a, b in itertools.pairwise(utts)), kind
        assert utts[-1].end <= duration + 0.1 and utts[-1].end >= duration - 6, kind
        hyp = normalise(" ".join(u.text for u in utts))
        print(kind, "WER vs reference", round(jiwer.wer(reference, hyp), 3))
        assert jiwer.wer(reference, hyp) <= jiwer.wer(reference, whole) + 0.03, (kind, hyp)
    print("whole file WER", round(jiwer.wer(reference, whole), 3))
    assert wav.stats()["audio_seconds_decoded"] == pytest.approx(duration, abs=0.1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_mid_file_resumes_after_the_last_piece(
    recording: tuple[Path, np.ndarray, str],
) -> None:
    root, _, reference = recording
    srv = SvServer(
        root.parent / "data-kill",
        engine="whisper",
        args=["--allow-root", str(root), "--piece-seconds", "15", "--workers", "1"],
    ).start()
    try:
        stream = Stream(root / "meeting.wav")
        with Server(srv.url) as server:
            server.decodestreams(stream)
            deadline = time.monotonic() + 300
            before: list[Utterance] = []
            while len(before) < 3:
                assert time.monotonic() < deadline and not stream.isdone()
                time.sleep(0.2)
                before = stream.utterances()
            srv.kill()  # SIGKILL mid-file: some pieces committed, others in flight
        srv.start()
        with Server(srv.url) as server:
            (again,), _ = server.getstreamsbyid([stream.id])
            _wait(server, [again])
            after = again.utterances()
        assert again.status is DecodeStatus.DONE, again.error
        assert after[: len(before)] == before  # kept, not decoded again
        starts = [u.start for u in after]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)  # nothing twice
        hyp = normalise(" ".join(u.text for u in after))
        assert jiwer.wer(reference, hyp) <= 0.15, hyp
    finally:
        srv.stop()


@pytest.mark.timeout(300)
def test_a_worker_that_finishes_early_takes_the_next_piece(tmp_path: Path) -> None:
    """Pieces end out of order (one all speech, the next ones silence, which the VAD skips):
    the worker that is free first gets the next piece at once, and goes on taking pieces
    while the slow first one is still being decoded (more than two per slot: the bound
    that left a worker idle behind one slow piece), and the results are still committed
    in file order."""
    speech_file(SENSE[0])
    root = tmp_path / "root"
    root.mkdir()
    audio, reference = _recording(rounds=2)
    rng = np.random.default_rng(3)
    quiet = rng.normal(0, 0.001, 150 * RATE).astype(np.float32)
    first = audio[: 15 * RATE]  # dense speech: the slowest piece
    layout = np.concatenate([first, quiet, audio[15 * RATE :]])
    sf.write(root / "talk.wav", layout, RATE, subtype="PCM_16")
    srv = SvServer(
        tmp_path / "data",
        engine="pocketsphinx",
        args=[
            "--allow-root",
            str(root),
            "--piece-seconds",
            "15",
            "--workers",
            "2",
            "--log-level",
            "debug",
        ],
    ).start()
    try:
        stream = Stream(root / "talk.wav")
        with Server(srv.url) as server:
            server.decodestreams(stream)
            _wait(server, [stream], seconds=240)
            utts = stream.utterances()
        events = [json.loads(line) for line in srv.output().splitlines() if line.startswith("{")]
    finally:
        srv.stop()
    assert stream.status is DecodeStatus.DONE, stream.error
    order = [(e["event"], e["start"]) for e in events if e["event"].startswith("piece.")]
    starts = sorted({s for name, s in order if name == "piece.started"})
    assert len(starts) >= 5, order
    first_done = order.index(("piece.decoded", starts[0]))
    later = [s for name, s in order[:first_done] if name == "piece.started" and s > starts[1]]
    assert len(later) >= 4, f"too few pieces started while the first was decoding: {order}"
    begins = [u.start for u in utts]
    assert begins == sorted(begins)  # committed in file order all the same
    assert not [u for u in utts if 15.5 < u.start < 15 + 148]  # nothing in the quiet stretch
    hyp = normalise(" ".join(u.text for u in utts))
    assert jiwer.wer(reference, hyp) <= 0.5, hyp  # pocketsphinx: the words are there, roughly
