"""``svwatchd run``: the daemon's loop, its start, its stop and its reload.

A thin loop around small steps, in this order each tick: take watch events,
record settled files (ingest), submit what room allows, and every
``refresh_interval`` collect finished streams and apply the policy; write
finished streams' outputs a slice at a time; hand due notifications to the
delivery thread; every ``rescan_interval`` rescan the watches as a backstop. Each step's state is in
the journal, so the loop itself holds nothing that a crash could lose.

Signals: SIGTERM/SIGINT stop gracefully (journal consistent, observers and
the embedded server stopped); SIGHUP reloads the config, adding and removing
watches without a restart (an invalid new config keeps the old one). Watches
are matched by identity (`WatchId`, the root path), so a reload that only
reorders them changes nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import structlog

from svwatchd._notify import Watchdog, notify
from svwatchd.daemon._collaborators import Log
from svwatchd.daemon._collect import Collector
from svwatchd.daemon._config import DaemonConfig, load_config
from svwatchd.daemon._ingest import Ingest
from svwatchd.daemon._journal import Journal
from svwatchd.daemon._link import Reachability, ServerLink
from svwatchd.daemon._metrics import DaemonMetrics
from svwatchd.daemon._notifier import Notifier
from svwatchd.daemon._outputs import read_output_records
from svwatchd.daemon._submit import Submitter
from svwatchd.daemon._watcher import Watcher
from svwatchd.daemon._watches import Watches
from svwatchd.errors import (
    ConfigError,
    JournalWriteError,
    ServerError,
    ServerRefusedError,
    ServerUnavailableError,
)

__all__ = [
    "DRAIN_SECONDS",
    "SLICE",
    "STALL_HOOK",
    "TICK",
    "Daemon",
]

TICK = 0.2  # the longest the loop sleeps when nothing is left to do
SLICE = 250  # settled files recorded per turn: a burst flows through in slices
DRAIN_SECONDS = 0.1  # finished streams handled per turn, at most this long
STALL_HOOK = "SVWATCHD_TEST_STALL"
"""TEST-ONLY: the name of an environment variable holding a file path; while that file
exists, the loop stalls before its next turn, as a hung step would (tests/test_watchdog.py
proves that systemd's watchdog pings stop then). Never set it in production."""


class Daemon:
    """One running svwatchd: config, journal, watches, server link.

    Everything here belongs to the thread that calls `run` (the loop); the
    submitter's sender thread only sends (see docs/architecture.md, "Threads
    and slices"). `stop` may be called from any thread.
    """

    def __init__(
        self,
        config: DaemonConfig,
        *,
        config_path: Path | None = None,
        wallclock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.wallclock = wallclock or (lambda: datetime.now(UTC))
        self.config_path = config_path
        self.log: Log = structlog.get_logger("svwatchd")
        self._stop = threading.Event()
        self._signalled_stop = False  # set by signal handlers: flags only, no locks
        self._signalled_reload = False
        self.notify: Callable[[str], object] = notify  # systemd; a no-op without NOTIFY_SOCKET
        self.watchdog = Watchdog()
        self.metrics = DaemonMetrics()
        self.journal: Journal | None = None
        self.watcher = Watcher(on_warning=self.log.warning)
        self.metadata_complete: set[str] = set()  # metadata files closed or moved in
        self.watches = Watches(config.watches, complete=self.metadata_complete.__contains__)
        self.link = ServerLink(
            config.server,
            config.state_dir,
            self.log,
            log_format=config.log.format,
            stopping=lambda: self.stopping,
        )
        self.reach = Reachability(self.log)
        self._stall = os.environ.get(STALL_HOOK)  # test-only (see STALL_HOOK)

    def _roots(self) -> list[Path]:
        return [w.path for w in self.watches]

    # -- run ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`stop`); returns the exit status."""
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        self.journal = journal = Journal(self.config.state_dir)
        self.link.start(self._roots())
        self.ingest = Ingest(
            journal,
            self.watches,
            self.log,
            self.metrics,
            metadata_complete=self.metadata_complete,
        )
        self.submitter = Submitter(
            journal,
            self.watches,
            self.log,
            self.metrics,
            server=self.link.current,
            reach=self.reach,
            policy=lambda: self.config.policy,
            wakeup=self.watcher.wakeup.set,
        )
        self.collector = Collector(
            journal,
            self.watches,
            self.log,
            self.metrics,
            server=self.link.current,
            policy=lambda: self.config.policy,
            wallclock=self.wallclock,
        )
        self.notifier = Notifier(
            journal, self.watches, self.log, self.metrics, wakeup=self.watcher.wakeup.set
        )
        self.metrics.init_watches(self.watches.ids)
        if self.config.metrics is not None:
            try:
                self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
            except OSError as exc:
                self.log.error(
                    "metrics.listen_failed",
                    listen=f"{self.config.metrics.host}:{self.config.metrics.port}",
                    error=str(exc),
                    detail="running without a metrics endpoint",
                )
        if journal.rebuilt_from_corruption or journal.size() == 0:
            # damaged, or gone (a new state_dir): refill from the outputs and the server
            self._rebuild()
        self._assign_watches()
        journal.release_held()  # held files are looked at again (a fix may have come since)
        self.notifier.start()  # deliveries a previous run owed: due now
        self._watch()
        self.log.info("daemon.ready", watches=self.watches.ids, server=self.link.url)
        self.notify("READY=1")
        try:
            self._loop()
        finally:
            self.notify("STOPPING=1")
            self.log.info("daemon.stopping")
            self.submitter.close()
            self.notifier.close()
            self.metrics.close()
            self.watcher.stop()
            self.link.close()
            journal.close()
        return 0

    def _watch(self) -> None:
        """Start the observers the watches need now and scan the folders of those started."""
        for spec in self.watcher.update(self.watches.specs()):
            watch = self.watches.get(spec.id)
            if watch is not None:
                self.ingest.scan(watch, rescan=False)

    def _assign_watches(self) -> None:
        """Every row belongs to the watch that contains its file (see Journal.assign_watches)."""
        assert self.journal is not None
        moved = self.journal.assign_watches(self.watches.ids)
        if moved:
            self.log.info("journal.reassigned", count=moved)

    def _loop(self) -> None:
        next_refresh = 0.0
        next_rescan = time.monotonic() + self.config.rescan_interval
        next_status = 0.0
        last_status = ""
        while not self.stopping:
            if self._signalled_reload:
                self._signalled_reload = False
                self.reload()
            now = time.monotonic()
            self.watcher.wakeup.clear()  # before draining: a later change wakes the next wait
            more = False
            try:
                self.ingest.take(self.watcher.drain())
                self.ingest.step(limit=SLICE)
                if self.ingest.metadata_changed:
                    self._release_held()
                more = self.submitter.step()
                if now >= next_refresh:
                    next_refresh = now + self.config.refresh_interval
                    if self.collector.step():
                        self.reach.refreshed()
                    self._gauges()
                    self.ingest.forget_quiet_folders()
                more = self.collector.drain(DRAIN_SECONDS) or more
                self.notifier.step()  # never waits for a receiver: the thread does
                if now >= next_rescan:
                    next_rescan = now + self.config.rescan_interval
                    self.ingest.rescan_all()
                more = more or self.ingest.has_due()
                if not self.submitter.sending:
                    self.link.close_retired()  # no batch holds a replaced client any more
            except ServerUnavailableError as exc:
                self.reach.unreachable(exc)
            except ServerRefusedError as exc:
                self.log.error("server.refused", error=str(exc), status=exc.status_code)
            except JournalWriteError as exc:
                self.log.error(
                    "journal.write_failed", error=str(exc), path=exc.path, free_bytes=exc.free_bytes
                )
                self._pause(5.0)  # retried from a clean state (the journal reopens)
            except Exception:  # a bug must not stop the service: log it loudly, go on
                self.log.exception("daemon.step_failed")
                self._pause(1.0)
            while self._stall and os.path.exists(self._stall) and not self.stopping:
                time.sleep(0.05)  # test-only: a hung loop (STALL_HOOK)
            self.watchdog.kick()  # the loop turns: systemd's watchdog stays quiet
            if now >= next_status or not more:
                next_status = now + 1.0
                status = self.status_line()
                if status != last_status:
                    self.notify(f"STATUS={status}")
                    last_status = status
            if not more:
                self.watcher.wakeup.wait(TICK)  # a change wakes us at once

    def _gauges(self) -> None:
        assert self.journal is not None
        self.metrics.set_journal_rows(self.journal.size())
        self.metrics.set_file_states(self.journal.counts_by_watch())
        self.metrics.set_server_up(self.reach.reachable)
        self.metrics.set_notify_pending(self.notifier.pending())

    def _release_held(self) -> None:
        assert self.journal is not None
        for watch in self.ingest.metadata_changed:
            if self.watches.get(watch) is not None:
                n = self.journal.release_held(watch=watch)
                if n:
                    self.log.info("file.released", count=n, watch=watch)
        self.ingest.metadata_changed.clear()

    def _rebuild(self) -> None:
        assert self.journal is not None
        outputs = [rec for w in self.watches for rec in read_output_records(w.output_dir)]
        try:
            streams = [
                {"id": s.id, "status": s.status.value if s.status else None, "source": s.source}
                for s in self.link.current().getstreams()
            ]
        except ServerError:
            streams = []
        if not outputs and not streams:
            return
        report = self.journal.rebuild(outputs, streams)
        corrupt = self.journal.corrupt_path
        if corrupt is None and not (report.done or report.failed or report.inflight):
            return  # a new state_dir and nothing of ours on the server: nothing to say
        self.log.warning(
            "journal.rebuilt",
            corrupt_copy=str(corrupt) if corrupt else None,
            done=report.done,
            failed=report.failed,
            inflight=report.inflight,
        )

    def status_line(self) -> str:
        """One line for systemd's STATUS=: pending / in flight / done / errors."""
        assert self.journal is not None
        totals: dict[str, int] = {}
        for per_state in self.journal.counts_by_watch().values():
            for state, n in per_state.items():
                totals[state] = totals.get(state, 0) + n
        reach = {True: "up", False: "down", None: "?"}[self.reach.reachable]
        return (
            f"pending {totals.get('PENDING', 0) + totals.get('HELD', 0)}, in flight "
            f"{totals.get('SUBMITTING', 0) + totals.get('INFLIGHT', 0)}, done "
            f"{totals.get('DONE', 0)}, errors {totals.get('FAILED', 0)}; server {reach}"
        )

    # -- signals and reload -----------------------------------------------------------------

    def _install_signals(self) -> None:
        # A handler runs in the main thread between two bytecodes, possibly while that
        # thread holds an Event's internal lock (the loop clears and waits on
        # watcher.wakeup all the time): setting an Event here could deadlock the daemon
        # on SIGTERM. So the handlers only set flags; the loop waits at most TICK.
        def stop(signum: int, _: FrameType | None) -> None:
            self._signalled_stop = True

        def hup(signum: int, _: FrameType | None) -> None:
            self._signalled_reload = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def stop(self) -> None:
        """Ask the loop to stop (what SIGTERM does); for other threads, not signal handlers."""
        self._stop.set()
        self.watcher.wakeup.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (by :meth:`stop` or a signal)."""
        return self._signalled_stop or self._stop.is_set()

    def _pause(self, seconds: float) -> None:
        """Sleep after a failed step, waking within TICK of a stop."""
        until = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < until:
            self._stop.wait(TICK)

    def reload(self) -> None:
        """Load the config again; on success swap watches, else keep the old config."""
        if self.config_path is None:
            return
        self.notify("RELOADING=1")
        try:
            self._reload_config()
        finally:
            self.notify("READY=1")

    def _reload_config(self) -> None:
        assert self.config_path is not None
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.log.error(
                "config.invalid",
                path=str(self.config_path),
                error=str(exc),
                detail="keeping the running config",
            )
            return
        if new.state_dir != self.config.state_dir:
            self.log.warning("config.state_dir_unchanged", detail="a restart changes state_dir")
            new = replace(new, state_dir=self.config.state_dir)
        if new.server != self.config.server:
            self.log.warning("config.server_unchanged", detail="a restart changes server")
            new = replace(new, server=self.config.server)
        self.config = new
        removed = self.watches.update(new.watches)  # by identity: order does not matter
        self.ingest.forget(removed)
        self.link.set_roots(self._roots())
        self._assign_watches()
        self.metrics.init_watches(self.watches.ids)
        self._watch()
        self.log.info("config.reloaded", path=str(self.config_path), watches=self.watches.ids)
