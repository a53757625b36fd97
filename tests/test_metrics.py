"""The daemon's and the server's Prometheus metrics, scraped over real HTTP."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from svwatchd.daemon._metrics import DaemonMetrics
from svwatchd.server._metrics import ServerMetrics
from tests.svserver import SvServer, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """GET /metrics and return every sample as {(name, sorted labels): value}."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def daemon_metrics() -> Iterator[tuple[DaemonMetrics, int]]:
    metrics = DaemonMetrics()
    endpoint = metrics.serve("127.0.0.1", 0)
    try:
        yield metrics, endpoint.port
    finally:
        metrics.close()


@pytest.fixture
def server_metrics() -> Iterator[tuple[ServerMetrics, int]]:
    metrics = ServerMetrics()
    endpoint = metrics.serve("127.0.0.1", 0)
    try:
        yield metrics, endpoint.port
    finally:
        metrics.close()


W1, W2 = "/srv/audio/inbox/calls", "/srv/audio/inbox/dictation"


def test_daemon_counters_move(daemon_metrics: tuple[DaemonMetrics, int]) -> None:
    metrics, port = daemon_metrics
    metrics.init_watches([W1, W2])
    first = scrape(port)
    for name in ("detected", "submitted", "done", "failed"):
        assert value(first, f"svwatchd_files_{name}_total", watch=W1) == 0
        assert value(first, f"svwatchd_files_{name}_total", watch=W2) == 0
    assert value(first, "svwatchd_submission_retries_total") == 0
    assert math.isnan(value(first, "svwatchd_server_up"))  # not tried yet

    for _ in range(3):
        metrics.detected(W1)
    metrics.detected(W2)
    metrics.submitted(W1, 3)
    metrics.submitted(W2)
    metrics.done(W1)
    metrics.done(W1)
    metrics.failed(W1)
    metrics.retry()
    metrics.retry()
    metrics.set_inflight(2)
    metrics.set_server_up(True)
    metrics.set_journal_rows(4)
    metrics.observe_refresh(0.03)
    metrics.observe_refresh(1.7)

    now = scrape(port)
    assert value(now, "svwatchd_files_detected_total", watch=W1) == 3
    assert value(now, "svwatchd_files_detected_total", watch=W2) == 1
    assert value(now, "svwatchd_files_submitted_total", watch=W1) == 3
    assert value(now, "svwatchd_files_submitted_total", watch=W2) == 1
    assert value(now, "svwatchd_files_done_total", watch=W1) == 2
    assert value(now, "svwatchd_files_failed_total", watch=W1) == 1
    assert value(now, "svwatchd_files_failed_total", watch=W2) == 0
    assert value(now, "svwatchd_submission_retries_total") == 2
    assert value(now, "svwatchd_inflight") == 2
    assert value(now, "svwatchd_server_up") == 1
    assert value(now, "svwatchd_journal_rows") == 4
    assert value(now, "svwatchd_refresh_seconds_count") == 2
    assert value(now, "svwatchd_refresh_seconds_sum") == pytest.approx(1.73)
    assert value(now, "svwatchd_refresh_seconds_bucket", le="0.05") == 1
    assert value(now, "svwatchd_refresh_seconds_bucket", le="+Inf") == 2

    metrics.set_server_up(False)
    metrics.set_inflight(0)
    later = scrape(port)
    assert value(later, "svwatchd_server_up") == 0
    assert value(later, "svwatchd_inflight") == 0
    metrics.set_server_up(None)
    assert math.isnan(value(scrape(port), "svwatchd_server_up"))


def test_daemon_file_states_drop_to_zero(daemon_metrics: tuple[DaemonMetrics, int]) -> None:
    metrics, port = daemon_metrics
    metrics.set_file_states({W1: {"PENDING": 5, "INFLIGHT": 2}, W2: {"DONE": 7}})
    s = scrape(port)
    assert value(s, "svwatchd_files", watch=W1, state="PENDING") == 5
    assert value(s, "svwatchd_files", watch=W1, state="INFLIGHT") == 2
    assert value(s, "svwatchd_files", watch=W2, state="DONE") == 7
    metrics.set_file_states({W2: {"DONE": 9}})  # the backlog drained
    s = scrape(port)
    assert value(s, "svwatchd_files", watch=W1, state="PENDING") == 0
    assert value(s, "svwatchd_files", watch=W1, state="INFLIGHT") == 0
    assert value(s, "svwatchd_files", watch=W2, state="DONE") == 9


def test_daemon_exposes_process_metrics(daemon_metrics: tuple[DaemonMetrics, int]) -> None:
    _, port = daemon_metrics
    s = scrape(port)
    assert value(s, "process_resident_memory_bytes") > 0


def test_two_instances_do_not_clash() -> None:
    """Each object owns its registry: two daemons (or a daemon and a server) in one
    process count separately and serve separately."""
    a, b = DaemonMetrics(), DaemonMetrics()
    server = ServerMetrics()
    pa, pb = a.serve("127.0.0.1", 0).port, b.serve("127.0.0.1", 0).port
    ps = server.serve("127.0.0.1", 0).port
    try:
        a.detected(W1)
        a.detected(W1)
        b.detected(W1)
        assert value(scrape(pa), "svwatchd_files_detected_total", watch=W1) == 2
        assert value(scrape(pb), "svwatchd_files_detected_total", watch=W1) == 1
        assert not any(name.startswith("svwatchd_") for name, _ in scrape(ps))
    finally:
        a.close()
        b.close()
        server.close()


def test_close_releases_the_port_and_is_idempotent() -> None:
    metrics = DaemonMetrics()
    port = metrics.serve("127.0.0.1", 0).port
    scrape(port)
    metrics.close()
    metrics.close()
    assert metrics.endpoint is None
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
    with socket.socket() as s:  # the port can be bound again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_serve_refuses_a_second_endpoint_and_a_busy_port() -> None:
    metrics = DaemonMetrics()
    port = metrics.serve("127.0.0.1", 0).port
    try:
        with pytest.raises(RuntimeError, match="already served"):
            metrics.serve("127.0.0.1", 0)
        other = DaemonMetrics()
        with pytest.raises(OSError):
            other.serve("127.0.0.1", port)
        assert other.endpoint is None
    finally:
        metrics.close()


# -- svserver -----------------------------------------------------------------------


def test_server_job_metrics_move(server_metrics: tuple[ServerMetrics, int]) -> None:
    metrics, port = server_metrics
    first = scrape(port)
    assert value(first, "svserver_audio_seconds_decoded_total") == 0
    assert value(first, "svserver_decode_seconds_count") == 0
    assert ("svserver_streams", (("state", "QUEUED"),)) not in first  # no callback yet

    metrics.observe_job(2.5, decode_seconds=3.0, audio_seconds=60.0)
    metrics.observe_job([0.5, 1.0, 40.0], decode_seconds=1.0, audio_seconds=20.0)  # packed
    metrics.observe_queue_wait(0.2)  # a live socket that connected
    s = scrape(port)
    assert value(s, "svserver_audio_seconds_decoded_total") == 80
    assert value(s, "svserver_decode_seconds_count") == 2
    assert value(s, "svserver_decode_seconds_sum") == 4
    assert value(s, "svserver_queue_wait_seconds_count") == 5
    assert value(s, "svserver_queue_wait_seconds_sum") == pytest.approx(44.2)
    assert value(s, "svserver_queue_wait_seconds_bucket", le="1.0") == 3
    assert value(s, "svserver_real_time_factor") == pytest.approx(1.0 / 20.0)  # the last job

    metrics.observe_job(None, decode_seconds=0.1, audio_seconds=0.0)  # nothing decoded
    s = scrape(port)
    assert value(s, "svserver_real_time_factor") == pytest.approx(0.05)
    assert value(s, "svserver_audio_seconds_decoded_total") == 80


def test_server_state_is_read_only_when_scraped(server_metrics: tuple[ServerMetrics, int]) -> None:
    metrics, port = server_metrics
    calls = {"counts": 0, "busy": 0}
    counts = {"QUEUED": 4, "ACTIVE": 2, "DONE": 10}

    def stream_counts() -> dict[str, int]:
        calls["counts"] += 1
        return dict(counts)

    def workers_busy() -> int:
        calls["busy"] += 1
        return 2

    metrics.bind(stream_counts=stream_counts, workers_busy=workers_busy)
    metrics.observe_job(1.0, 1.0, 10.0)
    assert calls == {"counts": 0, "busy": 0}  # nothing read until a scrape
    s = scrape(port)
    assert calls == {"counts": 1, "busy": 1}
    assert value(s, "svserver_streams", state="QUEUED") == 4
    assert value(s, "svserver_streams", state="ACTIVE") == 2
    assert value(s, "svserver_streams", state="DONE") == 10
    for state in ("PAUSED", "ERROR", "CLOSED", "DELETED"):
        assert value(s, "svserver_streams", state=state) == 0  # every state, 0 when none
    assert value(s, "svserver_workers_busy") == 2
    counts["QUEUED"] = 0
    assert value(scrape(port), "svserver_streams", state="QUEUED") == 0
    assert calls == {"counts": 2, "busy": 2}


def test_server_failing_callback_leaves_the_metric_out(
    server_metrics: tuple[ServerMetrics, int],
) -> None:
    metrics, port = server_metrics

    def closed_store() -> dict[str, int]:
        raise RuntimeError("the store is closed")

    metrics.bind(stream_counts=closed_store, workers_busy=lambda: 1)
    s = scrape(port)  # still 200
    assert not any(name == "svserver_streams" for name, _ in s)
    assert value(s, "svserver_workers_busy") == 1
    s = scrape(port)  # the error counter is collected before the failing callback runs
    errors = value(s, "svserver_metrics_callback_errors_total", metric="svserver_streams")
    assert errors >= 1
    metrics.unbind()
    s = scrape(port)
    assert not any(name == "svserver_workers_busy" for name, _ in s)


# -- the processes, end to end -------------------------------------------------------


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.TransportError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_svserver_serves_metrics(tmp_path: Path) -> None:
    """``svserver serve --metrics HOST:PORT``: streams by state read from its database,
    busy workers, and the job histograms once a file is decoded."""
    port = free_port()
    server = SvServer(tmp_path / "data", workers=1, args=["--metrics", f"127.0.0.1:{port}"])
    server.start()
    try:
        s = scrape(port)
        assert value(s, "svserver_streams", state="QUEUED") == 0
        assert value(s, "svserver_streams", state="DONE") == 0
        assert value(s, "svserver_workers_busy") == 0
        assert value(s, "svserver_decode_workers", node=socket.gethostname()) == 1
        assert value(s, "svserver_decode_jobs_running") == 0
        assert value(s, "svserver_decode_worker_restarts_total") == 0
        assert value(s, "svserver_decode_seconds_count") == 0
        assert value(s, "process_resident_memory_bytes") > 0
        # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly; systemd
        # counts death by SIGTERM as a clean exit (SuccessExitStatus)
        assert server.stop() in (0, -signal.SIGTERM), server.output()
    finally:
        server.kill()
    with socket.socket() as sock, pytest.raises(OSError):  # closed with the server
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_svserver_refuses_a_bad_metrics_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "svwatchd.server._cli", "serve", "--data-dir", str(tmp_path),
         "--listen", f"127.0.0.1:{free_port()}", "--engine", "pocketsphinx",
         "--metrics", "127.0.0.1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--metrics" in result.stderr


def test_svserver_runs_on_when_the_metrics_port_is_taken(tmp_path: Path) -> None:
    """Metrics are not worth refusing to decode for: an error line, and the API serves."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = SvServer(tmp_path / "data", workers=1, args=["--metrics", f"127.0.0.1:{port}"])
        server.start()
        try:
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        finally:
            server.kill()
    assert "metrics.listen_failed" in server.output()


def test_daemon_serves_metrics(tmp_path: Path) -> None:
    """``svwatchd run`` with ``metrics: {listen: ...}``: a file dropped in a watch is
    counted as detected although the server is down, and the server shows as down."""
    port = free_port()
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    config = tmp_path / "svwatchd.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            server: {{url: "http://127.0.0.1:9", timeout: 1s}}
            state_dir: {tmp_path / "state"}
            refresh_interval: 1s
            metrics: {{listen: "127.0.0.1:{port}"}}
            watches:
              - path: {watch}
                settle: 100ms
                output: {{dir: {out}}}
            """
        )
    )
    log = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "svwatchd.daemon._cli", "run", "-c", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "svwatchd_inflight" in str(scrape(port)), 60, "the metrics endpoint")
        (watch / "call.wav").write_bytes(b"RIFF" + bytes(100))
        key = str(watch)
        wait_for(
            lambda: value(scrape(port), "svwatchd_files_detected_total", watch=key) == 1,
            30,
            "call.wav counted as detected",
        )
        wait_for(lambda: value(scrape(port), "svwatchd_server_up") == 0, 30, "server down")
        s = scrape(port)
        assert value(s, "svwatchd_files_submitted_total", watch=key) == 0
        assert value(s, "svwatchd_journal_rows") >= 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
