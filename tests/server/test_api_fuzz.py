"""Malformed requests never make svserver answer 500, and every route declares its errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import speech_file
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    speech_file("001.wav")
    base = tmp_path_factory.mktemp("fuzz")
    srv = SvServer(base / "data", args=["--allow-root", str(base)], workers=1).start()
    yield srv.url
    srv.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

stream_like = st.fixed_dictionaries(
    {
        "id": st.text(max_size=20) | st.integers(),
        "source": st.one_of(
            st.fixed_dictionaries({"type": st.just("file"), "path": st.text(max_size=40)}),
            st.fixed_dictionaries(
                {"type": st.just("socket"), "host": st.text(max_size=10), "port": st.integers()}
            ),
            json_values,
        ),
        "format": st.one_of(
            st.fixed_dictionaries(
                {
                    "encoding": st.sampled_from(["SPCM", "ULAW", "XX", ""]),
                    "sampwidth": st.integers(-2, 6),
                    "samprate": st.integers(0, 100_000),
                }
            ),
            json_values,
        ),
    },
    optional={"filetype": st.sampled_from(["WAV", "RAW", None, "MP3"]), "tags": json_values},
)

ROUTES = [
    ("POST", "/v1/streams", st.fixed_dictionaries({"streams": st.lists(stream_like, max_size=3)})),
    ("POST", "/v1/streams/refresh", st.fixed_dictionaries({"ids": json_values})),
    (
        "POST",
        "/v1/streams/resume",
        st.fixed_dictionaries({"ids": json_values, "fromtime": json_values}),
    ),
    ("POST", "/v1/streams/query", st.fixed_dictionaries({"match": json_values})),
    ("PUT", "/v1/params", json_values),
]


@pytest.mark.parametrize(("method", "path", "bodies"), ROUTES, ids=[r[1] for r in ROUTES])
def test_no_500_for_malformed_bodies(url: str, method: str, path: str, bodies: Any) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:

        @settings(
            max_examples=120,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(body=bodies | json_values)
        def check(body: Any) -> None:
            r = client.request(method, path, json=body)
            assert r.status_code < 500, (body, r.text)
            if r.status_code >= 400:
                assert set(r.json()["error"]) >= {"code", "message"}

        check()


@given(raw=st.binary(max_size=200))
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_no_500_for_garbage_bytes(url: str, raw: bytes) -> None:
    for path in ("/v1/streams", "/v1/streams/pause"):
        r = httpx.post(f"{url}{path}", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code < 500


def test_oversized_and_unknown(url: str, tmp_path: Path) -> None:
    big = b"{" + b" " * (33 * 1024 * 1024) + b"}"
    r = httpx.post(f"{url}/v1/streams", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413

    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b'{"streams": ['
        for _ in range(40):
            yield b" " * (1024 * 1024)
        yield b"]}"

    r = httpx.post(
        f"{url}/v1/streams", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert httpx.get(f"{url}/v1/streams/nope/utterances").status_code == 404
    r = httpx.put(f"{url}/v1/params", json={"bogus": 1})
    assert r.status_code == 400 and "bogus" in r.json()["error"]["message"]
    r = httpx.put(f"{url}/v1/params", json={"engine": "pocketsphinx"})
    assert r.status_code == 400 and "read-only" in r.json()["error"]["message"]
    r = httpx.get(f"{url}/v1/params", params={"name": "nope"})
    assert r.status_code == 400


def test_openapi_declares_error_responses(url: str) -> None:
    doc = httpx.get(f"{url}/openapi.json").json()
    for path, methods in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in methods.items():
            declared = set(op["responses"])
            assert {"400", "401", "404", "409", "413", "422", "507"} <= declared, (path, method)
