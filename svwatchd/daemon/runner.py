"""``svwatchd run``: the daemon's loop, its start, its stop and its reload.

A thin loop around small steps, in this order each tick: take watch events,
record settled files (ingest), submit what room allows, and every
``refresh_interval`` collect finished streams and apply the policy; every
``rescan_interval`` rescan the watches as a backstop. Each step's state is in
the journal, so the loop itself holds nothing that a crash could lose.

Signals: SIGTERM/SIGINT stop gracefully (journal consistent, observers and
the embedded server stopped); SIGHUP reloads the config, adding and removing
watches without a restart (an invalid new config keeps the old one).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from svwatchd.client.server import Server
from svwatchd.daemon.collect import Collector
from svwatchd.daemon.config import DaemonConfig, EmbeddedServer, WatchConfig, load_config
from svwatchd.daemon.embedded import EmbeddedServer as EmbeddedProcess
from svwatchd.daemon.ingest import Ingest
from svwatchd.daemon.journal import Journal
from svwatchd.daemon.metadata import MetadataResolver
from svwatchd.daemon.metrics import DaemonMetrics
from svwatchd.daemon.outputs import read_output_records
from svwatchd.daemon.submit import Submitter
from svwatchd.daemon.watcher import Watcher, WatchSpec
from svwatchd.errors import ConfigError, JournalWriteError, ServerError
from svwatchd.notify import Watchdog, notify

__all__ = [
    "DRAIN_SECONDS",
    "SLICE",
    "TICK",
    "Daemon",
]

TICK = 0.2  # the longest the loop sleeps when nothing is left to do
SLICE = 250  # settled files recorded per turn: a burst flows through in slices
DRAIN_SECONDS = 0.1  # finished streams handled per turn, at most this long


class Daemon:
    """One running svwatchd: config, journal, watches, server link."""

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
        self.log = structlog.get_logger("svwatchd")
        self._stop = threading.Event()
        self._signalled_stop = False  # set by signal handlers: flags only, no locks
        self._signalled_reload = False
        self.notify: Callable[[str], object] = notify  # systemd; a no-op without NOTIFY_SOCKET
        self.watchdog = Watchdog()
        self.metrics = DaemonMetrics()
        self.journal: Journal | None = None
        self.embedded: EmbeddedProcess | None = None
        self._server: Server | None = None
        self._server_lock = threading.RLock()
        self.watcher = Watcher(on_warning=self.log.warning)
        self._resolvers: dict[str, MetadataResolver] = {}

    # -- the server link ----------------------------------------------------------------

    def server(self) -> Server:
        """The client for the current server (the embedded one restarts on a new port).

        Called from the loop and from the submitter's sender thread: one restarts it."""
        with self._server_lock:
            embedded = self.embedded
            if embedded is not None and not embedded.alive() and not self.stopping:
                self.log.error(
                    "server.exited",
                    code=embedded.exit_code(),
                    detail="restarting the embedded svserver",
                )
                self._connect(embedded.restart(self._roots()))
            assert self._server is not None
            return self._server

    def _connect(self, url: str) -> None:
        if self._server is not None:
            self._server.close()
        server = self.config.server
        if isinstance(server, EmbeddedServer):
            self._server = Server(url, timeout=30)
        else:
            self._server = Server(url, token=server.token, timeout=server.timeout)

    def _roots(self) -> list[Path]:
        return [w.path for w in self.config.watches]

    # -- watches --------------------------------------------------------------------

    def _resolver(self, watch: str) -> MetadataResolver | None:
        return self._resolvers.get(watch)

    def _start_watches(self, watches: tuple[WatchConfig, ...]) -> None:
        self._resolvers = {
            str(w.path): MetadataResolver(
                w.path,
                w.metadata,
                filename=w.metadata_file,
                tags_from_path=w.tags_from_path,
                settle=w.settle,
                complete=lambda p: p in self.ingest.metadata_complete,
            )
            for w in watches
        }
        for i, w in enumerate(watches):
            self.watcher.add(
                WatchSpec(
                    i, w.path, w.recursive, w.selector, w.poll, w.excluded_dirs, w.metadata_file
                )
            )

    # -- run ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`stop`); returns the exit status."""
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        self.journal = journal = Journal(self.config.state_dir)
        server_cfg = self.config.server
        if isinstance(server_cfg, EmbeddedServer):
            self.embedded = EmbeddedProcess(
                self.config.state_dir,
                self._roots(),
                extra_args=server_cfg.args(),
                log_format=self.config.log.format,
            )
            self._connect(self.embedded.start())
        else:
            self._connect(server_cfg.url)
        self.ingest = Ingest(
            journal,
            self.config.watches,
            self.log,
            on_detected=lambda watch, path, fingerprint: self.metrics.detected(watch),
        )
        self.submitter = Submitter(
            journal,
            self.log,
            server=self.server,
            watches=lambda: self.config.watches,
            resolvers=self._resolver,
            policy=lambda: self.config.policy,
            wakeup=self.watcher.wakeup.set,
        )
        self.collector = Collector(
            journal,
            self.log,
            server=self.server,
            watches=lambda: self.config.watches,
            policy=lambda: self.config.policy,
            wallclock=self.wallclock,
        )
        self.submitter.metrics = self.collector.metrics = self.metrics
        self.metrics.init_watches(str(w.path) for w in self.config.watches)
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
        self._start_watches(self.config.watches)
        for i in range(len(self.config.watches)):
            self.ingest.scan(i, rescan=False)
        self.log.info(
            "daemon.ready",
            watches=[str(w.path) for w in self.config.watches],
            server=self._server.url if self._server else None,
        )
        self.notify("READY=1")
        try:
            self._loop()
        finally:
            self.notify("STOPPING=1")
            self.log.info("daemon.stopping")
            self.submitter.close()
            self.metrics.close()
            self.watcher.stop()
            if self._server is not None:
                self._server.close()
            if self.embedded is not None:
                self.embedded.stop()
            journal.close()
        return 0

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
                    self.collector.step()
                    self._gauges()
                    self.ingest.forget_quiet_folders()
                more = self.collector.drain(DRAIN_SECONDS) or more
                if now >= next_rescan:
                    next_rescan = now + self.config.rescan_interval
                    self.ingest.rescan_all()
                more = more or self.ingest.has_due()
            except ServerError as exc:
                self.log.warning("server.unreachable", error=str(exc))
                self.submitter.reachable = False
            except JournalWriteError as exc:
                self.log.error(
                    "journal.write_failed", error=str(exc), path=exc.path, free_bytes=exc.free_bytes
                )
                self._pause(5.0)  # retried from a clean state (the journal reopens)
            except Exception:  # a bug must not stop the service: log it loudly, go on
                self.log.exception("daemon.step_failed")
                self._pause(1.0)
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
        self.metrics.set_server_up(self.submitter.reachable)

    def _release_held(self) -> None:
        assert self.journal is not None
        for index in list(self.ingest.metadata_changed):
            if index < len(self.config.watches):
                n = self.journal.release_held(watch=str(self.config.watches[index].path))
                if n:
                    self.log.info(
                        "file.released", count=n, watch=str(self.config.watches[index].path)
                    )
        self.ingest.metadata_changed.clear()

    def _rebuild(self) -> None:
        assert self.journal is not None
        outputs = [rec for w in self.config.watches for rec in read_output_records(w.output_dir)]
        try:
            streams = [
                {"id": s.id, "status": s.status.value if s.status else None, "source": s.source}
                for s in self.server().getstreams()
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
        reach = {True: "up", False: "down", None: "?"}[self.submitter.reachable]
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
            new = _replace(new, state_dir=self.config.state_dir)
        old_roots = self._roots()
        self.watcher.stop()
        self.config = new
        self.ingest.set_watches(new.watches)
        self._start_watches(new.watches)
        self.metrics.init_watches(str(w.path) for w in new.watches)
        for i in range(len(new.watches)):
            self.ingest.scan(i, rescan=False)
        if self.embedded is not None and old_roots != self._roots():
            with self._server_lock:
                self._connect(self.embedded.restart(self._roots()))
        self.log.info(
            "config.reloaded",
            path=str(self.config_path),
            watches=[str(w.path) for w in new.watches],
        )


def _replace(config: DaemonConfig, **changes: Any) -> DaemonConfig:
    from dataclasses import replace

    return replace(config, **changes)
