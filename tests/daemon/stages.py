"""The daemon's stages assembled without its loop, for tests that drive them step by step.

Real parts throughout: a real journal (SQLite), a real svserver (the caller's),
real files, the daemon's own Watches, Submitter (with its sender thread) and
Collector. What the loop would do each turn, a test does by calling `turn`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog

from svwatchd.client.server import Server
from svwatchd.daemon._collect import Collector
from svwatchd.daemon._config import Policy, WatchConfig
from svwatchd.daemon._identity import identify
from svwatchd.daemon._journal import FileRecord, FileState, Journal
from svwatchd.daemon._link import Reachability
from svwatchd.daemon._metrics import DaemonMetrics
from svwatchd.daemon._submit import Submitter
from svwatchd.daemon._watches import Watches


@dataclass
class Stages:
    journal: Journal
    watch: WatchConfig
    server: Server
    metrics: DaemonMetrics
    submitter: Submitter
    collector: Collector

    def record(self, *paths: Path) -> None:
        """What ingest does with settled files: hash them and record them PENDING."""
        self.journal.upsert_seen_batch([(identify(p), self.watch.id) for p in paths])

    def row(self, path: Path) -> FileRecord:
        return self.journal.latest_many([str(path)])[str(path)]

    def until(self, cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Turn the stages (submit, refresh, drain) until ``cond`` holds."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.submitter.step()
            time.sleep(0.05)

    def submitted(self, *paths: Path) -> None:
        """Turn the submitter until these files are in flight."""
        self.until(lambda: all(self.row(p).state is FileState.INFLIGHT for p in paths), "in flight")

    def on_server(self, path: Path) -> tuple[str, int]:
        """(status, attempts) of the file's stream as the server records it."""
        sid = self.row(path).stream_id
        body = httpx.post(f"{self.server.url}/v1/streams/refresh", json={"ids": [sid]}).json()
        (record,) = body["streams"]
        return str(record["status"]), int(record["attempts"])


@contextmanager
def stages(
    base: Path, url: str, *, policy: Policy | None = None, metadata: dict[str, Any] | None = None
) -> Iterator[Stages]:
    """Stages for one watch ``base/inbox`` (outputs in ``base/out``), talking to ``url``."""
    watch = WatchConfig(
        path=base / "inbox", output_dir=base / "out", metadata=metadata or {}, formats=("txt",)
    )
    journal = Journal(base / "state")
    watches = Watches([watch], complete=lambda path: False)
    log = structlog.get_logger("svwatchd")
    metrics = DaemonMetrics()
    server = Server(url, timeout=30)
    reach = Reachability(log)
    submitter = Submitter(
        journal,
        watches,
        log,
        metrics,
        server=lambda: server,
        reach=reach,
        policy=lambda: policy or Policy(),
    )
    collector = Collector(
        journal, watches, log, metrics, server=lambda: server, policy=lambda: policy or Policy()
    )
    try:
        yield Stages(journal, watch, server, metrics, submitter, collector)
    finally:
        submitter.close()
        server.close()
        journal.close()
