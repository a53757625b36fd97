"""resume(fromtime) of a live socket stream, through svctl: the audio spooled while the
stream was paused is decoded from the time asked, earlier speech skipped.

A loopback feeder sends, at real-time pace: 1 s of silence, "go forward ten
meters", 2 s of silence, "go somewhere and do something", 1 s of silence. The
stream is paused as soon as it is ACTIVE, so everything arrives into the spool
undecoded; then ``svctl resume --from`` (an ISO time between the two phrases,
or ``now``) resumes it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from svwatchd.client import Server, Stream
from svwatchd.model.enums import DecodeStatus
from tests.conftest import TESTDATA, speech_file
from tests.normalise import normalise
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(180)

RATE_BYTES = 32000  # 16 kHz, 16-bit mono
RAW = {"samprate": 16000, "encoding": "SPCM", "sampwidth": 2}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SvServer]:
    speech_file("goforward.raw")
    srv = SvServer(
        tmp_path_factory.mktemp("live") / "data", args=["--allow-socket", "127.0.0.1"]
    ).start()
    yield srv
    srv.stop()


class Feed:
    """The feed above, sent at real time; ``second_at`` is when the second phrase began."""

    def __init__(self) -> None:
        first = (TESTDATA / "goforward.raw").read_bytes()
        second = (TESTDATA / "something.raw").read_bytes()
        gap = b"\0" * (2 * RATE_BYTES)
        self.parts = [b"\0" * RATE_BYTES, first, gap, second, b"\0" * RATE_BYTES]
        self.second_start = (RATE_BYTES + len(first) + len(gap)) / RATE_BYTES  # stream seconds
        self.first_end = (RATE_BYTES + len(first)) / RATE_BYTES
        self.second_at: float | None = None  # wall clock
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            for k, part in enumerate(self.parts):
                if k == 3:
                    self.second_at = time.time()
                for i in range(0, len(part), RATE_BYTES // 10):
                    conn.sendall(part[i : i + RATE_BYTES // 10])
                    time.sleep(0.1)
        self.listener.close()


def _svctl(srv: SvServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "svwatchd._ctl", "--server", srv.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _paused_while_fed(server: Server) -> tuple[Stream, Feed]:
    feed = Feed()
    stream = Stream(("127.0.0.1", feed.port), **RAW)
    server.decodestreams(stream)
    deadline = time.monotonic() + 30
    while not stream.isactive() and time.monotonic() < deadline:
        time.sleep(0.02)
        stream.refresh()
    assert stream.pause()
    feed.thread.join(60)  # everything is spooled, nothing decoded
    time.sleep(0.5)
    stream.refresh()
    assert stream.ispaused() and stream.utterances() == []
    return stream, feed


def _finished(stream: Stream) -> None:
    for _ in stream.listen():
        pass
    stream.refresh()
    assert stream.status is DecodeStatus.DONE


def test_resume_from_a_time_skips_what_ended_before_it(live: SvServer) -> None:
    with Server(live.url, timeout=30) as server:
        stream, feed = _paused_while_fed(server)
        assert feed.second_at is not None
        between = datetime.fromtimestamp(feed.second_at - 1.0, UTC)  # in the 2 s gap
        resumed = _svctl(live, "resume", stream.id, "--from", between.isoformat())
        assert resumed.returncode == 0, resumed.stderr
        _finished(stream)
        utts = stream.utterances()
        assert normalise(" ".join(u.text for u in utts)) == "go somewhere and do something"
        # times stay on the stream's own timeline: the phrase began 2 s after the first ended
        assert utts[0].start == pytest.approx(feed.second_start, abs=0.5)
        assert utts[0].start > feed.first_end + 1.0


def test_resume_from_now_skips_everything_spooled(live: SvServer) -> None:
    with Server(live.url, timeout=30) as server:
        stream, _ = _paused_while_fed(server)
        resumed = _svctl(live, "resume", stream.id, "--from", "now")
        assert resumed.returncode == 0, resumed.stderr
        _finished(stream)
        assert stream.utterances() == []


def test_resume_without_a_time_decodes_everything(live: SvServer) -> None:
    with Server(live.url, timeout=30) as server:
        stream, _ = _paused_while_fed(server)
        assert _svctl(live, "resume", stream.id).returncode == 0
        _finished(stream)
        assert normalise(" ".join(u.text for u in stream.utterances())) == (
            "go forward ten meters go somewhere and do something"
        )
