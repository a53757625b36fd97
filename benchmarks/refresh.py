"""refreshstreams latency for 1k and 10k streams against a real svserver.

Prints the median and worst of several refreshes of N streams in one request
(target: 10k in <= 0.25 s on a 2-core machine). Run: python -m benchmarks.refresh
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.conftest import TESTDATA
from tests.svserver import SvServer


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="svbench-"))
    root = base / "root"
    root.mkdir()
    shutil.copy(TESTDATA / "001.wav", root / "a.wav")
    srv = SvServer(base / "data", args=["--allow-root", str(root)], workers=1).start()
    try:
        with Server(srv.url, timeout=120) as server:
            server.setparams(maxactive=1)
            streams: list[Stream] = []
            for n in (1_000, 10_000):
                while len(streams) < n:
                    batch = [Stream(root / "a.wav", bench="refresh") for _ in range(1000)]
                    server.decodestreams(batch)
                    server.pausestreams(batch)  # a steady table: nothing decodes meanwhile
                    streams += batch
                times = []
                for _ in range(7):
                    began = time.perf_counter()
                    server.refreshstreams(streams[:n])
                    times.append(time.perf_counter() - began)
                print(
                    f"refreshstreams n={n:>6}: median {statistics.median(times):.3f} s, "
                    f"worst {max(times):.3f} s (one request)"
                )
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
