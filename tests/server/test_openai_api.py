"""svserver's OpenAI-compatible endpoint through the real ``openai`` SDK, against a real
svserver (Whisper tiny.en) on 127.0.0.1 with a bearer token and a small upload limit.

Transcripts are compared through :func:`tests.normalise.normalise`, never as exact
strings; the prompt and temperature tests compare a decode with and without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from svwatchd._ctl import main as svctl
from svwatchd.client import Server
from tests.conftest import reference, speech_file
from tests.media_files import write_format
from tests.normalise import normalise
from tests.svserver import SvServer

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

TOKEN = "openai-test-token"
MAX_UPLOAD = 4 * 1024 * 1024
SENSE = "sense_and_sensibility_01_austen_64kb-0930.wav"
CARDS = "005.wav"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SvServer]:
    """One Whisper svserver for the module: a token, uploads up to 4 MiB."""
    speech_file(SENSE)
    base = tmp_path_factory.mktemp("openai")
    token_file = base / "token"
    token_file.write_text(TOKEN + "\n")
    srv = SvServer(
        base / "data",
        engine="whisper",
        workers=1,
        args=["--token-file", str(token_file), "--max-upload", str(MAX_UPLOAD)],
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(served: SvServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key=TOKEN, max_retries=0) as c:
        yield c


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}


def _openai_streams(srv: SvServer) -> list[dict[str, object]]:
    body = {"match": [{"via": "openai"}]}
    answer = httpx.post(f"{srv.url}/v1/streams/query", json=body, headers=_auth(), timeout=30)
    streams: list[dict[str, object]] = answer.raise_for_status().json()["streams"]
    return streams


def _long_wav(path: Path, seconds: float) -> Path:
    """Read speech repeated to ``seconds`` (the shared clips back to back), as WAV."""
    clip, rate = sf.read(speech_file(SENSE), dtype="float32")
    reps = int(np.ceil(seconds * rate / len(clip)))
    sf.write(path, np.tile(clip, reps)[: int(seconds * rate)], rate, subtype="PCM_16")
    return path


def test_json_is_the_default(client: openai.OpenAI) -> None:
    answer = client.audio.transcriptions.create(model="whisper-1", file=speech_file(SENSE))
    assert normalise(answer.text) == reference(SENSE)
    assert answer.usage is not None and answer.usage.type == "duration"
    assert answer.usage.seconds == pytest.approx(3.29, abs=0.05)


def test_a_container_is_decoded(client: openai.OpenAI, tmp_path: Path) -> None:
    """Any format svserver decodes: the same speech as FLAC, named without an extension."""
    samples, rate = sf.read(speech_file(SENSE), dtype="float32")
    flac = tmp_path / "speech"
    sf.write(flac, samples, rate, format="FLAC")
    answer = client.audio.transcriptions.create(model="tiny.en", file=flac)
    assert normalise(answer.text) == reference(SENSE)


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_text_and_subtitles(client: openai.OpenAI, fmt: str) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=speech_file(SENSE), response_format=fmt
    )
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    text = raw.parse()
    assert isinstance(text, str)
    if fmt == "srt":
        assert text.startswith("1\n00:00:00,")
        assert " --> 00:00:0" in text
    elif fmt == "vtt":
        assert text.startswith("WEBVTT\n\n00:00:00.")
    else:
        assert text.endswith("\n") and "-->" not in text
    spoken = [line for line in text.splitlines() if line and "-->" not in line]
    spoken = [line for line in spoken if line not in ("WEBVTT", "1")]
    assert normalise(" ".join(spoken)) == reference(SENSE)


def test_verbose_json_words_and_segments(client: openai.OpenAI) -> None:
    answer = client.audio.transcriptions.create(
        model="whisper-1",
        file=speech_file(SENSE),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert answer.language == "english"
    assert answer.duration == pytest.approx(3.29, abs=0.05)
    assert normalise(answer.text) == reference(SENSE)
    data = answer.model_dump()
    assert data["task"] == "transcribe"
    assert data["usage"] == {"type": "duration", "seconds": answer.duration}
    assert answer.words is not None and answer.segments is not None
    assert normalise(" ".join(w.word for w in answer.words)) == reference(SENSE)
    starts = [w.start for w in answer.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= answer.duration for w in answer.words)
    (segment,) = answer.segments
    assert segment.id == 0 and segment.start == answer.words[0].start
    assert segment.end == answer.words[-1].end
    assert -1.0 < segment.avg_logprob < 0.0  # clear read speech: words Whisper was sure of
    assert 0.5 < segment.compression_ratio < 2.4
    assert segment.temperature == 0.0 and segment.tokens == [] and segment.no_speech_prob == 0.0


def test_verbose_json_gives_segments_unless_words_are_asked(client: openai.OpenAI) -> None:
    answer = client.audio.transcriptions.create(
        model="whisper-1", file=speech_file(SENSE), response_format="verbose_json"
    )
    assert answer.segments and answer.words is None
    words = client.audio.transcriptions.create(
        model="whisper-1",
        file=speech_file(SENSE),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words.words and words.segments is None


def _refusal(call: object) -> openai.APIStatusError:
    assert callable(call)
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value


def _error(exc: openai.APIStatusError) -> dict[str, object]:
    assert isinstance(exc.body, dict)
    assert set(exc.body) == {"message", "type", "param", "code"}  # OpenAI's shape
    return exc.body


def test_granularities_need_verbose_json(client: openai.OpenAI) -> None:
    exc = _refusal(
        lambda: client.audio.transcriptions.create(
            model="whisper-1", file=speech_file(SENSE), timestamp_granularities=["word"]
        )
    )
    assert exc.status_code == 400
    error = _error(exc)
    assert error["param"] == "timestamp_granularities[]"
    assert error["type"] == "invalid_request_error"
    assert "verbose_json" in str(error["message"])


def test_language(client: openai.OpenAI, served: SvServer) -> None:
    answer = client.audio.transcriptions.create(
        model="whisper-1", file=speech_file(SENSE), language="en", response_format="verbose_json"
    )
    assert answer.language == "english" and normalise(answer.text) == reference(SENSE)
    tags = [s["tags"] for s in _openai_streams(served)]
    assert any(isinstance(t, dict) and t.get("language") == "en" for t in tags)
    for code, problem in (("de", "English-only"), ("english", "ISO-639-1")):
        exc = _refusal(
            lambda code=code: client.audio.transcriptions.create(
                model="whisper-1", file=speech_file(SENSE), language=code
            )
        )
        assert exc.status_code == 400
        error = _error(exc)
        assert error["param"] == "language" and problem in str(error["message"])


def test_prompt_reaches_whisper(client: openai.OpenAI) -> None:
    """tiny.en writes the card clip's numbers as digits; a prompt in words changes that."""
    plain = client.audio.transcriptions.create(
        model="whisper-1", file=speech_file(CARDS), response_format="text"
    )
    prompted = client.audio.transcriptions.create(
        model="whisper-1",
        file=speech_file(CARDS),
        response_format="text",
        prompt="Ten of clubs. Eight of spades, four of clubs, seven of hearts.",
    )
    assert "8" in plain and "Eight" not in plain
    assert "Eight of spades" in prompted and "8" not in prompted


def test_temperature_reaches_whisper(client: openai.OpenAI) -> None:
    """Each segment says the temperature it was decoded at: 1.0 when asked, 0.0 (greedy)
    otherwise. (Whether the best of the sampled candidates reads differently from greedy
    depends on the draws, so the text is not compared.)"""
    name = "sense_and_sensibility_01_austen_64kb-0880.wav"
    greedy = client.audio.transcriptions.create(
        model="whisper-1", file=speech_file(name), response_format="verbose_json"
    )
    sampled = client.audio.transcriptions.create(
        model="whisper-1", file=speech_file(name), response_format="verbose_json", temperature=1.0
    )
    assert greedy.segments and all(s.temperature == 0.0 for s in greedy.segments)
    assert sampled.segments and all(s.temperature == 1.0 for s in sampled.segments)
    exc = _refusal(
        lambda: client.audio.transcriptions.create(
            model="whisper-1", file=speech_file(name), temperature=1.5
        )
    )
    assert exc.status_code == 400 and _error(exc)["param"] == "temperature"


def test_models_and_a_bad_model_name(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["whisper-1", "tiny.en"]
    exc = _refusal(
        lambda: client.audio.transcriptions.create(model="whisper-9", file=speech_file(SENSE))
    )
    assert exc.status_code == 400
    error = _error(exc)
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert "whisper-1, tiny.en" in str(error["message"])


def test_missing_file(served: SvServer) -> None:
    """The SDK cannot leave the file out; a plain form can."""
    answer = httpx.post(
        f"{served.url}/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"model_card": (None, b"")},  # multipart, and still no file part
        headers=_auth(),
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "model_card"  # an unknown field is refused too
    answer = httpx.post(
        f"{served.url}/v1/audio/transcriptions",
        files={"model": (None, b"whisper-1")},
        headers=_auth(),
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "file" and error["code"] == "missing_required_parameter"


def test_a_file_that_is_not_audio(client: openai.OpenAI, served: SvServer) -> None:
    before = set((served.data_dir / "uploads").iterdir())
    exc = _refusal(
        lambda: client.audio.transcriptions.create(
            model="whisper-1", file=("notes.wav", b"these are not samples" * 50)
        )
    )
    assert exc.status_code == 400
    error = _error(exc)
    assert error["param"] == "file" and "notes.wav" in str(error["message"])
    assert set((served.data_dir / "uploads").iterdir()) == before  # nothing kept


def test_an_oversized_upload(client: openai.OpenAI, served: SvServer, tmp_path: Path) -> None:
    big = _long_wav(tmp_path / "long.wav", 140)  # 4.5 MB of 16 kHz 16-bit
    assert big.stat().st_size > MAX_UPLOAD
    exc = _refusal(lambda: client.audio.transcriptions.create(model="whisper-1", file=big))
    assert exc.status_code == 413
    assert str(MAX_UPLOAD) in str(_error(exc)["message"])
    # chunked, no Content-Length: the upload itself counts and refuses

    def body() -> Iterator[bytes]:
        boundary = b"--b0undary\r\n"
        yield boundary + b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
        data = big.read_bytes()
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]
        yield b"\r\n--b0undary--\r\n"

    headers = {**_auth(), "content-type": "multipart/form-data; boundary=b0undary"}
    answer = httpx.post(
        f"{served.url}/v1/audio/transcriptions", content=body(), headers=headers, timeout=60
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"


def test_the_token(served: SvServer) -> None:
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            c.audio.transcriptions.create(model="whisper-1", file=speech_file(SENSE))
        assert _error(caught.value)["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
    for path in ("/v1/models", "/v1/audio/transcriptions"):  # no token at all
        answer = httpx.post(f"{served.url}{path}", files={"model": (None, b"whisper-1")})
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "invalid_request_error"


def test_a_stream_like_any_other(client: openai.OpenAI, served: SvServer) -> None:
    """Each request is an upload stream tagged via=openai, listed by ``svctl streams`` with
    its transcript; its audio is not kept once answered (nothing piles up in uploads/)."""
    client.audio.transcriptions.create(model="whisper-1", file=speech_file(SENSE))
    streams = _openai_streams(served)
    assert streams and all(s["status"] == "DONE" for s in streams)
    newest = max(streams, key=lambda s: str(s["created"]))  # ISO 8601, UTC
    sid = str(newest["id"])
    assert sid.startswith("openai-") and newest["source"] == SENSE
    assert not (served.data_dir / "uploads" / sid).exists()
    assert not [p for p in (served.data_dir / "uploads").iterdir() if p.name.startswith("openai-")]
    with Server(served.url, token=TOKEN) as server:
        (stream,), _ = server.getstreamsbyid([sid])
        assert "amiable" in " ".join(u.text for u in server.utterances(stream))
    out = StringIO()
    args = ["--server", served.url, "--token", TOKEN, "streams", "--tag", "via=openai"]
    with redirect_stdout(out):
        assert svctl(args) == 0
    assert f"{sid}  DONE" in out.getvalue()


def test_a_client_that_leaves_cancels_its_stream(served: SvServer, tmp_path: Path) -> None:
    long = _long_wav(tmp_path / "minute.wav", 60)
    known = {s["id"] for s in _openai_streams(served)}
    failure: list[BaseException] = []

    def ask_and_leave() -> None:
        timeout = httpx.Timeout(30, read=1.0)  # gives up while the file is decoded
        try:
            httpx.post(
                f"{served.url}/v1/audio/transcriptions",
                data={"model": "whisper-1"},
                files={"file": ("minute.wav", long.read_bytes())},
                headers=_auth(),
                timeout=timeout,
            )
        except httpx.ReadTimeout:
            return
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    leaver = threading.Thread(target=ask_and_leave)
    leaver.start()
    sid = None
    deadline = time.monotonic() + 30
    while sid is None and time.monotonic() < deadline:
        new = [s["id"] for s in _openai_streams(served) if s["id"] not in known]
        sid = str(new[0]) if new else None
        time.sleep(0.05)
    leaver.join(60)
    assert not failure and sid is not None, failure
    states: list[str] = []
    while time.monotonic() < deadline:
        answer = httpx.post(
            f"{served.url}/v1/streams/refresh", json={"ids": [sid]}, headers=_auth()
        )
        states.append(answer.json()["streams"][0]["status"])
        if states[-1] != "ACTIVE" and states[-1] != "QUEUED":
            break
        time.sleep(0.1)
    assert states[-1] == "DELETED", json.dumps(states[-5:])
    assert not (served.data_dir / "uploads" / sid).exists()


def _readme_section() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return readme.split("### OpenAI-compatible endpoint", 1)[1].split("\n## ", 1)[0]


def test_the_readme_examples(served: SvServer, tmp_path: Path) -> None:
    """The README's curl line and Python snippet, as written but for the server's address,
    its token and the file (an M4A made from the shared speech)."""
    samples, rate = sf.read(speech_file(SENSE), dtype="float32")
    write_format(tmp_path / "call.m4a", samples, rate)
    (tmp_path / "token").write_text(TOKEN)
    section = _readme_section().replace("http://127.0.0.1:8750", served.url)
    curl = section.split("    curl ", 1)[1].split("\n\n", 1)[0]
    command = "curl -sS " + curl.replace("\\\n", " ").replace("/etc/svserver/token", "token")
    done = subprocess.run(
        command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1\n00:00:00,")
    srt_text = " ".join(line for line in done.stdout.splitlines()[2:] if line)
    assert normalise(srt_text) == reference(SENSE)
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace("<svserver's token, or anything without one>", TOKEN)
    done = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    text, first_start = done.stdout.rsplit(" ", 1)  # the text, then words[0].start
    assert normalise(text) == reference(SENSE) and 0.0 <= float(first_start) < 1.0
