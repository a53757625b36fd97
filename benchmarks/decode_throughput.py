"""File-decoding throughput: svserver against the strongest plain set-up of the same engine.

What is measured: audio seconds decoded per wall second ("x real time") on two
corpora built in a temporary directory from the shared test speech:

* LONG: 6 files of 60-90 s, each the LibriVox ``sense_and_sensibility`` clips
  concatenated in shuffled orders with 0.5 s of silence between them;
* SHORT: 100 short clips (the card clips 001-005.wav and goforward/something,
  about 14 of each in a shuffled order, each with a random gain and 0-0.25 s of
  digital silence at each end);
* HARDCUT: 99 clips of 4-6 s cut back to back from continuous read speech (the
  sense clips in a fixed cycle, joined without pauses: 27 s, so no sentence
  comes back within one packed window, as none would in a real recording,
  where a repeat trips the non-speech guard), so speech runs to
  both edges of most clips, as a recorder writing fixed-length chunks or a
  phone system's segmenter makes them. A clip's reference is the words whose
  estimated middle falls inside the cut (word times in proportion to their
  characters within their source clip): the edges are approximate, but the
  same for the server and the baselines.

Server: a real svserver (``tests/svserver.py``) with one worker per core and 1
thread each; the clock runs from the ``decodestreams`` call (one request for
the whole corpus) until the last stream is DONE (the server's own end time),
after the server is ready and each worker has decoded one warm-up file, so
model loading is excluded.

Baselines, run in the same process tree while the server idles, on the same
files, each process warmed up on the same file first (load time excluded):

* whisper (a) "batched": one ``WhisperModel(bundled tiny.en, cpu_threads=cores,
  int8)`` with ``BatchedInferencePipeline``, ``word_timestamps=True``, file by file;
* whisper (b) "procs": one process per core, ``WhisperModel(cpu_threads=1)``,
  ``model.transcribe(file, word_timestamps=True, vad_filter=True,
  condition_on_previous_text=False)``, the files handed out from one queue;
* pocketsphinx: a raw ``pocketsphinx.Decoder`` (en-us) in one process per core,
  either each whole file as one utterance ("whole") or cut by pocketsphinx's
  own ``Endpointer`` ("endpointer"), whichever is faster.

Each corpus runs the server and every baseline back to back, in ``--repeat``
rounds (2, or 1 with ``--quick``); each contender's best round counts, since
other work on a shared machine can only slow a run down.

Both whisper baselines decode greedily (``beam_size=1``, as the server does):
faster-whisper's default beam 5 would only make the baseline slower. The best
baseline variant is the comparison; the ratio server/baseline is printed with
its target (whisper LONG >= 0.9, SHORT >= 1.8 thanks to cross-stream packing;
pocketsphinx >= 0.9). Aggregate word error rates (normalised text) are printed
as a sanity check that speed was not bought with lost words, and each svserver
worker's resident memory (``/proc/<pid>/status``) after each corpus.

Run: ``python -m benchmarks.decode_throughput [--engine whisper|pocketsphinx|both] [--quick]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiwer
import numpy as np

from benchmarks._common import (
    CARDS,
    RATE,
    RAWS,
    SENSE,
    cores,
    load_clip,
    loadavg,
    memory_line,
    native_threads,
    proc_memory,
    reference,
    wait_done,
    write_wav,
)
from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.normalise import normalise
from tests.svserver import SvServer

BASELINE_BEAM = 1
"""Greedy, as svserver's Whisper engine decodes (faster-whisper defaults to beam 5)."""

TARGETS = {("whisper", "LONG"): 0.9, ("whisper", "SHORT"): 1.8, ("whisper", "HARDCUT"): 1.8}
"""Server/baseline throughput ratio targets; pocketsphinx: 0.9 on both corpora."""


@dataclass(frozen=True)
class Item:
    """One corpus file: its path, length and normalised reference."""

    path: Path
    seconds: float
    reference: str


@dataclass(frozen=True)
class Corpus:
    """A named set of files."""

    name: str
    items: list[Item]

    @property
    def seconds(self) -> float:
        return sum(i.seconds for i in self.items)

    @property
    def paths(self) -> list[str]:
        return [str(i.path) for i in self.items]


# -- corpora ---------------------------------------------------------------------------


def build_long(dest: Path, count: int, lo: float, hi: float, rng: np.random.Generator) -> Corpus:
    """``count`` files of ``lo``-``hi`` s: the sense clips in shuffled orders, 0.5 s apart."""
    clips = {name: load_clip(name) for name in SENSE}
    gap = np.zeros(RATE // 2, dtype=np.float32)
    items: list[Item] = []
    for k in range(count):
        target = rng.uniform(lo, hi)
        parts: list[np.ndarray] = []
        refs: list[str] = []
        total = 0.0
        while total < target:
            for i in rng.permutation(len(SENSE)):
                name = SENSE[int(i)]
                if parts:
                    parts.append(gap)
                parts.append(clips[name])
                refs.append(reference(name))
                total = sum(len(p) for p in parts) / RATE
                if total >= target:
                    break
        audio = np.concatenate(parts)
        path = write_wav(dest / f"long{k:02d}.wav", audio)
        items.append(Item(path, len(audio) / RATE, " ".join(refs)))
    return Corpus("LONG", items)


def build_short(dest: Path, count: int, rng: np.random.Generator) -> Corpus:
    """``count`` short clips: the card and raw clips cycled, then shuffled (so no pair of
    sources is always adjacent in the submission), each with random gain and padding."""
    names = CARDS + RAWS
    clips = {name: load_clip(name) for name in names}
    order = [names[k % len(names)] for k in range(count)]
    rng.shuffle(order)
    items: list[Item] = []
    for k, name in enumerate(order):
        clip = clips[name]
        peak = float(np.abs(clip).max()) or 1.0
        gain = min(rng.uniform(0.5, 1.5), 0.98 / peak)
        lead = np.zeros(int(rng.uniform(0.0, 0.25) * RATE), dtype=np.float32)
        tail = np.zeros(int(rng.uniform(0.0, 0.25) * RATE), dtype=np.float32)
        audio = np.concatenate([lead, clip * np.float32(gain), tail])
        path = write_wav(dest / f"short{k:03d}.wav", audio)
        items.append(Item(path, len(audio) / RATE, reference(name)))
    return Corpus("SHORT", items)


def build_hardcut(dest: Path, count: int, rng: np.random.Generator) -> Corpus:
    """``count`` clips of 4-6 s cut back to back from the sense clips joined in a fixed
    cycle without pauses; each clip's reference estimated as the module docstring says."""
    clips = {name: load_clip(name) for name in SENSE}
    timeline: list[tuple[float, str]] = []  # (estimated middle of the word, word)
    parts: list[np.ndarray] = []
    elapsed = 0.0
    while elapsed < count * 6.0:
        for name in SENSE:  # a fixed cycle: no sentence comes back within one window
            seconds = len(clips[name]) / RATE
            words = reference(name).split()
            chars = sum(len(w) + 1 for w in words)
            position = 0
            for word in words:
                middle = (position + (len(word) + 1) / 2) / chars
                timeline.append((elapsed + middle * seconds, word))
                position += len(word) + 1
            parts.append(clips[name])
            elapsed += seconds
    speech = np.concatenate(parts)
    items: list[Item] = []
    start = 0
    for k in range(count):
        size = int(rng.uniform(4.0, 6.0) * RATE)
        lo, hi = start / RATE, (start + size) / RATE
        ref = " ".join(w for middle, w in timeline if lo <= middle < hi)
        path = write_wav(dest / f"cut{k:03d}.wav", speech[start : start + size])
        items.append(Item(path, size / RATE, ref))
        start += size
    return Corpus("HARDCUT", items)


def full_corpora(dest: Path, rng: np.random.Generator) -> list[Corpus]:
    """LONG (6 files of 60-90 s), SHORT (100 clips) and HARDCUT (99 clips), built in this
    order from ``rng``: the benchmarks that measure on "decode_throughput's corpora" build
    them here, so the same seed gives them the same files."""
    return [
        build_long(dest, 6, 60.0, 90.0, rng),
        build_short(dest, 100, rng),
        build_hardcut(dest, 99, rng),
    ]


def build_warmup(dest: Path) -> Path:
    """One pass of the sense clips (~27 s): every decoder decodes it once, untimed."""
    gap = np.zeros(RATE // 2, dtype=np.float32)
    parts: list[np.ndarray] = []
    for name in SENSE:
        parts += [load_clip(name), gap]
    return write_wav(dest / "warmup.wav", np.concatenate(parts))


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Aggregate word error rate of normalised hypotheses against references."""
    hyp = [normalise(h) or "<empty>" for h in hyps]
    return float(jiwer.wer(list(refs), hyp))


# -- baseline worker processes ---------------------------------------------------------


def _serve_jobs(
    run: Callable[[str], str], warmup: str, jobs: Any, results: Any, label: str
) -> None:
    """The loop of a baseline worker: warm up, say ready, decode paths until None."""
    try:
        run(warmup)
        results.put(("ready", os.getpid(), label))
        while True:
            job = jobs.get()
            if job is None:
                break
            index, path = job
            results.put(("done", index, run(path)))
        rss, hwm = proc_memory("self")
        results.put(("memory", os.getpid(), rss, hwm))
    except BaseException:
        results.put(("error", os.getpid(), traceback.format_exc()))


def whisper_worker(
    mode: str, model_dir: str, threads: int, warmup: str, jobs: Any, results: Any
) -> None:
    """A faster-whisper baseline process: ``batched`` pipeline or plain ``transcribe``."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
    pipeline = BatchedInferencePipeline(model) if mode == "batched" else None

    def run(path: str) -> str:
        if pipeline is not None:
            segments, _ = pipeline.transcribe(
                path, language="en", beam_size=BASELINE_BEAM, word_timestamps=True
            )
        else:
            segments, _ = model.transcribe(
                path,
                language="en",
                beam_size=BASELINE_BEAM,
                word_timestamps=True,
                vad_filter=True,
                condition_on_previous_text=False,
            )
        return " ".join(s.text.strip() for s in segments)

    _serve_jobs(run, warmup, jobs, results, f"whisper-{mode}")


def sphinx_worker(mode: str, warmup: str, jobs: Any, results: Any) -> None:
    """A pocketsphinx baseline process: ``whole`` file as one utterance, or ``endpointer``."""
    import soundfile as sf
    from pocketsphinx import Decoder, Endpointer

    decoder = Decoder(samprate=RATE, loglevel="ERROR")

    def utterance(pcm: bytes) -> str:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def run(path: str) -> str:
        data, _ = sf.read(path, dtype="int16")
        pcm = data.tobytes()
        if mode == "whole":
            return utterance(pcm)
        endpointer = Endpointer(sample_rate=RATE)
        size = int(endpointer.frame_bytes)
        texts: list[str] = []
        pending: list[bytes] = []
        for pos in range(0, len(pcm), size):
            frame = pcm[pos : pos + size]
            if len(frame) < size:
                frame += b"\0" * (size - len(frame))
            last = pos + size >= len(pcm)
            speech = endpointer.end_stream(frame) if last else endpointer.process(frame)
            if speech is None:
                continue
            pending.append(bytes(speech))
            if not endpointer.in_speech:
                texts.append(utterance(b"".join(pending)))
                pending = []
        if pending:
            texts.append(utterance(b"".join(pending)))
        return " ".join(t for t in texts if t)

    _serve_jobs(run, warmup, jobs, results, f"sphinx-{mode}")


class Pool:
    """Baseline worker processes (spawned, warm) fed from one shared queue."""

    def __init__(
        self,
        label: str,
        target: Callable[..., None],
        args: tuple[Any, ...],
        n: int,
        threads: int = 1,
    ):
        ctx = mp.get_context("spawn")
        self.label = label
        self.jobs: Any = ctx.Queue()
        self.results: Any = ctx.Queue()
        self.procs = [
            ctx.Process(target=target, args=(*args, self.jobs, self.results), daemon=True)
            for _ in range(n)
        ]
        with native_threads(threads):  # each process's numpy/OpenMP on its own threads
            for p in self.procs:
                p.start()
        self.memory: dict[int, tuple[float, float]] = {}

    def _get(self, timeout: float = 900.0) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg: tuple[Any, ...] = self.results.get(timeout=1.0)
            except queue.Empty:
                if not all(p.is_alive() for p in self.procs):
                    raise RuntimeError(f"a {self.label} worker died") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.label}: no answer in {timeout} s") from None
                continue
            if msg[0] == "error":
                raise RuntimeError(f"{self.label} worker {msg[1]} failed:\n{msg[2]}")
            return msg

    def wait_ready(self) -> None:
        for _ in self.procs:
            self._get(600.0)

    def run(self, paths: Sequence[str]) -> tuple[float, list[str]]:
        """Decode ``paths``; return wall seconds (first job queued to last result) and texts."""
        texts = [""] * len(paths)
        began = time.monotonic()
        for job in enumerate(paths):
            self.jobs.put(job)
        for _ in paths:
            _, index, text = self._get()
            texts[index] = text
        return time.monotonic() - began, texts

    def close(self) -> None:
        for _ in self.procs:
            self.jobs.put(None)
        for _ in self.procs:
            try:
                _, pid, rss, hwm = self._get(30.0)
                self.memory[pid] = (rss, hwm)
            except (RuntimeError, TimeoutError):
                break
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)

    def memory_text(self) -> str:
        return "; ".join(
            f"pid {pid} VmRSS {rss:.0f} MiB (peak {hwm:.0f} MiB)"
            for pid, (rss, hwm) in self.memory.items()
        )


# -- svserver ----------------------------------------------------------------------------


def server_run(server: Server, corpus: Corpus) -> tuple[float, list[str], str]:
    """Decode a corpus through svserver; return wall seconds, texts, and how it was timed."""
    streams = [Stream(p, bench="throughput", corpus=corpus.name) for p in corpus.paths]
    began_wall, began = time.time(), time.monotonic()
    server.decodestreams(streams)
    seen = wait_done(server, streams)
    failed = [s for s in streams if not s.isdone() or s.iserror()]
    if failed:
        raise RuntimeError(f"{len(failed)} streams failed, e.g. {failed[0]}: {failed[0].error}")
    ends = [s.end for s in streams]
    if all(e is not None for e in ends):
        wall, how = max(e.timestamp() for e in ends if e is not None) - began_wall, "server end"
    else:
        wall, how = seen - began, "client poll"
    texts = [" ".join(u.text for u in server.utterances(s)) for s in streams]
    return wall, texts, how


@dataclass(frozen=True)
class Moved:
    """A word packing put in clip ``clip`` that the per-file decode heard in ``neighbour``."""

    clip: int
    neighbour: int
    word: str
    at_edge: bool  # among the clip's first or last two words (a word cut in two by the cut)
    reference_agrees: bool  # the clip's reference has it (the per-file side was the wrong one)


def moved_words(
    texts: Sequence[str], per_file: Sequence[str], refs: Sequence[str] | None = None
) -> list[Moved]:
    """Words (4+ letters, normalised) in clip k's ``texts`` but not in its ``per_file``
    text, that ``per_file`` has in clip k-1 or k+1 and ``texts`` does not there: words
    packing gave another clip than the per-file decode did (packed neighbours are
    neighbours in submission order). Two per-file decodes compared the same way give the
    count chance alone makes."""

    def bag(text: str) -> Counter[str]:
        return Counter(w for w in normalise(text).split() if len(w) >= 4)

    bags, own = [bag(t) for t in texts], [bag(t) for t in per_file]
    moved: list[Moved] = []
    for k, words in enumerate(bags):
        said = [w for w in normalise(texts[k]).split() if len(w) >= 4]
        for word in words - own[k]:
            for j in (k - 1, k + 1):
                if 0 <= j < len(bags) and (own[j] - bags[j])[word] > 0:
                    agrees = refs is not None and word in normalise(refs[k]).split()
                    moved.append(Moved(k, j, word, word in said[:2] + said[-2:], agrees))
                    break
    return moved


def _moved_line(moved: list[Moved], chance: list[Moved]) -> str:
    edge = sum(m.at_edge for m in moved)
    agrees = sum(m.reference_agrees for m in moved)
    shown = ", ".join(f"{m.word!r} {m.neighbour}->{m.clip}" for m in moved[:8])
    return (
        f"{len(moved)} word(s) of 4+ letters in a clip's server text that the per-file "
        f"decode (procs) gave a neighbour instead ({edge} at a cut edge: the clip's first or "
        f"last two; the reference has {agrees} in the clip packing chose){': ' if moved else ''}"
        f"{shown}; by chance (batched against procs, both per file): {len(chance)}"
    )


def warm_server(server: Server, warmup: Path, workers: int) -> None:
    """Each worker decodes the warm-up file once (long files go one per job)."""
    streams = [Stream(warmup, bench="warmup") for _ in range(workers)]
    server.decodestreams(streams)
    wait_done(server, streams)


# -- one engine ----------------------------------------------------------------------------


def bench_engine(
    engine: str, corpora: list[Corpus], base: Path, warmup: Path, n: int, repeat: int
) -> None:
    """Server and baselines for one engine on every corpus; prints the figures."""
    print(f"[{engine}] load average at engine start: {loadavg()}")
    pools: dict[str, Pool] = {}
    srv = SvServer(
        base / f"data-{engine}", engine=engine, args=["--allow-root", str(base)], workers=n
    )
    began = time.monotonic()
    srv.start(timeout=300)
    print(f"[{engine}] svserver ready in {time.monotonic() - began:.1f} s ({n} workers x 1 thread)")
    try:
        with Server(srv.url, timeout=120) as server:
            info = server.sysinfo()
            pids = [int(p) for p in info["engine"]["worker_pids"]]
            params = server.getparams()
            print(
                f"[{engine}] svserver engine {info['engine'].get('model')} "
                f"{info['engine'].get('compute_type')}, worker pids {pids}, "
                f"maxactive {params.get('maxactive')}, pack_max {params.get('pack_max')}"
            )
            warm_server(server, warmup, n)
            if engine == "whisper":
                model_dir = str(_model_dir())
                pools["procs"] = Pool(
                    f"procs ({n} x cpu_threads=1)",
                    whisper_worker,
                    ("procs", model_dir, 1, str(warmup)),
                    n,
                )
                pools["batched"] = Pool(
                    f"batched (1 x cpu_threads={n}, BatchedInferencePipeline)",
                    whisper_worker,
                    ("batched", model_dir, n, str(warmup)),
                    1,
                    threads=n,
                )
            else:
                for mode in ("whole", "endpointer"):
                    pools[mode] = Pool(
                        f"{mode} ({n} x Decoder)", sphinx_worker, (mode, str(warmup)), n
                    )
            for pool in pools.values():
                pool.wait_ready()
            for corpus in corpora:
                bench_corpus(engine, corpus, server, pools, pids, repeat)
    finally:
        for pool in pools.values():
            pool.close()
        srv.stop()
    for pool in pools.values():
        print(f"[{engine}] baseline {pool.label} worker memory: {pool.memory_text()}")
    print(f"[{engine}] load average at engine end: {loadavg()}")


def _model_dir() -> Path:
    from svwatchd.server._engines.bundles import TINY_EN, bundle_dir

    return bundle_dir(TINY_EN, None)


def bench_corpus(
    engine: str,
    corpus: Corpus,
    server: Server,
    pools: dict[str, Pool],
    pids: list[int],
    repeat: int,
) -> None:
    """One corpus: server, then each baseline, back to back, ``repeat`` rounds; the best
    round of each contender is compared (other work on the machine only slows runs down)."""
    tag = f"[{engine}] {corpus.name}"
    audio = corpus.seconds
    refs = [i.reference for i in corpus.items]
    print(f"{tag}: {len(corpus.items)} files, {audio:.1f} s of audio, load {loadavg()}")
    best: dict[str, float] = {}
    heard: dict[str, list[str]] = {}  # the last round's texts of each contender
    for round_ in range(1, repeat + 1):
        run = f"{tag} round {round_}/{repeat}"
        wall, texts, how = server_run(server, corpus)
        heard["server"] = texts
        x = audio / wall
        best["server"] = max(best.get("server", 0.0), x)
        print(
            f"{run} server: {wall:.2f} s wall ({how}), {x:.1f}x real time, "
            f"WER {wer(refs, texts):.3f}"
        )
        for name, pool in pools.items():
            wall, texts = pool.run(corpus.paths)
            heard[name] = texts
            x = audio / wall
            best[name] = max(best.get(name, 0.0), x)
            print(
                f"{run} baseline {pool.label}: {wall:.2f} s wall, {x:.1f}x real time, "
                f"WER {wer(refs, texts):.3f}"
            )
    print(memory_line(f"{tag} server worker memory", pids))
    if engine == "whisper" and {"procs", "batched"} <= heard.keys():
        moved = moved_words(heard["server"], heard["procs"], refs)
        chance = moved_words(heard["batched"], heard["procs"])
        print(f"{tag} attribution: {_moved_line(moved, chance)}")
    server_x = best.pop("server")
    best_name = max(best, key=lambda k: best[k])
    best_x = best[best_name]
    target = TARGETS.get((engine, corpus.name), 0.9)
    ratio = server_x / best_x
    verdict = "met" if ratio >= target else "MISSED"
    print(
        f"{tag} RESULT server {server_x:.1f}x real time, baseline {best_x:.1f}x "
        f"(best: {pools[best_name].label}), load {loadavg()}"
    )
    print(f"{tag} RESULT ratio server/baseline {ratio:.2f} (target >= {target}: {verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["whisper", "pocketsphinx", "both"], default="both")
    parser.add_argument(
        "--quick", action="store_true", help="a small corpus (seconds, not minutes)"
    )
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument(
        "--repeat", type=int, default=None, help="rounds per corpus (default 2, 1 with --quick)"
    )
    parser.add_argument(
        "--corpus",
        action="append",
        choices=["LONG", "SHORT", "HARDCUT"],
        help="only this corpus (repeatable; default: all three)",
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    n = cores()
    print(
        f"decode_throughput: engine={args.engine} quick={args.quick} repeat={args.repeat} "
        f"cores={n} "
        f"load average at start: {loadavg()}"
    )
    rng = np.random.default_rng(args.seed)
    base = Path(tempfile.mkdtemp(prefix="svbench-throughput-"))
    try:
        corpus_dir = base / "corpus"
        corpus_dir.mkdir()
        if args.quick:
            corpora = [
                build_long(corpus_dir, 1, 20.5, 21.0, rng),
                build_short(corpus_dir, 10, rng),
                build_hardcut(corpus_dir, 10, rng),
            ]
        else:
            corpora = full_corpora(corpus_dir, rng)
        corpora = [c for c in corpora if not args.corpus or c.name in args.corpus]
        warmup = build_warmup(corpus_dir)
        engines = ["whisper", "pocketsphinx"] if args.engine == "both" else [args.engine]
        for engine in engines:
            bench_engine(engine, corpora, base, warmup, n, args.repeat)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"decode_throughput: load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
