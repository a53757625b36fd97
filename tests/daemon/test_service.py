"""Running as a service: sd_notify messages in order, and Prometheus metrics that move."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TESTDATA, speech_file
from tests.daemon.daemon_harness import wait_for, write_config
from tests.svserver import SvServer, free_port

pytestmark = pytest.mark.timeout(300)


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == name or (want and key == f"{name}{{{want}}}"):
            return float(value)
    return 0.0


def test_notify_order_and_metrics_of_both_processes(tmp_path: Path) -> None:
    speech_file("001.wav")
    work = tmp_path / "w"
    inbox, out = work / "inbox", work / "out"
    inbox.mkdir(parents=True)
    sv_metrics = free_port()
    srv = SvServer(
        tmp_path / "sv",
        args=["--allow-root", str(work), "--metrics", f"127.0.0.1:{sv_metrics}"],
        workers=1,
    ).start()
    d_metrics = free_port()
    cfg = write_config(
        work,
        srv,
        [{"path": str(inbox), "settle": "200ms", "output": {"dir": str(out), "formats": ["txt"]}}],
        metrics={"listen": f"127.0.0.1:{d_metrics}"},
    )
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="2000000")
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 -- closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "svwatchd.daemon._cli", "run", "--config", str(cfg)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    messages: list[str] = []

    def pump() -> None:
        try:
            while True:
                messages.append(listener.recv(4096).decode())
        except TimeoutError:
            pass

    try:
        wait_for(lambda: (pump(), any(m == "READY=1" for m in messages))[1], 60, "READY=1")
        daemon_url = f"http://127.0.0.1:{d_metrics}/metrics"
        before = httpx.get(daemon_url).text
        watch = str(inbox)
        assert _metric(before, "svwatchd_files_done_total", watch=watch) == 0
        for i in range(3):
            shutil.copy(TESTDATA / "001.wav", inbox / f"m{i}.wav")
        wait_for(lambda: len(list(out.glob("*.txt"))) == 3, 60, "outputs")
        time.sleep(1.0)  # one more refresh for the gauges
        after = httpx.get(daemon_url).text
        assert _metric(after, "svwatchd_files_detected_total", watch=watch) == 3
        assert _metric(after, "svwatchd_files_submitted_total", watch=watch) == 3
        assert _metric(after, "svwatchd_files_done_total", watch=watch) == 3
        assert _metric(after, "svwatchd_server_up") == 1
        assert _metric(after, "svwatchd_journal_rows") == 3
        assert _metric(after, "svwatchd_refresh_seconds_count") > 0
        server = httpx.get(f"http://127.0.0.1:{sv_metrics}/metrics").text
        assert _metric(server, "svserver_streams", state="DONE") == 3
        assert _metric(server, "svserver_audio_seconds_decoded_total") > 3.0
        assert _metric(server, "svserver_decode_seconds_count") >= 1
        assert _metric(server, "svserver_queue_wait_seconds_count") == 3
        pump()
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        while proc.poll() is None and time.monotonic() - began < 60:
            pump()  # keep reading, as systemd does: a full queue would slow the sender
        assert proc.poll() == 0, (tmp_path / "daemon.log").read_text()[-3000:]
        pump()
    finally:
        if proc.poll() is None:
            spy = shutil.which("py-spy")  # where installed: where it hung, for the report
            if spy:
                subprocess.run([spy, "dump", "--pid", str(proc.pid)], check=False)
            proc.kill()
            proc.wait(10)
        log.close()
        listener.close()
        srv.stop()
    kinds = [m.split("=", 1)[0] for m in messages]
    assert kinds[0] == "READY" and kinds[-1] == "STOPPING", kinds
    assert "WATCHDOG" in kinds and "STATUS" in kinds
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert any("done 3" in m for m in statuses), statuses
