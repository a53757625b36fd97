"""refreshstreams latency for 1k and 10k streams against a real svserver, idle and decoding.

Prints the median and worst of several refreshes of N streams in one request
(target: 10k in <= 0.25 s on a 2-core machine while the server decodes its
queue). The server is the default one (Whisper, its default workers). Each N
is measured twice in the same run: while the workers decode the queued
streams (as operators run it: the daemon refreshes a backlog that is being
decoded), then with every stream paused and the workers idle.

Run: python -m benchmarks.refresh [--engine pocketsphinx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from svwatchd.client import Stream
from svwatchd.client.server import Server
from svwatchd.server._engines import default_workers_and_threads
from tests.conftest import TESTDATA
from tests.svserver import SvServer


def _times(server: Server, streams: list[Stream]) -> list[float]:
    times = []
    for _ in range(25):
        began = time.perf_counter()
        server.refreshstreams(streams)
        times.append(time.perf_counter() - began)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="whisper", help="svserver's engine (default whisper)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    base = Path(tempfile.mkdtemp(prefix="svbench-"))
    root = base / "root"
    root.mkdir()
    shutil.copy(TESTDATA / "001.wav", root / "a.wav")
    workers = default_workers_and_threads(os.cpu_count() or 1)[0]
    srv = SvServer(
        base / "data", engine=args.engine, args=["--allow-root", str(root)], workers=workers
    ).start()
    print(f"svserver: {args.engine}, {workers} workers")
    try:
        with Server(srv.url, timeout=120) as server:
            streams: list[Stream] = []
            while len(streams) < 10_000:
                batch = [Stream(root / "a.wav", bench="refresh") for _ in range(1000)]
                server.decodestreams(batch)
                streams += batch
            status = f"{srv.url}/v1/status"
            while not httpx.get(status, timeout=30).json()["jobs_done"]:
                time.sleep(0.2)  # measured once the workers are into the queue
            before = httpx.get(status, timeout=30).json()
            decoding = {n: _times(server, streams[-n:]) for n in (1_000, 10_000)}
            after = httpx.get(status, timeout=30).json()
            server.pausestreams(streams)  # a steady table: nothing decodes meanwhile
            while httpx.get(f"{srv.url}/v1/status", timeout=30).json()["workers_busy"]:
                time.sleep(0.2)
            idle = {n: _times(server, streams[-n:]) for n in (1_000, 10_000)}
            for n in (1_000, 10_000):
                for label, times in (("decoding", decoding[n]), ("idle", idle[n])):
                    print(
                        f"refreshstreams n={n:>6} ({label:>8}): median "
                        f"{statistics.median(times):.3f} s, worst {max(times):.3f} s (one request)"
                    )
            print(
                f"while measured: {after['jobs_done'] - before['jobs_done']} decode jobs done, "
                f"workers busy {before['workers_busy']} -> {after['workers_busy']}"
            )
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
