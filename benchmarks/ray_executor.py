"""svserver's decode workers as Ray actors against its local worker pool, and scale on paper.

1. Throughput, both sides in one run: the LONG and SHORT corpora of
   ``benchmarks/decode_throughput.py`` (the same builders and seed) through two
   real svservers started side by side, ``--executor local`` (2 worker
   processes) and ``--executor ray`` (a private one-node Ray, 2 actors), the
   two taking turns corpus by corpus, ``--repeat`` rounds, best round each
   (other work on a shared machine only slows a run down). Target: ray/local
   >= 0.95 on both corpora. Each server is warm first (every worker decodes
   the warm-up file once).
2. Memory: the Ray svserver's process tree from /proc, split into svserver,
   its Ray driver process, its decode actors, and Ray's own processes (GCS, raylet with its object
   store, agents, idle workers Ray keeps started); the local pool's workers for
   comparison. RSS, so shared pages count in each process.
3. Per-call overhead: the same executor classes in this process (a
   ``RayDriver``, its driver process on a private Ray, and a ``WorkerPool``),
   2 workers each, one call at a time of 0.5 s of silence (the engine's VAD finds nothing, so the
   call is nearly all transport): latency p50/p99 of each and the difference.
4. Scale on paper (:mod:`benchmarks._headcost`): svserver's own per-stream
   cost with a STAND-IN engine that returns at once, as streams/s the head
   sustains; with the per-actor speed measured in 1., the number of workers
   that saturates one svserver for 5 s clips and for 10 min files (a long
   file is committed piece by piece, 60 s a piece, each piece one head
   transaction, taken to cost what one short stream costs).

Run: ``python -m benchmarks.ray_executor [--engine whisper|pocketsphinx] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._common import cores, loadavg, proc_memory
from benchmarks._headcost import head_streams_per_second
from benchmarks.decode_throughput import (
    Corpus,
    build_long,
    build_short,
    build_warmup,
    full_corpora,
    server_run,
    warm_server,
    wer,
)
from svwatchd._logs import configure_logging
from svwatchd.client.server import Server
from svwatchd.server._engines import Audio, EngineConfig, WorkerPool
from svwatchd.server._engines.raysettings import RaySettings
from tests.svserver import SvServer

TARGET = 0.95
WORKERS = 2
PIECE_SECONDS = 60.0


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def ray_memory(server_pid: int) -> dict[str, tuple[int, float]]:
    """The Ray svserver's tree by role: (processes, MiB of RSS)."""
    roles: dict[str, tuple[int, float]] = {}
    for pid in [server_pid, *children(server_pid)]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pid == server_pid:
            role = "svserver"
        elif "DecodeActor" in cmd:
            role = "decode actors"
        elif "spawn_main" in cmd:
            role = "svserver's Ray driver"
        else:
            role = "Ray's own"
        n, mib = roles.get(role, (0, 0.0))
        roles[role] = (n + 1, mib + proc_memory(pid)[0])
    return roles


def overhead(engine: str, base: Path, calls: int) -> None:
    """Per-call latency of a 0.5 s silent clip, one call at a time, pool and Ray."""
    clip: Audio = np.zeros(8000, dtype=np.float32)
    config = EngineConfig(name=engine, threads=1)  # the same for both
    results: dict[str, list[float]] = {}
    pool = WorkerPool(config, workers=WORKERS)
    try:
        results["local"] = _latencies(pool.submit, clip, calls)
    finally:
        pool.close()
    from svwatchd.server._engines.raydriver import RayDriver

    ray = RayDriver(config, RaySettings(workers=WORKERS), base / "overhead")
    try:
        results["ray"] = _latencies(ray.submit, clip, calls)
    finally:
        ray.close()
    for name, lat in results.items():
        print(f"[{engine}] per-call latency {name}: p50 {_pct(lat, 50):.2f} ms, "
              f"p99 {_pct(lat, 99):.2f} ms ({calls} calls)")  # fmt: skip
    for p in (50, 99):
        extra = _pct(results["ray"], p) - _pct(results["local"], p)
        print(f"[{engine}] RESULT per-call overhead of Ray p{p}: {extra:+.2f} ms")


def _latencies(
    submit: Callable[[list[Audio]], Future[Any]], clip: Audio, calls: int
) -> list[float]:
    for _ in range(10):  # warm both workers
        submit([clip]).result(120)
    out = []
    for _ in range(calls):
        began = time.perf_counter()
        submit([clip]).result(120)
        out.append((time.perf_counter() - began) * 1000)
    return out


def _pct(values: list[float], p: int) -> float:
    """The ``p``th percentile (1..99)."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def throughput(
    engine: str, corpora: list[Corpus], base: Path, warmup: Path, repeat: int
) -> dict[str, float]:
    """Both servers, taking turns; prints every round and the ratios; returns each
    corpus's best Ray figure (x real time, ``LONG``/``SHORT``)."""
    args = ["--allow-root", str(base)]
    servers = {
        "local": SvServer(base / "data-local", engine=engine, args=args, workers=WORKERS),
        "ray": SvServer(
            base / "data-ray",
            engine=engine,
            args=[*args, "--executor", "ray", "--ray-workers", str(WORKERS)],
            workers=WORKERS,
        ),
    }
    best: dict[tuple[str, str], float] = {}
    try:
        for name, srv in servers.items():
            began = time.monotonic()
            srv.start(timeout=600)
            with Server(srv.url) as client:
                warm_server(client, warmup, WORKERS)
            print(f"[{engine}] {name} svserver ready and warm in {time.monotonic() - began:.1f} s")
        for corpus in corpora:
            refs = [i.reference for i in corpus.items]
            print(f"[{engine}] {corpus.name}: {len(corpus.items)} files, "
                  f"{corpus.seconds:.1f} s of audio, load {loadavg()}")  # fmt: skip
            for round_ in range(1, repeat + 1):
                for name, srv in servers.items():
                    with Server(srv.url) as client:
                        wall, texts, how = server_run(client, corpus)
                    x = corpus.seconds / wall
                    best[name, corpus.name] = max(best.get((name, corpus.name), 0.0), x)
                    print(f"[{engine}] {corpus.name} round {round_} {name}: {wall:.2f} s "
                          f"({how}), {x:.1f}x real time, WER {wer(refs, texts):.3f}, "
                          f"load {loadavg()}")  # fmt: skip
            ratio = best["ray", corpus.name] / best["local", corpus.name]
            verdict = "met" if ratio >= TARGET else "MISSED"
            print(f"[{engine}] {corpus.name} RESULT local {best['local', corpus.name]:.1f}x, "
                  f"ray {best['ray', corpus.name]:.1f}x real time: ratio {ratio:.3f} "
                  f"(target >= {TARGET}: {verdict})")  # fmt: skip
        _memory(engine, servers)
    finally:
        for srv in servers.values():
            srv.stop()
    return {c.name: best["ray", c.name] for c in corpora}


def _memory(engine: str, servers: dict[str, SvServer]) -> None:
    local = servers["local"]
    assert local.proc is not None and servers["ray"].proc is not None
    pids = httpx.get(f"{local.url}/v1/sysinfo", timeout=10).json()["engine"]["worker_pids"]
    rss = sum(proc_memory(p)[0] for p in [local.proc.pid, *pids])
    print(f"[{engine}] memory local: svserver + {len(pids)} workers {rss:.0f} MiB RSS")
    for role, (n, mib) in ray_memory(servers["ray"].proc.pid).items():
        print(f"[{engine}] memory ray: {role}: {n} process(es), {mib:.0f} MiB RSS")


def scale(head: float, per_actor: dict[str, float]) -> None:
    """The table: what one svserver head feeds, from measured figures."""
    print(f"scale: svserver's head sustains {head:.0f} streams/s (STAND-IN engine, measured)")
    print("scale: | work | one actor decodes | head transactions per item | "
          "items/s the head sustains | actors that saturate it |")  # fmt: skip
    for label, x, seconds, pieces in (
        ("5 s clips", per_actor["SHORT"], 5.0, 1),
        ("10 min files", per_actor["LONG"], 600.0, int(600 / PIECE_SECONDS)),
    ):
        per_worker = x / seconds  # items per second one actor finishes
        sustained = head / pieces
        print(f"scale: | {label} | {x:.1f}x real time = {per_worker:.3f}/s | {pieces} | "
              f"{sustained:.1f}/s | {sustained / per_worker:.0f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["whisper", "pocketsphinx"], default="whisper")
    parser.add_argument("--quick", action="store_true", help="small corpora (a minute or two)")
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--repeat", type=int, default=None, help="rounds (default 2; quick 1)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 2)
    configure_logging("json", "warning")  # the in-process parts: no line per stream
    print(f"ray_executor: engine={args.engine} quick={args.quick} repeat={repeat} "
          f"cores={cores()} load average at start: {loadavg()}")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    base = Path(tempfile.mkdtemp(prefix="svbench-ray-"))
    try:
        corpus_dir = base / "corpus"
        corpus_dir.mkdir()
        if args.quick:
            corpora = [build_long(corpus_dir, 2, 40.0, 45.0, rng), build_short(corpus_dir, 20, rng)]
        else:
            corpora = [c for c in full_corpora(corpus_dir, rng) if c.name != "HARDCUT"]
        warmup = build_warmup(corpus_dir)
        best = throughput(args.engine, corpora, base, warmup, repeat)
        overhead(args.engine, base, 100 if args.quick else 300)
        heads = [head_streams_per_second(base / f"h{k}", 500 if args.quick else 2000)[0]
                 for k in range(repeat)]  # fmt: skip
        scale(max(heads), {name: x / WORKERS for name, x in best.items()})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"ray_executor: load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
