"""Container decoding must not eat the engine's cores: one long corpus as WAV, MP3 and M4A.

What is measured: audio seconds decoded per wall second ("x real time") by
one default svserver (Whisper tiny.en, one worker per core) on the LONG
corpus of ``benchmarks/decode_throughput.py`` (6 files of 60-90 s of
continuous LibriVox speech), written three ways: 16 kHz WAV, MP3 and M4A
(AAC). The three run back to back in one run, in ``--repeat`` rounds,
each format's best round counting; the clock runs from ``decodestreams`` to
the last stream DONE. Target: MP3 and M4A each at least 0.9x the WAV
throughput. Word error rates are printed as a check that speed was not
bought with lost words.

Run: ``python -m benchmarks.container_throughput [--repeat 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

from benchmarks._common import RATE, cores, loadavg, wait_done
from benchmarks.decode_throughput import Corpus, build_long
from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.media_files import write_format
from tests.normalise import normalise
from tests.svserver import SvServer

FORMATS = ("wav", "mp3", "m4a")


def _as(corpus: Corpus, suffix: str) -> list[Path]:
    if suffix == "wav":
        return [item.path for item in corpus.items]
    out = []
    for item in corpus.items:
        samples, rate = sf.read(item.path, dtype="float32")
        out.append(write_format(item.path.with_suffix(f".{suffix}"), np.asarray(samples), rate))
    return out


def _round(server: Server, paths: list[Path]) -> tuple[float, list[Stream]]:
    streams = [Stream(p) for p in paths]
    began = time.monotonic()
    server.decodestreams(streams)
    ended = wait_done(server, streams)
    return ended - began, streams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"container_throughput: {cores()} cores, load {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "audio"
        root.mkdir()
        corpus = build_long(root, 6, 60.0, 90.0, np.random.default_rng(3))
        files = {suffix: _as(corpus, suffix) for suffix in FORMATS}
        refs = [item.reference for item in corpus.items]
        srv = SvServer(Path(tmp) / "data", engine="whisper", args=["--allow-root", str(root)])
        srv.start(timeout=300)
        try:
            with Server(srv.url, timeout=60) as server:
                _round(server, files["wav"][:1])  # warm every worker's model
                best: dict[str, float] = {}
                wer: dict[str, float] = {}
                for _ in range(args.repeat):
                    for suffix in FORMATS:
                        wall, streams = _round(server, files[suffix])
                        best[suffix] = min(best.get(suffix, wall), wall)
                        hyps = [
                            normalise(" ".join(u.text for u in s.utterances())) for s in streams
                        ]
                        wer[suffix] = jiwer.wer(refs, hyps)
        finally:
            srv.stop()
    seconds = corpus.seconds
    print(f"corpus: {len(corpus.items)} files, {seconds:.0f} s of audio (at {RATE} Hz as WAV)")
    for suffix in FORMATS:
        speed = seconds / best[suffix]
        ratio = best["wav"] / best[suffix]
        target = "" if suffix == "wav" else f", {ratio:.2f}x WAV (target >= 0.9)"
        print(f"  {suffix.upper()}: {speed:.1f}x real time, WER {wer[suffix]:.3f}{target}")
    print(f"load after: {loadavg()}")


if __name__ == "__main__":
    main()
