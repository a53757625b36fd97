"""sd_notify without systemd: a real AF_UNIX datagram socket stands in for the manager."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from svwatchd._notify import Watchdog, notify, notify_address, watchdog_interval
from tests.svserver import free_port


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: AF_UNIX paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="sdn-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def listener(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound to a file, named by $NOTIFY_SOCKET."""
    path = short_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(65536).decode("utf-8")


def test_notify_sends_one_datagram_per_message(listener: socket.socket) -> None:
    assert notify("READY=1") is True
    assert notify("STATUS=pending 3, in flight 1, done 10, errors 0; server up") is True
    assert notify("WATCHDOG=1") is True
    assert notify("STOPPING=1") is True
    assert received(listener) == "READY=1"
    assert received(listener) == "STATUS=pending 3, in flight 1, done 10, errors 0; server up"
    assert received(listener) == "WATCHDOG=1"
    assert received(listener) == "STOPPING=1"


def test_notify_sends_several_assignments_and_utf8(listener: socket.socket) -> None:
    assert notify("READY=1\nSTATUS=prêt: 0 fichiers") is True
    assert received(listener) == "READY=1\nSTATUS=prêt: 0 fichiers"


def test_notify_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"svwatchd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify_address() == "\0" + name
        assert notify("READY=1") is True
        assert received(sock) == "READY=1"


def test_no_notify_socket_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify_address() is None
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert notify("READY=1") is False


@pytest.mark.parametrize(
    "value",
    [
        "relative/notify.sock",  # neither a path nor @abstract
        "@",  # an empty abstract name
        "vsock:2:1234",  # systemd in a VM: not spoken here
    ],
)
def test_unsupported_addresses_are_ignored(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify_address() is None
    assert notify("READY=1") is False


def test_send_failures_return_false_without_raising(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nobody listens there
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "gone.sock"))
    assert notify("READY=1") is False
    # a stream socket where a datagram socket is expected
    path = short_dir / "stream.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
        stream.bind(str(path))
        stream.listen(1)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1") is False
    # a path too long for sockaddr_un
    monkeypatch.setenv("NOTIFY_SOCKET", "/" + "x" * 200)
    assert notify("READY=1") is False


def test_notify_logs_nothing(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify.sock")
    notify("READY=1")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


# -- the watchdog --------------------------------------------------------------------


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "1"}) == 0.5e-6


def test_watchdog_interval_absent_or_invalid() -> None:
    assert watchdog_interval({}) is None
    for bad in ("", "0", "-5", "abc", "1.5", " "):
        assert watchdog_interval({"WATCHDOG_USEC": bad}) is None, bad


def test_watchdog_interval_honours_watchdog_pid() -> None:
    usec = {"WATCHDOG_USEC": "2000000"}
    assert watchdog_interval({**usec, "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert watchdog_interval({**usec, "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({**usec, "WATCHDOG_PID": "not-a-pid"}) is None
    assert watchdog_interval({**usec, "WATCHDOG_PID": ""}) == 1.0  # empty: not set


def test_watchdog_interval_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # systemd's variables, inherited from someone else
    assert watchdog_interval() is None


def test_watchdog_pings_at_most_twice_per_interval() -> None:
    now = [100.0]
    sent: list[str] = []

    def send(message: str) -> bool:
        sent.append(message)
        return True

    dog = Watchdog(10.0, send=send, clock=lambda: now[0])
    assert dog.enabled
    assert dog.kick() is True  # the first kick pings at once
    for t in (100.1, 102.0, 104.9):
        now[0] = t
        assert dog.kick() is False
    now[0] = 105.0
    assert dog.kick() is True
    assert sent == ["WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_disabled_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sent: list[str] = []
    dog = Watchdog(send=lambda m: sent.append(m) is None)
    assert not dog.enabled
    assert dog.kick() is False
    assert sent == []


def test_watchdog_sends_through_notify_socket(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    dog = Watchdog()
    assert dog.interval == 0.5
    assert dog.kick() is True
    assert received(listener) == "WATCHDOG=1"


# -- the daemon, end to end ------------------------------------------------------------


def _drain(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """Messages received until one starts with ``until`` (or the timeout)."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            messages.append(received(sock))
        except TimeoutError:
            break
        if messages[-1].startswith(until):
            break
    return messages


def test_daemon_notifies_systemd(short_dir: Path) -> None:
    """``svwatchd run`` as systemd starts it: READY=1 although the server is down (the
    decisions: files wait in the journal), STATUS= lines naming the outage, WATCHDOG=1
    pings since WATCHDOG_USEC is set, STOPPING=1 on SIGTERM, exit status 0."""
    watch, out = short_dir / "in", short_dir / "out"
    watch.mkdir()
    (short_dir / "svwatchd.yaml").write_text(
        textwrap.dedent(
            f"""\
            server: {{url: "http://127.0.0.1:9", timeout: 1s}}
            state_dir: {short_dir / "state"}
            refresh_interval: 1s
            log: {{format: json}}
            watches:
              - path: {watch}
                output: {{dir: {out}}}
            """
        )
    )
    path = short_dir / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        env.pop("WATCHDOG_PID", None)
        log = short_dir / "daemon.log"
        cmd = [
            sys.executable,
            "-m",
            "svwatchd.daemon._cli",
            "run",
            "-c",
            str(short_dir / "svwatchd.yaml"),
        ]
        with log.open("wb") as stderr_file:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file)
        try:
            before = _drain(sock, "READY=1", 30.0)
            assert before and before[-1] == "READY=1", (before, proc.poll(), log.read_text())
            after = _drain(sock, "__never__", 3.0)  # the loop runs for a while
            proc.terminate()
            stopping = _drain(sock, "STOPPING=1", 30.0)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = log.read_text(errors="replace")
    assert "WATCHDOG=1" in after, (after, stderr)
    statuses = [m for m in after if m.startswith("STATUS=")]
    assert statuses, (after, stderr)
    assert "pending" in statuses[-1] and "in flight" in statuses[-1], statuses[-1]
    assert "server down" in statuses[-1] or "server ?" in statuses[-1], statuses[-1]
    assert stopping and stopping[-1] == "STOPPING=1", (stopping, stderr)


def test_svserver_notifies_systemd(short_dir: Path) -> None:
    """``svserver serve`` as systemd starts it: READY=1 only once the API accepts requests
    (a request right after it succeeds, no retry), STATUS= with its queue, WATCHDOG=1 pings
    from the event loop, STOPPING=1 on SIGTERM, a clean exit. (The decode workers inherit
    $NOTIFY_SOCKET; NotifyAccess=main makes systemd ignore them.)"""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "svwatchd.server._cli", "serve",
        "--data-dir", str(short_dir / "data"), "--listen", f"127.0.0.1:{port}",
        "--engine", "pocketsphinx", "--workers", "1", "--threads", "1",
    ]  # fmt: skip
    path = short_dir / "n.sock"
    log = short_dir / "svserver.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        env.pop("WATCHDOG_PID", None)
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            before = _drain(sock, "READY=1", 120.0)
            assert before and before[-1] == "READY=1", (before, log.read_text())
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            after = _drain(sock, "__never__", 3.0)
            proc.send_signal(signal.SIGTERM)
            stopping = _drain(sock, "STOPPING=1", 30.0)
            # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly;
            # systemd counts death by SIGTERM as a clean exit (SuccessExitStatus)
            assert proc.wait(30) in (0, -signal.SIGTERM), log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "WATCHDOG=1" in after, after
    statuses = [m for m in before + after if m.startswith("STATUS=")]
    assert statuses and "queued 0" in statuses[-1], (statuses, log.read_text())
    assert stopping and stopping[-1] == "STOPPING=1", (stopping, log.read_text())
