"""The cost of the foreign-speech check on an English backlog, and its false alarms.

svserver with tiny.en alone checks a clip for foreign speech when tiny.en was
unsure of its words (mean word probability under 0.8): Whisper base detects
the language on the clip's first 30 s of speech (base is loaded in each
worker on the first clip that needs it; that load is part of the cost, as an
operator would pay it). What is measured, on the same English corpora as
``decode_throughput`` (LONG: 60-90 s files of continuous read speech; SHORT:
short card and command clips, which tiny.en is often unsure of; HARDCUT: 4-6 s
clips cut back to back from read speech, cut words at their edges):

* throughput (audio seconds per wall second) of a default svserver against
  one started with ``--no-language-check``, in alternating rounds in one run
  (each side's best round counts);
* how many English files the check wrongly flagged (``language_mismatch`` in
  their stats): false alarms;
* worker memory with the check on, after each corpus (base loaded or not).

Target (issue 14): the check costs at most 10 % of throughput.

Run: ``python -m benchmarks.language_check [--quick] [--workers N]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import cores, loadavg, memory_line, wait_done
from benchmarks.decode_throughput import (
    Corpus,
    build_hardcut,
    build_long,
    build_short,
    build_warmup,
    full_corpora,
    warm_server,
    wer,
)
from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.svserver import SvServer

TARGET = 0.9
"""Throughput with the check over throughput without it."""


def run(server: Server, corpus: Corpus, round_: int) -> tuple[float, list[str], int]:
    """Decode ``corpus``; wall seconds (server end times), texts, files flagged foreign."""
    streams = [Stream(p, bench="check", round=round_) for p in corpus.paths]
    began_wall = time.time()
    server.decodestreams(streams)
    wait_done(server, streams)
    failed = [s for s in streams if not s.isdone()]
    if failed:
        raise RuntimeError(f"{len(failed)} streams failed, e.g. {failed[0]}: {failed[0].error}")
    wall = max(s.end.timestamp() for s in streams if s.end is not None) - began_wall
    texts = [" ".join(u.text for u in server.utterances(s)) for s in streams]
    flagged = sum(1 for s in streams if s.stats().get("language_mismatch") is not None)
    return wall, texts, flagged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, smaller corpora")
    parser.add_argument("--workers", type=int, default=cores())
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else 2
    rng = np.random.default_rng(14)
    base = Path(tempfile.mkdtemp(prefix="svw-check-"))
    try:
        audio = base / "audio"
        audio.mkdir()
        if args.quick:
            corpora = [build_long(audio, 3, 60, 90, rng), build_short(audio, 40, rng)]
            corpora.append(build_hardcut(audio, 30, rng))
        else:
            corpora = full_corpora(audio, rng)
        warmup = build_warmup(audio)
        cache = base / "models"
        common = ["--allow-root", str(audio), "--model-cache", str(cache)]
        servers = {
            "check on": SvServer(base / "on", engine="whisper", args=common, workers=args.workers),
            "check off": SvServer(
                base / "off",
                engine="whisper",
                args=[*common, "--no-language-check"],
                workers=args.workers,
            ),
        }
        print(f"cores {cores()}, workers {args.workers}, load at start {loadavg()}")
        for srv in servers.values():
            srv.start(timeout=300)
        try:
            for label, srv in servers.items():
                with Server(srv.url) as server:
                    warm_server(server, warmup, args.workers)
                    info = server.sysinfo()["engine"]
                    print(f"{label}: language_check = {info.get('language_check')}")
            for corpus in corpora:
                best: dict[str, float] = {}
                texts: dict[str, list[str]] = {}
                flagged: dict[str, int] = {}
                for r in range(rounds):
                    order = list(servers) if r % 2 == 0 else list(reversed(servers))
                    for label in order:
                        with Server(servers[label].url) as server:
                            wall, said, bad = run(server, corpus, r)
                        best[label] = min(best.get(label, wall), wall)
                        texts[label], flagged[label] = said, bad
                refs = [i.reference for i in corpus.items]
                print(
                    f"\n{corpus.name}: {len(corpus.items)} files, {corpus.seconds:.0f} s of audio"
                )
                for label in servers:
                    xrt = corpus.seconds / best[label]
                    print(
                        f"  {label:9s}: {best[label]:7.1f} s wall, {xrt:5.1f}x real time, "
                        f"WER {wer(refs, texts[label]):.3f}, "
                        f"flagged foreign {flagged[label]} of {len(corpus.items)}"
                    )
                ratio = best["check off"] / best["check on"]
                verdict = "met" if ratio >= TARGET else "MISSED"
                print(
                    f"  throughput with the check / without: {ratio:.2f} (>= {TARGET}: {verdict})"
                )
                on = servers["check on"]
                with Server(on.url) as server:
                    pids = [int(p) for p in server.sysinfo()["engine"].get("worker_pids", [])]
                print("  " + memory_line("check-on workers", pids))
        finally:
            for srv in servers.values():
                srv.stop()
        print(f"\nload at end {loadavg()}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
