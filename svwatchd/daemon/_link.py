"""The daemon's link to svserver: the client, the embedded server, and whether it answers.

All of it belongs to the loop thread. `ServerLink` holds the `Server` client
and, with ``server: embedded``, the svserver child: the loop alone restarts
a child that died (or whose allowed roots a reload changed) and swaps the
client. A client the submitter's sender may still be using is not closed at
the swap but retired, and closed once no batch is out (`close_retired`).
`Reachability` is whether svserver answered last time and when submission
may try again after it did not (exponential backoff with jitter); the loop
updates it from the sender's reports and from its own requests, and logs
``server.unreachable`` once per outage and ``server.reachable`` when it ends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from svwatchd.client.server import Server
from svwatchd.daemon._collaborators import Log
from svwatchd.daemon._config import EmbeddedServer, RemoteServer
from svwatchd.daemon._embedded import EmbeddedServer as EmbeddedProcess
from svwatchd.errors import ServerUnreachableError

__all__ = ["Reachability", "ServerLink"]


class ServerLink:
    """The current `Server` client (and the embedded svserver, if configured).

    The server is the one of the config the daemon started with: a reload
    changes the watched folders (and so the embedded server's roots), not
    which server is used.
    """

    def __init__(
        self,
        config: EmbeddedServer | RemoteServer,
        state_dir: Path,
        log: Log,
        *,
        log_format: str,
        stopping: Callable[[], bool],
    ) -> None:
        self._config = config
        self._state_dir = state_dir
        self._log = log
        self._log_format = log_format
        self._stopping = stopping
        self._embedded: EmbeddedProcess | None = None
        self._server: Server | None = None
        self._retired: list[Server] = []

    def start(self, roots: Sequence[Path]) -> None:
        """Start the embedded svserver (allowed to read ``roots``) if configured; connect."""
        if isinstance(self._config, EmbeddedServer):
            self._embedded = EmbeddedProcess(
                self._state_dir,
                roots,
                extra_args=self._config.args(),
                log_format=self._log_format,
            )
            self._connect(self._embedded.start())
        else:
            self._connect(self._config.url)

    def _connect(self, url: str) -> None:
        if self._server is not None:
            self._retired.append(self._server)
        if isinstance(self._config, RemoteServer):
            self._server = Server(url, token=self._config.token, timeout=self._config.timeout)
        else:
            self._server = Server(url, timeout=30)

    @property
    def url(self) -> str | None:
        """Where the server listens (None before `start`)."""
        return self._server.url if self._server is not None else None

    def current(self) -> Server:
        """The client for the server; an embedded svserver that died is restarted first."""
        embedded = self._embedded
        if embedded is not None and not embedded.alive() and not self._stopping():
            self._log.error(
                "server.exited",
                code=embedded.exit_code(),
                detail="restarting the embedded svserver",
            )
            self._connect(embedded.restart())
        if self._server is None:
            raise RuntimeError("ServerLink.current() before start()")
        return self._server

    def set_roots(self, roots: Sequence[Path]) -> None:
        """The watched folders changed: an embedded svserver restarts allowed to read these
        (only when the set of folders changed, not their order)."""
        embedded = self._embedded
        if embedded is not None and set(roots) != set(embedded.roots):
            self._connect(embedded.restart(roots))

    def close_retired(self) -> None:
        """Close the clients replaced since; call when no batch is out with one of them."""
        for server in self._retired:
            server.close()
        self._retired.clear()

    def close(self) -> None:
        """Close every client and stop the embedded svserver."""
        self.close_retired()
        if self._server is not None:
            self._server.close()
        if self._embedded is not None:
            self._embedded.stop()


class Reachability:
    """Whether svserver answered, and the backoff of submissions after it did not.

    ``reachable`` is None until the first answer (or failure) is known.
    """

    MAX_WAIT = 60.0

    def __init__(self, log: Log, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self.reachable: bool | None = None
        self._failures = 0
        self._next_try = 0.0
        self._silent = False  # the outage is svserver not answering at all (not a 5xx)

    def waiting(self) -> bool:
        """True while submissions back off."""
        return self._clock() < self._next_try

    def unreachable(self, exc: BaseException) -> None:
        """svserver did not answer (or answered 5xx): log it once per outage, back off.

        Only an attempt made after the last wait counts towards the next, longer one: the
        refreshes that fail meanwhile (every ``refresh_interval``) do not, or a short outage
        would push submissions back by the whole 60 s cap.
        """
        if self.reachable is not False:
            self._log.warning(
                "server.unreachable",
                error=str(exc),
                detail="files wait in the journal until it answers",
            )
        self.reachable = False
        self._silent = isinstance(exc, ServerUnreachableError)
        if not self.waiting():
            self.back_off()

    def refreshed(self) -> None:
        """svserver answered a refresh: an outage in which it did not answer at all is over
        (submissions go again at once); one in which it answered 5xx (e.g. 507, disk full)
        keeps its backoff until a submission is accepted."""
        if self.reachable is False and self._silent:
            self.answered()

    def back_off(self) -> None:
        """Wait longer before the next submission: 1, 2, 4 ... 60 s, plus up to 1 s of jitter."""
        self._failures += 1
        wait = min(self.MAX_WAIT, 2.0 ** min(self._failures - 1, 16) + random.uniform(0, 1))
        self._next_try = self._clock() + wait

    def answered(self) -> None:
        """svserver accepted a submission: the outage (if any) is over."""
        if self.reachable is False:
            self._log.info("server.reachable")
        self.reachable = True
        self._failures = 0
        self._next_try = 0.0
        self._silent = False
