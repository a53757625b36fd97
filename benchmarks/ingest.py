"""Ingest latency and rate of svwatchd, against raw watchdog in the same run; journal memory.

Drops small WAV files (closed after writing) into a watched folder and
measures for each file the time from its close to the ``stream.submitted``
log line (the server has acknowledged the stream). The server is the default
one (Whisper, its default workers) decoding the files meanwhile, as operators
run it (``--engine pocketsphinx`` for the light one).

- A burst (N files as fast as the writer goes): files per second (target
  >= 1,000); a burst's p99 is its drain time, so it is judged by its rate.
- A steady pace (``--rates``, files/s, for ``--seconds`` each, below
  capacity): p50 and p99 (targets at 500 files/s: p50 <= 30 ms, p99 <= 150
  ms; at 100 files/s: p99 <= 100 ms). A stall anywhere on the path shows here.

In the same run a plain watchdog observer on the same folder measures close
-> FileClosedEvent: the floor any watcher pays. Then the daemon's RSS with
100k journal rows (target <= 100 MB).

Run: python -m benchmarks.ingest [--quick] [--rates 5,100,500] [--burst 2000]
     [--profile DIR]  (py-spy records the daemon and svserver during each run)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml
from watchdog.events import FileClosedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from svwatchd.server._engines import default_workers_and_threads
from tests.conftest import TESTDATA
from tests.svserver import SvServer


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Raw(FileSystemEventHandler):
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self.seen.setdefault(os.fsdecode(event.src_path), time.time())


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data[:44] + os.urandom(2) + data[46:])  # distinct content per file


def run(
    n: int,
    base: Path,
    srv: SvServer,
    *,
    rate: float | None = None,
    profile: Path | None = None,
) -> None:
    """Drop ``n`` files, at ``rate`` files/s (None: as fast as the writer goes)."""
    label = f"n{n}" if rate is None else f"r{rate:g}"
    work = base / label
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    config = {
        "server": {"url": srv.url, "timeout": "30s"},
        "state_dir": str(work / "state"),
        "refresh_interval": "2s",
        "rescan_interval": "1h",
        "log": {"format": "json", "level": "info"},
        "policy": {"max_inflight": n + 10},
        "watches": [
            {
                "path": str(inbox),
                "settle": "2s",
                "output": {"dir": str(work / "out"), "formats": ["txt"]},
            }
        ],
    }
    cfg = work / "svwatchd.yaml"
    cfg.write_text(yaml.safe_dump(config))
    log = work / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "svwatchd.daemon._cli", "run", "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    while "daemon.ready" not in log.read_text(errors="replace"):
        time.sleep(0.1)
    raw = _Raw()
    observer = Observer()
    observer.schedule(raw, str(inbox))
    observer.start()
    spies = _spy(profile, label, [daemon.pid, srv.proc.pid if srv.proc else 0])
    data = (TESTDATA / "001.wav").read_bytes()
    closed: dict[str, float] = {}
    began = time.time()
    for i in range(n):
        if rate is not None:
            lag = began + i / rate - time.time()
            if lag > 0:
                time.sleep(lag)
        path = inbox / f"f{i:06d}.wav"
        _write(path, data)
        closed[str(path)] = time.time()
    wrote = time.time() - began
    deadline = time.time() + 600
    submitted: dict[str, float] = {}
    with open(log, "rb") as reader:  # read as it grows: re-reading it all would compete for CPU
        pending = b""
        while len(submitted) < n and time.time() < deadline:
            time.sleep(0.5)
            pending += reader.read()
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if b'"stream.submitted"' in line:
                    e = json.loads(line)
                    ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
                    submitted[e["path"]] = ts
    observer.stop()
    observer.join()
    for spy in spies:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    rss = _rss_mb(daemon.pid)
    daemon.terminate()
    daemon.wait(60)
    lat = [submitted[p] - closed[p] for p in closed if p in submitted]
    raw_lat = [raw.seen[p] - closed[p] for p in closed if p in raw.seen]
    span = max(submitted.values()) - began if submitted else float("nan")
    pace = "as fast as the writer goes" if rate is None else f"at {rate:g} files/s"
    print(
        f"ingest n={n} {pace}: written in {wrote:.1f} s; acknowledged {len(lat)}/{n} in "
        f"{span:.1f} s = {len(lat) / span:.0f} files/s"
        + (" (target >= 1000)" if rate is None else "")
    )
    print(
        f"  close -> stream acknowledged: p50 {_pct(lat, 0.5) * 1000:.0f} ms, "
        f"p99 {_pct(lat, 0.99) * 1000:.0f} ms"
    )
    # The rate above is capped by the writer when the daemon keeps up with it; the
    # backlog left when writing ended, and how fast it drained, show the daemon's own pace.
    end = began + wrote
    left = sorted(t for t in submitted.values() if t > end)
    if len(left) > 1:
        print(
            f"  backlog when writing ended: {len(left)} files, drained at "
            f"{len(left) / (left[-1] - end):.0f} files/s"
        )
    if raw_lat:
        r99 = _pct(raw_lat, 0.99)
        print(
            f"  close -> raw watchdog event: p50 {_pct(raw_lat, 0.5) * 1000:.1f} ms, "
            f"p99 {r99 * 1000:.1f} ms (target: daemon p99 <= 3x raw p99 = {3 * r99 * 1000:.0f} ms)"
        )
    print(f"  daemon RSS at the end: {rss:.0f} MB")


def _spy(profile: Path | None, label: str, pids: list[int]) -> list[subprocess.Popen[bytes]]:
    """py-spy recording each process (daemon, svserver) while files are dropped."""
    if profile is None:
        return []
    profile.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "speedscope",
                "--output",
                str(profile / f"{label}-{name}.json"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in zip(["daemon", "svserver"], pids, strict=True)
        if pid
    ]


def journal_memory() -> None:
    code = """
import sys
from svwatchd.daemon._identity import FileIdentity
from svwatchd.daemon._journal import FileState, Journal
def rss(f="VmRSS:"):
    for line in open("/proc/self/status"):
        if line.startswith(f):
            return int(line.split()[1]) / 1024
j = Journal(sys.argv[1])
for first in range(0, 100_000, 900):  # transactions of 900, as a burst is recorded
    j.upsert_seen_batch([
        (FileIdentity(f"/w/d{i % 100}/f{i:06d}.wav", i, i, i, 1, f"sha256:{i:064x}"), "/w")
        for i in range(first, min(first + 900, 100_000))])
j.known_paths("/w"); j.counts_by_watch(); j.by_state(FileState.PENDING, limit=1000)
import svwatchd.daemon._runner  # the daemon's own imports, for a fair figure
print(f"{rss():.1f} {rss('VmHWM:'):.1f}")
"""
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [sys.executable, "-c", code, d], capture_output=True, text=True, check=True
        ).stdout.split()
    print(
        f"daemon process with 100k journal rows: RSS {out[0]} MB, peak {out[1]} MB "
        "(target <= 100 MB)"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--engine", default="whisper", help="svserver's engine (default whisper)")
    parser.add_argument("--rates", default="5,100,500", help="steady paces, files/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each paced run")
    parser.add_argument("--burst", type=int, default=2_000, help="files in the burst (0: none)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy profiles here")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    base = Path(tempfile.mkdtemp(prefix="svingest-"))
    workers = default_workers_and_threads(os.cpu_count() or 1)[0]
    srv = SvServer(
        base / "sv", engine=args.engine, args=["--allow-root", str(base)], workers=workers
    ).start()
    print(f"svserver: {args.engine}, {workers} workers, decoding the files as they come")
    try:
        if args.quick:
            run(200, base, srv)
            run(100, base, srv, rate=50.0)
        else:
            if args.burst:
                run(args.burst, base, srv, profile=args.profile)
            for rate in [float(r) for r in args.rates.split(",") if r]:
                run(int(rate * args.seconds), base, srv, rate=rate, profile=args.profile)
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)
    journal_memory()
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
