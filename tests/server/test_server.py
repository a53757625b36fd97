"""svserver end to end: a real server process on 127.0.0.1, real SQLite, real pocketsphinx.

Whisper-specific behaviour is tested in test_whisper_server.py; the lifecycle
here is engine-independent, so it runs on the light engine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jiwer
import numpy as np
import pytest
import soundfile as sf

from svwatchd.client import DecodeStatus, Stream
from svwatchd.client.server import Server
from svwatchd.errors import (
    ClientClosedError,
    ServerRefusedError,
    ServerUnreachableError,
)
from tests.conftest import TESTDATA, speech_file
from tests.diskfull import fill, tiny_fs
from tests.normalise import normalise
from tests.svserver import SvServer, free_port

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SvServer, Path]]:
    """One pocketsphinx svserver for the module; files it may read live under ``root``."""
    speech_file("001.wav")  # skip the module when the test data is absent
    base = tmp_path_factory.mktemp("svserver")
    root = base / "root"
    root.mkdir()
    for name in ("001.wav", "005.wav", "goforward.raw", "something.raw"):
        shutil.copy(TESTDATA / name, root / name)
    srv = SvServer(
        base / "data",
        args=["--allow-root", str(root), "--allow-socket", "127.0.0.1"],
    ).start()
    yield srv, root
    srv.stop()


@pytest.fixture
def server(served: tuple[SvServer, Path]) -> Iterator[Server]:
    with Server(served[0].url, timeout=30) as client:
        yield client


def _wait(server: Server, streams: list[Stream], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.refreshstreams(streams)
        if all(s.isdone() for s in streams):
            return
        time.sleep(0.2)
    raise AssertionError(f"streams not done: {streams}")


def _until_active(stream: Stream, timeout: float) -> None:
    """Refresh a submitted stream until it is ACTIVE (or ``timeout`` seconds pass)."""
    deadline = time.monotonic() + timeout
    while not stream.isactive() and time.monotonic() < deadline:
        time.sleep(0.05)
        stream.refresh()


def _text(stream: Stream) -> str:
    return normalise(" ".join(u.text for u in stream.utterances()))


RAW = {"samprate": 16000, "encoding": "SPCM", "sampwidth": 2}


def test_transcripts_match_the_engine(served: tuple[SvServer, Path], server: Server) -> None:
    _, root = served
    streams = [
        Stream(root / "001.wav"),
        Stream(root / "005.wav"),
        Stream(root / "goforward.raw", **RAW),
        Stream(root / "something.raw", **RAW),
    ]
    server.decodestreams(streams)
    _wait(server, streams)
    assert [s.status for s in streams] == [DecodeStatus.DONE] * 4
    assert [_text(s) for s in streams] == [
        "ten of clubs",
        "eight of spades four of clubs seven of hearts",
        "go forward ten meters",
        "go somewhere and do something",
    ]
    for s in streams:
        utts = s.utterances()
        assert [u.start for u in utts] == sorted(u.start for u in utts)
        for u in utts:
            assert 0 <= u.confidence <= 1
            for w in u.words:
                assert u.start - 0.05 <= w.start <= w.end <= u.end + 0.05
        stats = s.stats()
        assert stats["utterances"] == len(utts) and stats["audio_seconds_decoded"] > 0
        assert s.start is not None and s.end is not None and s.start <= s.end


def _derived(root: Path, name: str, rate: int, subtype: str, channels: int = 1) -> Path:
    import soxr

    data, sr = sf.read(TESTDATA / "005.wav", dtype="float32")
    if rate != sr:
        data = soxr.resample(data, sr, rate)
    if channels > 1:
        data = np.stack([data, data * 0.5], axis=1)
    out = root / name
    sf.write(out, data, rate, subtype=subtype, format="WAV")
    return out


def test_expected_words_survive_format_conversions(
    served: tuple[SvServer, Path], server: Server
) -> None:
    _, root = served
    pcm = np.fromfile(TESTDATA / "goforward.raw", dtype="<i2")
    (root / "be.raw").write_bytes(pcm.astype(">i2").tobytes())
    (root / "u8.raw").write_bytes(((pcm >> 8) + 128).astype(np.uint8).tobytes())
    streams = [
        Stream(_derived(root, "mulaw.wav", 8000, "ULAW")),
        Stream(_derived(root, "alaw.wav", 8000, "ALAW")),
        Stream(_derived(root, "stereo48.wav", 48000, "PCM_16", channels=2)),
        Stream(_derived(root, "u8.wav", 16000, "PCM_U8")),
        Stream(root / "be.raw", samprate=16000, encoding="SPCM", sampwidth=2, endian="BIG"),
        Stream(root / "u8.raw", samprate=16000, encoding="UPCM", sampwidth=1),
    ]
    server.decodestreams(streams)
    _wait(server, streams)
    reference = "eight of spades four of clubs seven of hearts"
    for s in streams[:4]:
        assert s.status is DecodeStatus.DONE, s.error
        text = _text(s)
        # 8 kHz and 8-bit cost pocketsphinx "four of clubs" ("for a close"); the rest must
        # survive, which a wrong byte order, signedness or resampling would destroy.
        assert {"eight", "spades", "seven", "hearts"} <= set(text.split()), (s.sourcename(), text)
        assert jiwer.wer(reference, text) <= 0.34, (s.sourcename(), text)
    assert _text(streams[4]) == "go forward ten meters"  # big-endian: lossless
    assert _text(streams[5]).endswith("forward ten meters")  # 8-bit: "go" may go


def test_submission_is_idempotent(served: tuple[SvServer, Path], server: Server) -> None:
    _, root = served
    s = Stream(root / "001.wav", batch="idem")
    server.decodestreams(s)
    again = Stream(root / "001.wav", batch="idem")
    again.id = s.id
    server.decodestreams(again)  # a retry after a lost answer
    assert len(server.getstreams({"batch": "idem"})) == 1
    other = Stream(root / "005.wav", batch="idem")
    other.id = s.id
    with pytest.raises(ServerRefusedError) as err:
        server.decodestreams(other)
    assert err.value.status_code == 409


def test_a_failed_stream_may_be_sent_again_with_other_tags_only(
    served: tuple[SvServer, Path], server: Server
) -> None:
    """A stream that ended in ERROR is tried again under its id with new tags (a watch's
    metadata changed since); a finished stream, or another source, keeps its id's meaning."""
    _, root = served
    broken = root / "broken.raw"
    broken.write_bytes(b"\x01")  # less than one 16-bit frame: ERROR
    failed = Stream(broken, batch="retag", **RAW)
    done = Stream(root / "001.wav", batch="retag")
    server.decodestreams([failed, done])
    _wait(server, [failed, done])
    assert failed.iserror() and done.status is DecodeStatus.DONE
    retagged = Stream(broken, batch="retag", on_foreign="route", **RAW)
    retagged.id = failed.id
    server.decodestreams(retagged)
    (found,) = server.getstreams({"batch": "retag", "on_foreign": "route"})
    assert found.id == failed.id  # the server's record has the new tags
    _wait(server, [retagged])
    # new tags for a DONE stream, or another file under a failed stream's id: refused
    for other, taken in (
        (Stream(root / "001.wav", batch="other"), done),
        (Stream(root / "005.wav"), failed),
    ):
        other.id = taken.id
        with pytest.raises(ServerRefusedError) as err:
            server.decodestreams(other)
        assert err.value.status_code == 409 and "id_conflict" in str(err.value.detail)


def test_pocketsphinx_refuses_a_prompt_or_a_temperature(
    served: tuple[SvServer, Path], server: Server
) -> None:
    """Whisper's initial prompt and temperature (stream tags) mean nothing to pocketsphinx:
    refused at submission, naming the tag, never accepted and ignored."""
    _, root = served
    for tag, value in (("prompt", "Ten of clubs."), ("temperature", 0.4)):
        with pytest.raises(ServerRefusedError) as err:
            server.decodestreams(Stream(root / "001.wav", **{tag: value}))
        assert err.value.status_code == 400 and f"{tag}_unsupported" in str(err.value.detail)


def test_getstreams_union_of_tags(served: tuple[SvServer, Path], server: Server) -> None:
    _, root = served
    a = Stream(root / "001.wav", team="a", prio=1)
    b = Stream(root / "001.wav", team="b", prio=1)
    c = Stream(root / "001.wav", team="c", prio=2)
    server.decodestreams([a, b, c])
    ids = lambda streams: {s.id for s in streams}  # noqa: E731
    assert ids(server.getstreams({"team": "a"})) == {a.id}
    assert ids(server.getstreams({"team": "a"}, {"team": "c"})) == {a.id, c.id}
    assert ids(server.getstreams({"prio": 1})) >= {a.id, b.id}
    assert c.id not in ids(server.getstreams({"prio": 1}))
    assert ids(server.getstreams()) >= {a.id, b.id, c.id}


def test_pause_resume_close_delete(served: tuple[SvServer, Path], server: Server) -> None:
    _, root = served
    server.setparams(maxactive=1)
    try:
        streams = [Stream(root / "005.wav", group="pause") for _ in range(6)]
        server.decodestreams(streams)
        last = streams[-1]
        assert last.pause() and last.ispaused()
        _wait(server, streams[:-1])
        last.refresh()
        assert last.ispaused() and last.utterances() == []
        # resume from the pause: decoded in full
        assert last.resume()
        _wait(server, [last])
        assert last.status is DecodeStatus.DONE and _text(last).startswith("eight of spades")
    finally:
        server.setparams(maxactive=2)

    # resume(fromtime): utterances that end before it are skipped. 005.wav's wall-clock
    # anchor is its mtime minus its duration; move the mtime an hour back.
    old = root / "old.wav"
    shutil.copy(root / "005.wav", old)
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    skip_all, skip_none, skip_now = (Stream(old) for _ in range(3))
    for s in (skip_all, skip_none, skip_now):
        server.decodestreams(s)
        s.pause()
    assert skip_all.resume(datetime.now(UTC) - timedelta(minutes=5))
    assert skip_none.resume(datetime.now() - timedelta(hours=2))  # naive = local time
    assert skip_now.resume(-1)
    _wait(server, [skip_all, skip_none, skip_now])
    assert skip_all.utterances() == [] and skip_now.utterances() == []
    assert _text(skip_none).startswith("eight of spades")

    # close: CLOSED, kept visible; delete: tombstone, artifacts gone
    closing = Stream(root / "005.wav")
    server.decodestreams(closing)
    closing.pause()
    assert closing.close() and closing.isclosed() and closing.isdone()
    assert closing.id in {s.id for s in server.getstreams()}
    assert closing.delete() and closing.isdeleted()
    assert closing.id not in {s.id for s in server.getstreams()}
    closing.refresh()
    assert closing.status is DecodeStatus.DELETED
    with pytest.raises(ServerRefusedError, match="deleted"):
        closing.utterances()
    again = Stream(root / "005.wav")
    again.id = closing.id
    with pytest.raises(ServerRefusedError, match="deleted"):
        server.decodestreams(again)


def test_paths_outside_roots_are_refused_never_uploaded(
    served: tuple[SvServer, Path], server: Server, tmp_path: Path
) -> None:
    srv, root = served
    outside = tmp_path / "outside.wav"
    shutil.copy(TESTDATA / "001.wav", outside)
    link = root / "escape.wav"
    link.symlink_to(outside)
    shutil.copy(TESTDATA / "001.wav", root.parent / "sibling.wav")
    dotted = Stream(f"{root}/../sibling.wav")
    for s in (Stream(outside), Stream(link), dotted):
        with pytest.raises(ServerRefusedError) as err:
            server.decodestreams(s)
        assert err.value.status_code == 400 and "outside" in str(err.value)
    traversal = httpx.post(
        f"{srv.url}/v1/streams",
        json={
            "streams": [
                {
                    "id": "trav1",
                    "source": {"type": "file", "path": f"{root}" + "/.." * 12 + "/etc/passwd"},
                    "filetype": "RAW",
                    "format": {"encoding": "SPCM", "sampwidth": 2, "samprate": 16000},
                }
            ]
        },
    )
    assert traversal.status_code == 200
    assert traversal.json()["rejected"][0]["code"] == "path_not_allowed"
    assert not (srv.data_dir / "uploads" / "trav1").exists()
    nul = httpx.post(  # found by the fuzz test: was a 500
        f"{srv.url}/v1/streams",
        json={
            "streams": [
                {
                    "id": "nul1",
                    "source": {"type": "file", "path": f"{root}/a\u0000b.wav"},
                    "format": {"encoding": "SPCM", "sampwidth": 2, "samprate": 16000},
                }
            ]
        },
    )
    assert nul.status_code == 200 and nul.json()["rejected"][0]["code"] == "bad_path"


def test_explicit_upload(served: tuple[SvServer, Path], tmp_path: Path) -> None:
    srv, _ = served
    elsewhere = tmp_path / "mine.wav"
    shutil.copy(TESTDATA / "001.wav", elsewhere)
    with Server(srv.url, upload=True) as client:
        s = Stream(elsewhere)
        client.decodestreams(s)
        _wait(client, [s])
        assert _text(s) == "ten of clubs"
        client.decodestreams(s)  # resending is harmless
        assert s.status is DecodeStatus.DONE


def test_malformed_audio_ends_in_error_naming_the_file(
    served: tuple[SvServer, Path], server: Server
) -> None:
    _, root = served
    tiny = root / "tiny.raw"
    tiny.write_bytes(b"\x01")  # less than one 16-bit frame
    s = Stream(tiny, **RAW)
    server.decodestreams(s)
    _wait(server, [s])
    assert s.iserror() and "tiny.raw" in (s.error or "")
    ok = Stream(root / "001.wav")
    server.decodestreams(ok)  # the server keeps going
    _wait(server, [ok])
    assert ok.status is DecodeStatus.DONE


def test_socket_host_must_be_allowed(served: tuple[SvServer, Path], server: Server) -> None:
    s = Stream(("192.0.2.1", 9), samprate=8000, encoding="ULAW")
    with pytest.raises(ServerRefusedError, match="not allowed"):
        server.decodestreams(s)


def _feeder(
    pcm: bytes, rate_bytes: int, *, lead_silence: float = 0.0
) -> tuple[int, threading.Thread]:
    """A loopback TCP source that sends ``pcm`` at real-time pace, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            chunk = rate_bytes // 10
            data = b"\0" * int(lead_silence * rate_bytes) + pcm
            for i in range(0, len(data), chunk):
                conn.sendall(data[i : i + chunk])
                time.sleep(0.1)
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_live_socket_stream(served: tuple[SvServer, Path], server: Server) -> None:
    pcm = (TESTDATA / "goforward.raw").read_bytes()
    silence = b"\0" * 32000 * 2
    feed = pcm + silence + (TESTDATA / "something.raw").read_bytes() + silence
    port, thread = _feeder(feed, 32000)
    s = Stream(("127.0.0.1", port), **RAW)
    server.decodestreams(s)
    got: list[tuple[float, str]] = []
    began = time.monotonic()
    for utt in s.listen():
        got.append((time.monotonic() - began, utt.text))
    feed_seconds = len(feed) / 32000
    assert got, "no utterance reached the listener"
    assert got[0][0] < feed_seconds - 1.0, "first utterance arrived only at the end"
    s.refresh()
    assert s.status is DecodeStatus.DONE
    assert s.sourceseconds() == pytest.approx(feed_seconds, abs=0.05)
    text = normalise(" ".join(t for _, t in got))
    assert text == "go forward ten meters go somewhere and do something"
    thread.join(5)


def test_token_auth(tmp_path: Path) -> None:
    speech_file("001.wav")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    srv = SvServer(tmp_path / "data", args=["--token-file", str(token)], workers=1).start()
    try:
        with Server(srv.url) as anon, pytest.raises(ServerRefusedError) as err:
            anon.status()
        assert err.value.status_code == 401
        with Server(srv.url, token="wrong") as bad, pytest.raises(ServerRefusedError) as err:
            bad.status()
        assert err.value.status_code == 401 and "token" in str(err.value)
        with Server(srv.url, token="s3cret") as good:
            assert "streams" in good.status()
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        # svctl takes the token from $SVSERVER_TOKEN, and says what is wrong without it
        ctl = [sys.executable, "-m", "svwatchd._ctl", "--server", srv.url, "status"]
        env = {k: v for k, v in os.environ.items() if k != "SVSERVER_TOKEN"}
        ok = subprocess.run(ctl, env={**env, "SVSERVER_TOKEN": "s3cret"}, capture_output=True)
        assert ok.returncode == 0 and b"streams" in ok.stdout
        refused = subprocess.run(ctl, env=env, capture_output=True, text=True)
        assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout
    finally:
        srv.stop()


def test_unreachable_server_is_retryable_error() -> None:
    with (
        Server(f"127.0.0.1:{free_port()}", timeout=2) as client,
        pytest.raises(ServerUnreachableError, match="Cannot reach"),
    ):
        client.status()
    closed = Server("localhost")
    closed.close()
    with pytest.raises(ClientClosedError, match="closed"):
        closed.status()


def test_kill_9_and_restart_loses_nothing_duplicates_nothing(tmp_path: Path) -> None:
    speech_file("001.wav")
    root = tmp_path / "root"
    root.mkdir()
    for i in range(12):
        shutil.copy(TESTDATA / "005.wav", root / f"c{i:02d}.wav")
    srv = SvServer(tmp_path / "data", args=["--allow-root", str(root)], workers=1).start()
    streams = [Stream(p) for p in sorted(root.iterdir())]
    with Server(srv.url) as client:
        client.decodestreams(streams)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once some, not all, are done
            client.refreshstreams(streams)
            if any(s.isdone() for s in streams):
                break
            time.sleep(0.05)
    srv.kill()
    srv.start()
    with Server(srv.url) as client:
        for s in streams:
            s._bind(client)
        _wait(client, streams)
        for s in streams:
            assert s.status is DecodeStatus.DONE, s.error
            texts = [u.text for u in s.utterances()]
            assert normalise(" ".join(texts)) == "eight of spades four of clubs seven of hearts"
        assert len(client.getstreams()) == len(streams)
    srv.stop()


def test_data_dir_is_locked_and_streams_by_id(
    served: tuple[SvServer, Path], server: Server
) -> None:
    srv, root = served
    second = SvServer(srv.data_dir, workers=1)
    with pytest.raises(RuntimeError, match="Another svserver") as refused:
        second.start(timeout=60)
    # one line naming the lock and what to do, exit status 2: no start-up traceback
    assert "svserver exited 2" in str(refused.value)
    assert "--data-dir" in str(refused.value) and "Traceback" not in str(refused.value)
    s = Stream(root / "001.wav")
    server.decodestreams(s)
    found, missing = server.getstreamsbyid([s.id, "no-such-id"])
    assert [f.id for f in found] == [s.id] and missing == ["no-such-id"]
    assert found[0].sourcename() == "001.wav" and found[0].tags == {}
    s.delete()
    (gone,), _ = server.getstreamsbyid([s.id])
    assert gone.isdeleted()


def test_svctl_commands(served: tuple[SvServer, Path]) -> None:
    import subprocess
    import sys

    srv, root = served

    def svctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "svwatchd._ctl", "--server", srv.url, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    run = svctl("decode", str(root / "001.wav"), "--wait", "--format", "srt", "--meta", "team=ctl")
    assert run.returncode == 0, run.stderr
    assert "00:00:0" in run.stdout and " --> " in run.stdout
    assert normalise(run.stdout.split("\n", 2)[2]) == "ten of clubs"
    listed = svctl("streams", "--tag", "team=ctl")
    assert listed.returncode == 0 and "001.wav" in listed.stdout and "DONE" in listed.stdout
    stream_id = listed.stdout.split()[0]
    assert svctl("delete", stream_id).returncode == 0
    assert "001.wav" not in svctl("streams", "--tag", "team=ctl").stdout
    assert '"streams"' in svctl("status").stdout and '"engine"' in svctl("sysinfo").stdout
    params = svctl("params", "pack_max=4")
    assert params.returncode == 0 and '"pack_max": 4' in params.stdout
    bad = svctl("decode", str(root / "nope.wav"))
    assert bad.returncode == 2 and "nope.wav" in bad.stderr


def test_paused_socket_keeps_receiving(served: tuple[SvServer, Path], server: Server) -> None:
    pcm = (TESTDATA / "goforward.raw").read_bytes()
    silence = b"\0" * 32000
    feed = silence + pcm + silence * 2 + pcm + silence
    port, thread = _feeder(feed, 32000)
    s = Stream(("127.0.0.1", port), **RAW)
    server.decodestreams(s)
    _until_active(s, 30)
    assert s.pause()
    time.sleep(2.0)
    s.refresh()
    received = s.sourceseconds() or 0.0
    assert received > 1.0 and s.utterances() == []  # spooled while paused, not decoded
    thread.join(30)  # the feeder has sent everything
    time.sleep(0.5)
    s.refresh()
    assert s.ispaused() and s.sourceseconds() == pytest.approx(len(feed) / 32000, abs=0.05)
    assert s.resume()
    for _ in s.listen():
        pass
    s.refresh()
    assert s.status is DecodeStatus.DONE
    assert normalise(" ".join(u.text for u in s.utterances())) == (
        "go forward ten meters go forward ten meters"
    )


def test_listeners_are_visible_and_delete_removes_the_upload(
    served: tuple[SvServer, Path], server: Server, tmp_path: Path
) -> None:
    srv, _ = served
    pcm = (TESTDATA / "goforward.raw").read_bytes()
    port, thread = _feeder(pcm + b"\0" * 64000 + pcm + b"\0" * 32000, 32000)
    live = Stream(("127.0.0.1", port), **RAW)
    server.decodestreams(live)
    seen = []
    for _ in live.listen():
        live.refresh()
        seen.append(live.listenerinfo())
    thread.join(10)
    (info,) = seen[0]  # the first utterance comes seconds before the feed ends
    assert info["address"].startswith("127.0.0.1:") and info["since"].endswith("Z")
    # after the last utterance the server may already have ended the listen (the stream is
    # done) before this refresh: the listener is then gone, which is the end state anyway
    for n, listeners in enumerate(seen, start=1):
        assert listeners == [] or listeners[0]["sent"] == n, seen
    live.refresh()
    assert live.listenerinfo() == []

    elsewhere = tmp_path / "up.wav"
    shutil.copy(TESTDATA / "005.wav", elsewhere)
    with Server(srv.url, upload=True) as client:
        s = Stream(elsewhere)
        client.decodestreams(s)
        assert (srv.data_dir / "uploads" / s.id).exists()
        assert s.delete()
        assert not (srv.data_dir / "uploads" / s.id).exists()


def _live_until(srv: SvServer, port: int, cond: Callable[[Stream], bool]) -> Stream:
    """Submit a socket stream from ``port`` and poll until ``cond`` holds (60 s at most)."""
    s = Stream(("127.0.0.1", port), **RAW)
    with Server(srv.url) as client:
        client.decodestreams(s)
        deadline = time.monotonic() + 60
        while not cond(s) and time.monotonic() < deadline:
            time.sleep(0.2)
    return s


def test_socket_stream_reconnects_after_kill_9(tmp_path: Path) -> None:
    # decisions: a socket stream goes back to QUEUED after a crash and reconnects; what
    # it committed is kept, decoding goes on from the committed spool offset, nothing twice
    speech_file("goforward.raw")
    silence = b"\0" * 32000 * 2
    parts = [
        (TESTDATA / "goforward.raw").read_bytes() + silence,
        (TESTDATA / "something.raw").read_bytes() + silence,
    ]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[float] = []

    def serve() -> None:  # one part per connection; what a dead server missed is lost
        for part in parts:
            conn, _ = listener.accept()
            connections.append(time.monotonic())
            with conn, contextlib.suppress(OSError):  # the first one dies with the server
                for i in range(0, len(part), 3200):
                    conn.sendall(part[i : i + 3200])
                    time.sleep(0.1)
                if part is parts[0]:
                    conn.settimeout(120)
                    while conn.recv(4096):  # hold the line until the server dies
                        pass
        listener.close()

    feeder = threading.Thread(target=serve, daemon=True)
    feeder.start()
    srv = SvServer(tmp_path / "data", args=["--allow-socket", "127.0.0.1"], workers=1).start()
    try:
        seen: list[str] = []

        def first_utterance(s: Stream) -> bool:
            seen[:] = [u.text for u in s.utterances()]
            return bool(seen)

        s = _live_until(srv, port, first_utterance)
        assert normalise(" ".join(seen)) == "go forward ten meters"
        srv.kill()
        srv.start()
        with Server(srv.url) as client:
            s._bind(client)
            _wait(client, [s], timeout=120)
            assert s.status is DecodeStatus.DONE, s.error
            assert len(connections) == 2  # it connected again after the restart
            assert _text(s) == "go forward ten meters go somewhere and do something"
            assert len(client.getstreams()) == 1
    finally:
        srv.stop()
    feeder.join(10)


def test_sigterm_with_a_silent_socket_source_stops_promptly(tmp_path: Path) -> None:
    # a live session ending at shutdown used to wake the scheduler as it was cancelled;
    # asyncio.wait_for swallowed the cancel and svserver never exited
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    srv = SvServer(tmp_path / "data", args=["--allow-socket", "127.0.0.1"], workers=1).start()
    try:

        def connected(s: Stream) -> bool:
            s.refresh()
            return s.isactive() and bool(accepted)

        s = _live_until(srv, port, connected)
        assert s.isactive() and accepted  # connected; the source sends nothing
        began = time.monotonic()
        srv.stop(timeout=20)
        assert time.monotonic() - began < 10
        srv.start()
        with Server(srv.url) as client:
            s._bind(client)
            s.refresh()
            assert s.status in (DecodeStatus.QUEUED, DecodeStatus.ACTIVE)  # not ERROR
    finally:
        srv.stop()
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.privileged
def test_full_disk_while_decoding_stores_nothing_and_requeues(tmp_path: Path) -> None:
    # results that cannot be committed are not kept: the stream stays ACTIVE, is queued
    # again once the store can be written, and is decoded then; nothing is stored twice
    speech_file("001.wav")
    root = tmp_path / "root"
    root.mkdir()
    names = sorted(p.name for p in TESTDATA.glob("sense_and_sensibility_*.wav"))
    audio = np.concatenate([sf.read(TESTDATA / n, dtype="int16")[0] for n in names] * 2)
    sf.write(root / "long.wav", audio, 16000, subtype="PCM_16")  # seconds of decoding
    shutil.copy(root / "long.wav", root / "again.wav")
    with tiny_fs(tmp_path / "data", "4m") as data:
        srv = SvServer(data, args=["--allow-root", str(root)], workers=1).start()
        try:
            long = Stream(root / "long.wav")
            with Server(srv.url) as client:
                client.decodestreams(long)
                _until_active(long, 60)
                assert long.isactive()
                with sqlite3.connect(data / "svserver.db") as db:  # every commit must grow it
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                filler = fill(data)
                deadline = time.monotonic() + 120
                while "decode.commit_failed" not in srv.output():
                    assert time.monotonic() < deadline, srv.output()[-3000:]
                    time.sleep(0.2)
                long.refresh()
                assert long.isactive() and long.utterances() == []  # nothing kept
                (data / "crumbs").unlink()
                filler.unlink()
                again = Stream(root / "again.wav")  # the same audio, decoded once, for reference
                client.decodestreams(again)
                _wait(client, [long, again], timeout=240)
                assert long.status is DecodeStatus.DONE, long.error
                texts = [u.text for u in long.utterances()]
                assert texts and texts == [u.text for u in again.utterances()]  # not twice
            out = srv.output()
            assert "decode.requeued" in out and "scheduler.dispatch_failed" not in out
            assert out.count("scheduler.store_failed") <= 2  # once per problem
        finally:
            srv.stop()


def test_refresh_and_lookup_of_thousands_with_deleted_and_unknown_ids(tmp_path: Path) -> None:
    """One refresh request for 3,000 streams: each gets its state, deleted ones say DELETED;
    asked by id with ids the server never had, those are named as missing."""
    speech_file("001.wav")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(TESTDATA / "001.wav", root / "001.wav")
    srv = SvServer(tmp_path / "data", args=["--allow-root", str(root)], workers=1).start()
    try:
        with Server(srv.url, timeout=60) as server:
            streams = [Stream(root / "001.wav", n=n) for n in range(3000)]
            server.decodestreams(streams)
            gone = streams[:10]
            assert server.deletestreams(gone)
            for s in streams:
                s.status = None
            server.refreshstreams(streams)  # one request
            assert {s.status for s in gone} == {DecodeStatus.DELETED}
            assert all(s.status is not None for s in streams)
            assert {s.status for s in streams[10:]} <= {
                DecodeStatus.QUEUED,
                DecodeStatus.ACTIVE,
                DecodeStatus.DONE,
            }
            # the daemon's way (ids, not Stream objects), with ids the server never had
            strangers = [f"never-{n}" for n in range(5)]
            known, missing = server.getstreamsbyid([s.id for s in streams] + strangers)
            assert sorted(missing) == strangers and len(known) == 3000
            assert {s.status for s in known if s.id in {g.id for g in gone}} == {
                DecodeStatus.DELETED
            }
    finally:
        srv.stop()
