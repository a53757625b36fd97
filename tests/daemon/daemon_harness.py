"""Run a real svwatchd process against a real svserver, on real folders (inotify)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.svserver import SvServer


class DaemonProc:
    """One ``svwatchd run`` child; its JSON log lines are kept in ``log``."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProc:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "svwatchd.daemon._cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: "daemon.ready" in self.output(), 60, "daemon ready", self.output)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.output().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                out.append(event)
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def wait_for(
    cond: Callable[[], bool], timeout: float, what: str, diag: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{diag()[-4000:]}")


def write_config(
    base: Path, server: SvServer | str | dict[str, Any], watches: list[dict[str, Any]], **top: Any
) -> Path:
    """``base/svwatchd.yaml``: ``server`` is a running one, or the config's own value."""
    url = {"url": server.url, "timeout": "10s"} if isinstance(server, SvServer) else None
    cfg: dict[str, Any] = {
        "server": url or server,
        "state_dir": str(base / "state"),
        "refresh_interval": "300ms",
        "rescan_interval": "1h",
        "log": {"format": "json", "level": "info"},
        "watches": watches,
    }
    cfg.update(top)
    path = base / "svwatchd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def inbox_watch(work: Path, *, settle: str = "300ms", **extra: Any) -> dict[str, Any]:
    """The watch most tests use: ``work/inbox`` into ``work/out``, text outputs."""
    return {
        "path": str(work / "inbox"),
        "settle": settle,
        "output": {"dir": str(work / "out"), "formats": ["txt"]},
        **extra,
    }


def server_streams(srv: SvServer, under: Path | None = None) -> list[dict[str, Any]]:
    """The records of the server's streams (not deleted), those under ``under`` if given."""
    body = httpx.post(f"{srv.url}/v1/streams/query", json={"match": []}, timeout=30).json()
    streams: list[dict[str, Any]] = body["streams"]
    return [s for s in streams if under is None or s["source"].startswith(str(under))]


def tags_of(srv: SvServer, path: Path) -> dict[str, Any]:
    """The tags the server holds for the stream of ``path``."""
    for s in server_streams(srv):
        if s["source"] == str(path):
            return dict(s["tags"])
    raise AssertionError(f"no stream for {path}")
