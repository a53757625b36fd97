"""The OpenAI-compatible endpoint's overhead against ``svctl decode --wait``, same short file.

What is measured: a real svserver with its defaults (Whisper tiny.en, one
worker per core, 1 thread each) on 127.0.0.1, and one short clip (``001.wav``,
"ten of clubs", 1.4 s). Three ways of getting its transcript, each timed from
the call to the transcript in hand, interleaved request by request (so a
change in the machine's load touches all three alike):

* ``openai``: the real ``openai`` SDK's ``audio.transcriptions.create``
  (multipart upload, the response waits for the stream);
* ``svctl``: ``svctl decode --wait FILE`` run in this process (its ``main``;
  a new Python process would add its start-up to every request), the server
  reading the file at its path (``--allow-root``);
* ``svctl --upload``: the same with the file's bytes sent, as the OpenAI
  route must;
* ``listen``: the client library without polling: ``Server.decodestreams``
  (path), then ``Stream.listen()`` to the stream's end (svserver pushes each
  commit), the tightest native path, so ``openai`` minus ``listen`` is what
  the endpoint itself costs (``svctl --wait`` refreshes every 0.3 s).

Printed: p50 and p95 of each over N requests (50 by default, after 3 not
measured), the OpenAI p50 minus each svctl p50 (target: within 20 ms of
``svctl decode --wait``), the load average before and after, and the cores.
Run: ``python -m benchmarks.openai_overhead [-n 50]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import openai

from benchmarks._common import TESTDATA, cores, loadavg, reference
from svwatchd._ctl import main as svctl
from svwatchd.client import Stream
from svwatchd.client.server import Server
from tests.normalise import normalise
from tests.svserver import SvServer

CLIP = "001.wav"
TARGET_MS = 20.0


def _svctl(url: str, path: Path, *, upload: bool) -> str:
    out = io.StringIO()
    args = ["--server", url, "decode", "--wait", *(["--upload"] if upload else []), str(path)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        if svctl(args) != 0:
            raise SystemExit(f"svctl failed on {path}")
    return out.getvalue()


def _listen(server: Server, path: Path) -> str:
    stream = Stream(path)
    server.decodestreams([stream])
    return " ".join(u.text for u in stream.listen())


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="measured requests per way (50)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="svbench-openai-"))
    root = base / "root"
    root.mkdir()
    clip = root / CLIP
    shutil.copy(TESTDATA / CLIP, clip)
    srv = SvServer(
        base / "data", engine="whisper", workers=cores(), args=["--allow-root", str(root)]
    ).start()
    print(f"cores {cores()}, load before {loadavg()}, clip {CLIP}, {args.n} requests each")
    try:
        with (
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0) as sdk,
            Server(srv.url, timeout=60) as server,
        ):
            ways: dict[str, Callable[[], str]] = {
                "openai": lambda: sdk.audio.transcriptions.create(
                    model="whisper-1", file=clip, response_format="text"
                ),
                "svctl": lambda: _svctl(srv.url, clip, upload=False),
                "svctl --upload": lambda: _svctl(srv.url, clip, upload=True),
                "listen": lambda: _listen(server, clip),
            }
            times: dict[str, list[float]] = {name: [] for name in ways}
            for i in range(args.n + 3):
                for name, way in ways.items():
                    began = time.perf_counter()
                    text = way()
                    took = time.perf_counter() - began
                    if normalise(text) != reference(CLIP):
                        raise SystemExit(f"{name} heard {text!r}, not {reference(CLIP)!r}")
                    if i >= 3:
                        times[name].append(took)
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)
    for name, values in times.items():
        print(
            f"{name:<15} p50 {1000 * statistics.median(values):7.1f} ms   "
            f"p95 {1000 * _p(values, 0.95):7.1f} ms"
        )
    ours = statistics.median(times["openai"])
    for other in ("svctl", "svctl --upload", "listen"):
        overhead = 1000 * (ours - statistics.median(times[other]))
        verdict = "met" if overhead <= TARGET_MS else "missed"
        print(
            f"openai p50 - {other} p50: {overhead:+.1f} ms "
            f"(target <= {TARGET_MS:.0f} ms: {verdict})"
        )
    print(f"load after {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
