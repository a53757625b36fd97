"""One long recording through svserver: memory, wall time on one and on two workers, timing.

What is measured, on a recording built here from the shared speech (the
LibriVox clips one after the other with 0.6-1.6 s of low room noise between
them, as a meeting recorder writes them: continuous, hours long), written as
48 kHz stereo WAV and as MP3:

* svserver's and each worker's resident memory when idle (ready, warmed up
  on one short file) and their peak (``VmHWM``) after the file is DONE; the
  target is at most 150 MB above idle for each;
* wall time from ``decodestreams`` to DONE and real-time factor, with
  ``--workers 1`` and ``--workers 2`` in one run (target: two workers at most
  0.6x the time of one);
* timing (target 0.1 s at the end of the file): for the first and the last
  clips placed, the nearest word start's distance from where the clip's
  speech starts (the first 60 ms within 20 dB of its loudest: the clips open
  with 0.24-0.34 s of the recording's noise floor and breath, 19-38 dB down,
  which Silero's VAD does not call speech either; this distance includes
  Whisper's own error on word times), and, for the last clips, from the
  nearest word start when the same stretch of the file (the clip, the one
  before it and the pauses) is decoded as a short file by the same engine:
  Whisper's error taken out, what the long-file path adds.

Default server (Whisper tiny.en, 1 thread per worker), each run in a fresh
data directory. Run: ``python -m benchmarks.long_file [--minutes 180] [--format wav|mp3|both]``.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from benchmarks._common import SENSE, cores, load_clip, loadavg, proc_memory, speech_start
from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.svserver import SvServer


def build(dest: Path, minutes: float, *, mp3: bool) -> tuple[Path, list[tuple[int, float]], float]:
    """Write the recording a block at a time (never whole in memory); return its path, each
    clip placed (its index in ``SENSE``, where it starts, seconds) and its duration."""
    rng = np.random.default_rng(11)
    clips = [load_clip(n) for n in SENSE]
    placed: list[tuple[int, float]] = []
    position = 0.0
    total = minutes * 60
    path = dest / ("meeting.mp3" if mp3 else "meeting.wav")
    rate = 48000
    kind = {"format": "MP3"} if mp3 else {"subtype": "PCM_16"}
    with sf.SoundFile(path, "w", rate, 2, **kind) as out:
        while position < total:
            index = int(rng.integers(len(clips)))
            clip = clips[index]
            pause = rng.uniform(0.6, 1.6)
            noise = rng.normal(0, 0.002, int(pause * 16000)).astype(np.float32)
            block16 = np.concatenate([clip, noise])
            block = np.asarray(soxr.resample(block16, 16000, rate), np.float32)
            out.write(np.stack([block, block * 0.8], axis=1))
            placed.append((index, position))
            position += len(block) / rate
    return path, placed, position


def run(
    path: Path,
    placed: list[tuple[int, float]],
    duration: float,
    workers: int,
    data: Path,
    short: list[float],
) -> float:
    srv = SvServer(
        data, engine="whisper", args=["--allow-root", str(path.parent), "--workers", str(workers)]
    ).start(timeout=300)
    try:
        with Server(srv.url, timeout=60) as server:
            warm = Stream(path.parent / "warm.wav")
            server.decodestreams(warm)
            while not warm.isdone():
                time.sleep(0.2)
                server.refreshstreams(warm)
            pids = _pids(srv)
            idle = {pid: proc_memory(pid)[0] for pid in pids}
            started = {pid: proc_memory(pid)[1] for pid in pids}  # the peak while loading
            stream = Stream(path)
            began = time.monotonic()
            server.decodestreams(stream)
            while not stream.isdone():
                time.sleep(1.0)
                server.refreshstreams(stream)
            wall = time.monotonic() - began
            utts = stream.utterances()
            peak = {pid: proc_memory(pid)[1] for pid in pids}
        label = f"{path.suffix[1:].upper()} {workers} worker(s)"
        print(
            f"{label}: {stream.status.value if stream.status else '?'} in {wall:.0f} s, "
            f"{duration / wall:.1f}x real time, {len(utts)} utterances"
        )
        for pid in pids:
            role = "svserver" if pid == pids[0] else "worker"
            print(
                f"  {role} {pid}: idle {idle[pid]:.0f} MiB, peak {peak[pid]:.0f} MiB, "
                f"+{peak[pid] - idle[pid]:.0f} MiB (target <= +150; start-up peak "
                f"{started[pid]:.0f} MiB)"
            )
        word_starts = [w.start for u in utts for w in u.words] or [u.start for u in utts]
        for label, expected in (
            ("first clips: nearest word start vs the speech's start", _speech(placed[:8])),
            ("last clips: nearest word start vs the speech's start", _speech(placed[-8:])),
            ("last clips: vs the same stretch decoded as a short file", short),
        ):
            offsets = [min(abs(w - s) for w in word_starts) for s in expected]
            print(
                f"  {label}, seconds: "
                + " ".join(f"{o:.2f}" for o in offsets)
                + f" (max {max(offsets):.2f})"
            )
        print(f"  last utterance ends {utts[-1].end:.1f} s of {duration:.1f} s")
        return wall
    finally:
        srv.stop()


def _speech(placed: list[tuple[int, float]]) -> list[float]:
    """Where each placed clip's speech starts in the file, seconds."""
    return [at + _clip_speech_start(i) for i, at in placed]


@functools.cache
def _clip_speech_start(index: int) -> float:
    """Where the speech of ``SENSE[index]`` starts in the clip (read once)."""
    return speech_start(load_clip(SENSE[index]))


def _short_file_words(path: Path, placed: list[tuple[int, float]], duration: float) -> list[float]:
    """For each of the last 8 clips: the word start nearest its speech's start when the
    stretch of the file from the clip before it to the clip after it is decoded on its own
    (mixed to mono and resampled as svserver does, the same engine, in this process), on
    the file's timeline: Whisper's own timing, to tell it from the long-file path's."""
    from svwatchd.server._engines import EngineConfig, load_engine

    engine = load_engine(EngineConfig(threads=1))
    found = []
    with sf.SoundFile(path) as f:
        for n in range(len(placed) - 8, len(placed)):
            begin = placed[n - 1][1]
            end = placed[n + 1][1] if n + 1 < len(placed) else duration
            f.seek(round(begin * f.samplerate))
            stretch = f.read(round((end - begin) * f.samplerate), dtype="float32").mean(axis=1)
            audio = np.asarray(soxr.resample(stretch, f.samplerate, 16000), np.float32)
            starts = [begin + w.start for u in engine.transcribe(audio) for w in u.words]
            speech = _speech([placed[n]])[0]
            found.append(min(starts, key=lambda w: abs(w - speech)) if starts else begin)
    del engine
    return found


def _pids(srv: SvServer) -> list[int]:
    """svserver and its worker processes (its children)."""
    assert srv.proc is not None
    pid = srv.proc.pid
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():  # workers may be started from any thread
        children += [int(c) for c in (task / "children").read_text().split()]
    workers = [c for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    return [pid, *sorted(workers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=180.0)
    parser.add_argument("--format", choices=("wav", "mp3", "both"), default="both")
    args = parser.parse_args()
    print(f"long_file: {args.minutes:.0f} min, {cores()} cores, load {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "audio"
        root.mkdir()
        sf.write(root / "warm.wav", load_clip(SENSE[0]), 16000, subtype="PCM_16")
        kinds = {"wav": [False], "mp3": [True], "both": [False, True]}[args.format]
        for mp3 in kinds:
            began = time.monotonic()
            path, placed, duration = build(root, args.minutes, mp3=mp3)
            size = path.stat().st_size / 1e6
            print(
                f"{path.name}: {duration / 60:.1f} min, {size:.0f} MB, built in "
                f"{time.monotonic() - began:.0f} s"
            )
            short = _short_file_words(path, placed, duration)
            walls = {
                w: run(path, placed, duration, w, Path(tmp) / f"data-{mp3}-{w}", short)
                for w in (1, 2)
            }
            print(
                f"  two workers / one worker: {walls[2] / walls[1]:.2f} (target <= 0.6), "
                f"load {loadavg()}"
            )
            path.unlink()


if __name__ == "__main__":
    main()
