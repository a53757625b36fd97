"""A real svserver process for tests: free port on 127.0.0.1, its own data dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from svwatchd.client import Server, Stream


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SvServer:
    """Start, stop, kill and restart one svserver; ``url`` is where it listens."""

    def __init__(
        self,
        data_dir: Path,
        *,
        engine: str = "pocketsphinx",
        args: Sequence[str] = (),
        workers: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine = engine
        self.args = list(args)
        self.workers = workers
        self.env = env  # added to this process's environment, if given
        self.wrap: list[str] = []  # a command to run svserver under (e.g. strace), if any
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"svserver-{self.port}.log"

    def start(self, timeout: float = 120.0) -> SvServer:
        """Start and wait until ``/healthz`` answers (raises with the log if it dies)."""
        cmd = [
            *self.wrap,
            sys.executable,
            "-m",
            "svwatchd.server._cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--engine",
            self.engine,
            "--workers",
            str(self.workers),
            "--threads",
            "1",
            *self.args,
        ]
        with open(self.log, "ab") as log:
            env = {**os.environ, **self.env} if self.env else None
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"svserver exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"svserver did not become ready:\n{self.output()}")

    def output(self) -> str:
        """Everything the server logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            # worker processes die with their parent's pipes; reap any stragglers
            time.sleep(0.2)


def decode_all(server: Server, streams: list[Stream], timeout: float = 400.0) -> None:
    """Submit the streams and refresh them until every one has finished."""
    server.decodestreams(streams)
    deadline = time.monotonic() + timeout
    while not all(s.isdone() for s in streams):
        assert time.monotonic() < deadline, streams
        time.sleep(0.3)
        server.refreshstreams(streams)
