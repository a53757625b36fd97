"""systemd's service notification protocol (``sd_notify``), with the standard library only.

A service started with ``Type=notify`` tells systemd how it is doing by
sending datagrams (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``STOPPING=1``, newline-separated ``KEY=value`` lines) to the AF_UNIX socket
named by ``$NOTIFY_SOCKET``. A name starting with ``@`` is in the abstract
namespace (the ``@`` stands for a leading NUL byte).

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing and returns
False, so the daemon and the server call these unconditionally. A failed
send is never an error either: notifications are advisory, and a service
must not stop because its supervisor went away. Nothing is logged here; the
caller has the return value.

``WATCHDOG_USEC`` (set when the unit has ``WatchdogSec=``) is the deadline
for ``WATCHDOG=1``; :func:`watchdog_interval` returns half of it, the usual
ping period, and :class:`Watchdog` rate-limits the pings so a loop can call
:meth:`Watchdog.kick` on every turn.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Watchdog", "notify", "notify_address", "watchdog_interval"]


def notify_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The socket address ``$NOTIFY_SOCKET`` names, as ``socket.connect`` takes it.

    ``@name`` becomes ``"\\0name"`` (abstract namespace); an absolute path is
    returned as is. None when the variable is unset, empty, or of a kind this
    module does not speak (e.g. ``vsock:``, used by virtual machines).
    """
    env = os.environ if environ is None else environ
    value = env.get("NOTIFY_SOCKET", "")
    if len(value) > 1 and value[0] == "@":
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; True when it was sent.

    False, without raising or logging, when ``$NOTIFY_SOCKET`` is unset or the
    send fails for any reason.
    """
    address = notify_address()
    if address is None:
        return False
    try:
        data = message.encode("utf-8", "replace")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)  # a full receive queue must not block a service's loop
            sock.sendto(data, address)
    except (OSError, ValueError):  # ValueError: e.g. a NUL in the address
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """How often to send ``WATCHDOG=1``, in seconds: half of ``$WATCHDOG_USEC``.

    None when there is no watchdog: the variable is unset, not a positive
    integer, or ``$WATCHDOG_PID`` names another process (the variables were
    inherited from a parent and are not meant for us).
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


class Watchdog:
    """Sends ``WATCHDOG=1`` at most twice per ``interval``; does nothing without a watchdog.

    ``interval`` defaults to :func:`watchdog_interval` (half the deadline), so
    pings go at most every quarter of ``WatchdogSec=``: a loop whose turns are
    each shorter than three quarters of the deadline is never killed. Call
    :meth:`kick` from the service's main loop (and from inside any step that
    may legitimately run long): a loop that stops turning stops the pings,
    and systemd restarts the service after ``WatchdogSec=``.
    """

    def __init__(
        self,
        interval: float | None = None,
        *,
        send: Callable[[str], object] = notify,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = watchdog_interval() if interval is None else interval
        self._send = send
        self._clock = clock
        self._next = 0.0

    @property
    def enabled(self) -> bool:
        """True when systemd expects pings (``WatchdogSec=`` is set for this process)."""
        return self.interval is not None and self.interval > 0

    def kick(self) -> bool:
        """Ping if one is due; True when a ping was sent (and ``send`` returned true)."""
        if not self.enabled:
            return False
        now = self._clock()
        if now < self._next:
            return False
        assert self.interval is not None
        self._next = now + self.interval / 2
        return bool(self._send("WATCHDOG=1"))
