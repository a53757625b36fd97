"""systemd's watchdog: a daemon whose loop hangs stops sending WATCHDOG=1.

A real daemon runs with ``NOTIFY_SOCKET`` pointing at this test's datagram
socket and ``WATCHDOG_USEC`` set (2 s, so pings every 0.5-1 s), as systemd
starts it with ``WatchdogSec=2``. A loop cannot be frozen from outside (SIGSTOP
stops the whole process, pings included), so the stall is injected through the
daemon's documented test-only hook (``STALL_HOOK``: while a file exists, the
loop stalls before its next turn, as a hung step would).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svwatchd.daemon._runner import STALL_HOOK
from tests.daemon.daemon_harness import DaemonProc, inbox_watch, write_config
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(120)


class Pings:
    """Every WATCHDOG=1 (and READY=1) the daemon sends, with when it arrived."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.seen: list[tuple[float, str]] = []
        self._on = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self._on:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            for line in data.splitlines():
                self.seen.append((time.monotonic(), line))

    def close(self) -> None:
        self._on = False
        self.thread.join(2)
        self.sock.close()

    def watchdog(self, after: float, before: float = float("inf")) -> int:
        return sum(1 for t, m in self.seen if m == "WATCHDOG=1" and after <= t < before)


@pytest.fixture
def pings(tmp_path: Path) -> Iterator[Pings]:
    p = Pings(tmp_path / "notify.sock")
    yield p
    p.close()


def test_a_hung_loop_stops_the_watchdog_pings(
    area: tuple[SvServer, Path], work: Path, pings: Pings, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, _ = area
    stall = work / "stall"
    monkeypatch.setenv("NOTIFY_SOCKET", str(pings.sock.getsockname()))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv(STALL_HOOK, str(stall))
    daemon = DaemonProc(write_config(work, srv, [inbox_watch(work)])).start()
    try:
        time.sleep(3.0)
        now = time.monotonic()
        assert pings.watchdog(now - 3.0) >= 2  # a turning loop pings every 0.5-1 s
        stall.touch()  # the loop hangs from its next turn
        time.sleep(0.5)
        hung = time.monotonic()
        time.sleep(3.0)  # longer than WatchdogSec: systemd would restart it now
        assert pings.watchdog(hung, time.monotonic()) == 0
        stall.unlink()  # the loop turns again: the pings come back
        time.sleep(2.0)
        assert pings.watchdog(time.monotonic() - 1.5) >= 1
    finally:
        stall.unlink(missing_ok=True)
        daemon.stop()
