"""The Ray head lost under a backlog and started again: svserver waits, rejoins, finishes.

A real head (``ray start --head --block`` in its own session, its own ports and
temp dir) is killed with SIGKILL, all its processes at once, as a crashed head
machine would leave things; then started again on the same port. svserver runs
throughout (it is never restarted by the test): its Ray driver is ended by Ray
once the head has been unreachable for ``RAY_gcs_rpc_server_reconnect_timeout_s``
(5 s here, 60 s by default), and svserver starts a new one until the head
answers. Nothing is marked ERROR meanwhile, every stream ends DONE, each
decoded (committed) once.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jiwer
import pytest

from svwatchd.client import DecodeStatus, Server, Stream
from tests.conftest import TESTDATA, reference, speech_file
from tests.normalise import normalise
from tests.svserver import SvServer, free_port

pytest.importorskip("ray")

CLIPS = [f"sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920, 930)]
COPIES = 8
RECONNECT_TIMEOUT = "5"  # seconds Ray gives a driver to find its lost head again


class RayHead:
    """``ray start --head --block`` with its own ports and temp dir; killed as a whole."""

    def __init__(self, base: Path) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="svhead-", dir="/tmp"))  # short: Ray's sockets
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = base / "ray-head.log"
        self.token = base / "ray-auth-token"  # the cluster's own token (Ray 2.59+ heads want one)
        self.token.write_text(secrets.token_hex(32))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        ray = Path(sys.executable).with_name("ray")
        cmd = [
            str(ray), "start", "--head", "--block", f"--port={self.port}",
            f"--temp-dir={self.temp}", "--num-cpus=2",
            "--include-dashboard=false", "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}",
        ]  # fmt: skip
        env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token),
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        started = self.log.read_text().count("Ray runtime started")
        while self.log.read_text().count("Ray runtime started") == started:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL to the head's whole session: GCS, raylet, workers, at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def head(tmp_path: Path) -> Iterator[RayHead]:
    h = RayHead(tmp_path)
    h.start()
    try:
        yield h
    finally:
        h.stop()


def _events(srv: SvServer, event: str) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in srv.output().splitlines()
        if line.startswith("{") and f'"{event}"' in line
    ]


def _wait_for(what: str, check: Callable[[], object], srv: SvServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}:\n{srv.output()[-4000:]}"
        time.sleep(0.3)


def test_head_lost_under_a_backlog_and_back(head: RayHead, tmp_path: Path) -> None:
    speech_file(CLIPS[0])
    root = tmp_path / "root"
    root.mkdir()
    for n in range(COPIES):
        for name in CLIPS:
            shutil.copy(TESTDATA / name, root / f"{n}-{name}")
    files = sorted(root.iterdir())
    srv = SvServer(
        tmp_path / "data",
        args=["--executor", "ray", "--ray-address", head.address, "--allow-root", str(root)],
        env={
            "RAY_gcs_rpc_server_reconnect_timeout_s": RECONNECT_TIMEOUT,
            "RAY_AUTH_MODE": "token",  # the cluster's token, as every node has it
            "RAY_AUTH_TOKEN_PATH": str(head.token),
        },
    ).start()
    try:
        streams = [Stream(str(f)) for f in files]
        with Server(srv.url) as server:
            server.decodestreams(streams)
            _wait_for("a first stream done", lambda: _events(srv, "decode.done"), srv, 120)
            head.kill()
            # the driver is lost; svserver keeps answering and fails nothing meanwhile
            lost_by = time.monotonic() + 60
            while not _events(srv, "ray.driver_lost"):
                assert time.monotonic() < lost_by, srv.output()[-4000:]
                server.refreshstreams(streams)
                assert DecodeStatus.ERROR not in {s.status for s in streams}
                time.sleep(0.5)
            info = httpx.get(f"{srv.url}/v1/sysinfo", timeout=10).json()["engine"]
            assert info["connected"] is False and info["workers"] == 0
            _wait_for(
                "a failed reconnection", lambda: _events(srv, "ray.reconnect_failed"), srv, 60
            )
            server.refreshstreams(streams)
            waiting = [s for s in streams if not s.isdone()]
            assert waiting and {s.status for s in waiting} <= {
                DecodeStatus.QUEUED,
                DecodeStatus.ACTIVE,
            }
            head.start()  # the same address; a new cluster as far as Ray is concerned
            deadline = time.monotonic() + 240
            while not all(s.isdone() for s in streams):
                assert time.monotonic() < deadline, srv.output()[-4000:]
                time.sleep(0.5)
                server.refreshstreams(streams)
            assert [s.status for s in streams] == [DecodeStatus.DONE] * len(streams)
            for s in streams:  # each heard right (pocketsphinx: copies may differ a word)
                clip = Path(s.source).name.split("-", 1)[1]
                said = normalise(" ".join(u.text for u in s.utterances()))
                assert jiwer.wer(reference(clip), said) <= 0.5, (clip, said)
        done = Counter(str(e["stream_id"]) for e in _events(srv, "decode.done"))
        assert set(done.values()) == {1} and len(done) == len(files), done
        assert _events(srv, "ray.reconnected")
        info = httpx.get(f"{srv.url}/v1/sysinfo", timeout=10).json()["engine"]
        assert info["connected"] is True and info["driver_restarts"] >= 1
        assert info["workers"] == 2
    finally:
        srv.stop()


def test_a_wrong_ray_token_is_a_clear_error_at_start(head: RayHead, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text(secrets.token_hex(32))
    srv = SvServer(
        tmp_path / "data",
        args=["--executor", "ray", "--ray-address", head.address],
        env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)},
    )
    with pytest.raises(RuntimeError, match="svserver exited") as failed:
        srv.start()
    said = str(failed.value)
    assert f"The Ray cluster at {head.address} refused svserver" in said, said
    assert f"the token in {wrong}" in said and "RAY_AUTH_TOKEN_PATH" in said
    without = SvServer(
        tmp_path / "data2", args=["--executor", "ray", "--ray-address", head.address]
    )
    with pytest.raises(RuntimeError, match="svserver exited") as failed:
        without.start()
    assert "svserver sent none. Start svserver with RAY_AUTH_MODE=token" in str(failed.value)
