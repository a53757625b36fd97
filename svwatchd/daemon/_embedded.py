"""The embedded svserver: a child process on loopback, for users with no other server.

``server: embedded`` in the config starts ``svserver serve`` with its data
under the daemon's state directory, allowed to read exactly the watched
folders, on a free loopback port. It is stopped with the daemon, and
restarted if it dies (files wait in the journal meanwhile).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EmbeddedServer"]


_SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the daemon dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the daemon's stop() still ends it
        pass


class EmbeddedServer:
    """One svserver child process; ``url`` is where it listens once started."""

    def __init__(
        self,
        state_dir: Path,
        roots: Sequence[Path],
        *,
        extra_args: Sequence[str] = (),
        log_format: str = "json",
    ) -> None:
        self.data_dir = state_dir / "svserver"
        self.roots = list(roots)
        self.extra_args = list(extra_args)
        self.log_format = log_format
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the child (not waiting for it to be ready); return its URL."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "svwatchd.server._cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-format",
            self.log_format,
            *[arg for root in self.roots for arg in ("--allow-root", str(root))],
            *self.extra_args,
        ]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # stdout/stderr are inherited: the child's JSON lines join the daemon's log.
        # systemd's notify socket and watchdog are the daemon's, not the child's
        env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARS}
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        return self.url

    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """The child's exit status, once it has exited."""
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the child and wait; SIGKILL it after ``timeout``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self, roots: Sequence[Path] | None = None) -> str:
        """Stop and start again (e.g. the watched folders changed); return the new URL."""
        self.stop()
        if roots is not None:
            self.roots = list(roots)
        return self.start()
