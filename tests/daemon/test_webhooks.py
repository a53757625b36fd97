"""Completion notifications end to end: a real daemon, a real svserver, a real receiver.

The receiver is ``http.server`` on 127.0.0.1 started by the test
(`tests.daemon.receiver`); the daemon is killed for real (SIGKILL) between its
outputs and the delivery, and the command of ``exec`` is a real program.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from svwatchd.daemon._config import validate_config
from tests.conftest import TESTDATA
from tests.daemon.daemon_harness import (
    DaemonProc,
    inbox_watch,
    server_streams,
    wait_for,
    write_config,
)
from tests.daemon.receiver import Receiver, free_port
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(300)

SECRET = b"s3cret-shared-with-the-receiver"


def _hook(work: Path, url: str, **extra: Any) -> dict[str, Any]:
    key = work / "hook.key"
    key.write_bytes(SECRET + b"\n")  # surrounding whitespace is not part of the secret
    return {"webhook": {"url": url, "secret_file": str(key), **extra}}


def _metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} " if want else f"{name} "):
            return float(line.split()[-1])
    return 0.0


def test_webhook_is_signed_and_retried_after_500s(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    port = free_port()
    with Receiver(statuses=[500, 500]) as receiver:
        cfg = write_config(
            work,
            srv,
            [inbox_watch(work)],
            notify=_hook(work, receiver.url, timeout="5s"),
            metrics={"listen": f"127.0.0.1:{port}"},
        )
        daemon = DaemonProc(cfg).start()
        try:
            shutil.copy(TESTDATA / "001.wav", inbox / "call.wav")
            wait_for(lambda: daemon.events("notify.sent"), 60, "a delivery", daemon.output)
            requests = receiver.got()
            assert len(requests) == 3  # two 500s, then the 2xx
            assert len({r.delivery for r in requests}) == 1  # one id on every retry
            assert len({r.body for r in requests}) == 1  # the same document
            for r in requests:
                assert r.signed_with(SECRET)
                assert not r.signed_with(b"another secret")
                assert abs(int(r.headers["x-svwatchd-timestamp"]) - r.at) < 30
                assert r.headers["x-svwatchd-event"] == "done"
            doc = requests[0].json
            (stream,) = server_streams(srv, inbox)
            assert doc["event"] == "done" and doc["status"] == "DONE"
            assert doc["path"] == str(inbox / "call.wav") and doc["stream_id"] == stream["id"]
            assert doc["outputs"] == [str(out / "call.wav.txt")]
            assert doc["duration"] == pytest.approx(stream["sourceseconds"], abs=0.01)
            assert doc["error"] is None and doc["delivery"] == requests[0].delivery
            retries = daemon.events("notify.retry")
            assert [e["attempt"] for e in retries] == [1, 2]
            assert all("HTTP 500" in e["error"] for e in retries)
            # the second attempt waits longer than the first (backoff)
            assert requests[2].at - requests[1].at > requests[1].at - requests[0].at - 0.3
            (sent,) = daemon.events("notify.sent")
            assert sent["delivery"] == requests[0].delivery and sent["channel"] == "webhook"
            assert sent["path"] == str(inbox / "call.wav")

            # a file that fails: the error event, with the reason and the error file
            shutil.copy(TESTDATA / "bad.wav", inbox / "bad.wav")
            wait_for(lambda: len(receiver.got()) == 4, 60, "the error delivery", daemon.output)
            error = receiver.got()[3]
            assert error.headers["x-svwatchd-event"] == "error" and error.signed_with(SECRET)
            assert error.json["status"] == "FAILED" and "bad.wav" in error.json["error"]
            assert error.json["outputs"] == [str(out / "bad.wav.error.json")]
            wait_for(
                lambda: _metric(port, "svwatchd_notify_sent_total", channel="webhook") == 2,
                10,
                "the sent counter",
            )
            assert _metric(port, "svwatchd_notify_retries_total", channel="webhook") == 2
            wait_for(lambda: _metric(port, "svwatchd_notify_pending") == 0, 10, "pending 0")
        finally:
            assert daemon.stop() == 0


def test_closed_port_then_sigkill_delivers_exactly_once_after_restart(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    port = free_port()  # nobody listens: connections are refused
    url = f"http://127.0.0.1:{port}/hook"
    cfg = write_config(work, srv, [inbox_watch(work)], notify=_hook(work, url))
    daemon = DaemonProc(cfg).start()
    shutil.copy(TESTDATA / "001.wav", inbox / "call.wav")
    wait_for(lambda: daemon.events("notify.retry"), 60, "a refused delivery", daemon.output)
    assert (out / "call.wav.txt").exists()  # the output did not wait for the receiver
    assert "ConnectError" in daemon.events("notify.retry")[0]["error"]
    daemon.kill()  # after the output, before any delivery
    status = subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "status", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(status.stdout)["notifications"] == {"PENDING": 1, "SENT": 0, "FAILED": 0}

    with Receiver(port) as receiver:
        again = DaemonProc(cfg).start()
        try:
            wait_for(lambda: again.events("notify.sent"), 60, "the delivery", again.output)
            time.sleep(2)  # nothing more comes
            (request,) = receiver.got()
            assert request.signed_with(SECRET)
            assert request.json["path"] == str(inbox / "call.wav")
            assert [e["count"] for e in again.events("notify.resumed")] == [1]
            assert len(again.events("notify.sent")) == 1
        finally:
            again.stop()
        # a third start owes nothing: the delivery was recorded as sent
        third = DaemonProc(cfg).start()
        try:
            time.sleep(2)
            assert len(receiver.got()) == 1
            assert len(third.events("notify.resumed")) == 1  # the log is shared: the 2nd run's
        finally:
            third.stop()
    (stream,) = server_streams(srv, inbox)
    assert stream["attempts"] == 1  # decoded once


def test_sigkill_while_the_receiver_answers_redelivers_under_the_same_id(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox = work / "inbox"
    port = free_port()
    with Receiver(port, delay=4) as receiver:  # slow to answer: the daemon dies meanwhile
        cfg = write_config(
            work, srv, [inbox_watch(work)], notify=_hook(work, receiver.url, timeout="30s")
        )
        daemon = DaemonProc(cfg).start()
        shutil.copy(TESTDATA / "001.wav", inbox / "call.wav")
        wait_for(lambda: receiver.got(), 60, "the first delivery", daemon.output)
        daemon.kill()  # the receiver has it; its 2xx is lost with the daemon
        receiver.delay = 0
        again = DaemonProc(cfg).start()
        try:
            wait_for(lambda: again.events("notify.sent"), 60, "the redelivery", again.output)
            time.sleep(1.5)
        finally:
            again.stop()
        first, second = receiver.got()
        # the receiver can de-duplicate: same id, same document; one delivery counted as sent
        assert first.delivery == second.delivery and first.body == second.body
        assert len({r.delivery for r in receiver.got()}) == 1


def test_a_slow_or_dead_receiver_never_holds_up_the_files(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    names = [f"c{i}.wav" for i in range(3)]
    dead = f"http://127.0.0.1:{free_port()}/hook"
    with Receiver(delay=8) as slow:
        watches = [
            inbox_watch(work, notify=_hook(work, slow.url, timeout="10s")),
        ]
        (work / "other").mkdir()
        other = {
            "path": str(work / "other"),
            "settle": "300ms",
            "output": {"dir": str(work / "out2"), "formats": ["txt"]},
            "notify": _hook(work, dead, retry_for="2s"),
        }
        daemon = DaemonProc(write_config(work, srv, [*watches, other])).start()
        try:
            began = time.monotonic()
            for name in names:
                shutil.copy(TESTDATA / "001.wav", inbox / name)
            shutil.copy(TESTDATA / "004.wav", work / "other" / "lost.wav")
            wait_for(
                lambda: all((out / f"{n}.txt").exists() for n in names),
                60,
                "outputs",
                daemon.output,
            )
            outputs_took = time.monotonic() - began
            # 8 s per delivery: outputs that waited for the receiver would take 16 s or more
            assert outputs_took < 14
            wait_for(lambda: daemon.events("notify.failed"), 60, "the give-up", daemon.output)
            (failed,) = daemon.events("notify.failed")
            assert failed["path"] == str(work / "other" / "lost.wav")
            assert failed["level"] == "error" and "ConnectError" in failed["error"]
            assert (work / "out2" / "lost.wav.txt").exists()
            wait_for(lambda: len(slow.got()) == len(names), 60, "slow deliveries", daemon.output)
            assert len({r.delivery for r in slow.got()}) == len(names)
        finally:
            daemon.stop()


def test_exec_gets_the_paths_as_arguments_and_the_json_on_stdin(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    script = work / "hook.py"
    calls = work / "calls.jsonl"
    script.write_text(
        "import json, os, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read(),\n"
        "        'event': os.environ['SVWATCHD_EVENT'],\n"
        "        'delivery': os.environ['SVWATCHD_DELIVERY']}) + '\\n')\n"
    )
    notify = {"exec": [sys.executable, str(script), "--from", "svwatchd"]}
    cfg = write_config(work, srv, [inbox_watch(work, notify=notify)])
    daemon = DaemonProc(cfg).start()
    try:
        folder = inbox / "with space"
        folder.mkdir()
        source = folder / 'it\'s a "quoted" call; $(rm -rf x).wav'
        shutil.copy(TESTDATA / "001.wav", source)
        wait_for(lambda: daemon.events("notify.sent"), 60, "the command", daemon.output)
        (line,) = calls.read_text().splitlines()
        call = json.loads(line)
        output = out / "with space" / (source.name + ".txt")
        assert output.exists()
        assert call["argv"] == ["--from", "svwatchd", str(source), str(output)]
        doc = json.loads(call["stdin"])
        assert doc["event"] == call["event"] == "done" and doc["path"] == str(source)
        assert doc["delivery"] == call["delivery"]
        assert daemon.events("notify.sent")[0]["channel"] == "exec"
    finally:
        daemon.stop()


def test_exec_that_fails_is_retried(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    inbox = work / "inbox"
    flag = work / "succeed-now"
    script = work / "hook.py"
    script.write_text(
        f"import os, sys\nsys.stdin.read()\nprint('not yet', file=sys.stderr)\n"
        f"sys.exit(0 if os.path.exists({str(flag)!r}) else 3)\n"
    )
    notify = {"exec": {"command": [sys.executable, str(script)], "events": ["done"]}}
    daemon = DaemonProc(write_config(work, srv, [inbox_watch(work, notify=notify)])).start()
    try:
        shutil.copy(TESTDATA / "001.wav", inbox / "call.wav")
        wait_for(lambda: daemon.events("notify.retry"), 60, "a failed run", daemon.output)
        assert "exited with status 3: not yet" in daemon.events("notify.retry")[0]["error"]
        flag.touch()
        wait_for(lambda: daemon.events("notify.sent"), 60, "a run that succeeds", daemon.output)
        shutil.copy(TESTDATA / "bad.wav", inbox / "bad.wav")  # error: not an event it wants
        wait_for(lambda: daemon.events("stream.error"), 60, "the failure", daemon.output)
        time.sleep(1.5)
        assert len(daemon.events("notify.sent")) == 1
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("notify", "key", "words"),
    [
        ({"webhook": {"url": "http://127.0.0.1:9/h"}}, "notify.webhook.secret_file", "required"),
        (
            {"webhook": {"url": "ftp://x", "secret_file": "KEY"}},
            "notify.webhook.url",
            "not an http",
        ),
        (
            {"webhook": {"url": "http://h/", "secret_file": "KEY", "events": ["finished"]}},
            "notify.webhook.events[0]",
            "not an event",
        ),
        (
            {"webhook": {"url": "http://h/", "secret_file": "/nonexistent/key"}},
            "notify.webhook.secret_file",
            "cannot read",
        ),
        ({"exec": ["no-such-program-svwatchd"]}, "notify.exec[0]", "not in PATH"),
        ({"exec": "echo"}, "notify.exec", "expected a list"),
        ({"exec": {"events": ["done"]}}, "notify.exec.command", "is required"),
        ({"sms": {}}, "notify.sms", "unknown key"),
    ],
)
def test_notify_config_errors_name_the_key(
    tmp_path: Path, notify: dict[str, Any], key: str, words: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "KEY").write_text("k\n")
    hook = notify.get("webhook")
    if isinstance(hook, dict) and hook.get("secret_file") == "KEY":
        hook["secret_file"] = str(tmp_path / "KEY")
    watch = {"path": str(tmp_path / "in"), "output": {"dir": str(tmp_path / "o")}}
    cfg = write_config(tmp_path, "embedded", [watch], notify=notify)
    errors = validate_config(cfg)
    assert [e.key for e in errors] == [key], errors
    assert words in str(errors[0])
