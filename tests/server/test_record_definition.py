"""One definition of a stream record: the SQL-built JSON, the API and the client all agree.

The store builds records as JSON text in SQL (for speed); these tests prove
that text matches ``svwatchd.model.record`` exactly (every key, no other key,
every value of its declared type, tombstones included), that ``/openapi.json``
documents the same, and that the client's ``Stream`` takes every field.
"""

from __future__ import annotations

import enum
import json
import shutil
import types
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints

import httpx
import pytest
from typing_extensions import is_typeddict

from svwatchd.client import Server, Stream
from svwatchd.model.enums import DecodeStatus
from svwatchd.model.format import AudioFormat
from svwatchd.model.record import AnyRecord, StreamRecord, TombstoneRecord
from svwatchd.model.speechdata import Utterance, Word
from svwatchd.server._changes import Changes
from svwatchd.server._lifecycle import Lifecycle, Progress
from svwatchd.server._records import Listeners, Records
from svwatchd.server._store import NewStream, Store
from tests.conftest import TESTDATA, speech_file
from tests.svserver import SvServer

TIMES = {"created", "start", "end", "since"}


def conform(value: object, hint: object, where: str = "record") -> None:
    """Assert that JSON ``value`` is exactly of type ``hint`` (a TypedDict: every key, no
    other key); times must parse as ISO 8601."""
    origin = get_origin(hint)
    if is_typeddict(hint):
        assert isinstance(value, dict), where
        hints = get_type_hints(hint)
        assert set(value) == set(hints), f"{where}: keys {sorted(value)} != {sorted(hints)}"
        for key, sub in hints.items():
            conform(value[key], sub, f"{where}.{key}")
            if key in TIMES and value[key] is not None:
                datetime.fromisoformat(str(value[key]).replace("Z", "+00:00"))
    elif origin in (Union, types.UnionType):
        failures = []
        for option in get_args(hint):
            try:
                conform(value, option, where)
                return
            except AssertionError as exc:
                failures.append(str(exc))
        raise AssertionError(f"{where}: {value!r} is none of {hint}: {failures}")
    elif origin is Literal:
        assert value in get_args(hint), f"{where}: {value!r} not in {get_args(hint)}"
    elif origin is list:
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            conform(item, get_args(hint)[0], f"{where}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), where
        for key, item in value.items():
            assert isinstance(key, str), where
            conform(item, get_args(hint)[1], f"{where}.{key}")
    elif hint is type(None):
        assert value is None, f"{where}: {value!r} is not null"
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        assert value in {m.value for m in hint}, f"{where}: {value!r} is not a {hint.__name__}"
    elif hint in (int, float, str, bool):
        assert type(value) is hint, f"{where}: {value!r} is not {hint.__name__}"
    else:
        raise AssertionError(f"{where}: the checker does not know {hint!r}")


def record_of(value: object) -> None:
    """Assert that ``value`` is exactly one of the record definitions."""
    conform(value, AnyRecord)


# -- the store's SQL ----------------------------------------------------------------------


@pytest.fixture
def records(tmp_path: Path) -> Iterator[tuple[Store, Lifecycle, Records, Listeners]]:
    store = Store(tmp_path / "svserver.db")
    listeners = Listeners()
    yield store, Lifecycle(store, Changes()), Records(store, listeners), listeners
    store.close()


def _stream(
    sid: str, *, socket: bool = False, filetype: Literal["WAV", "RAW"] = "RAW"
) -> NewStream:
    return NewStream(
        id=sid,
        kind="socket" if socket else "file",
        source="127.0.0.1:9" if socket else f"/x/{sid}",
        path=None if socket else f"/x/{sid}",
        host="127.0.0.1" if socket else None,
        port=9 if socket else None,
        format=AudioFormat(filetype, "ULAW", 1, 8000, 2, "BIG"),
        tags={"a": "x", "n": 3, "f": 1.5, "b": True},
        spec="{}",
        created=1_700_000_000.25,
        anchor=None,
        sourceseconds=None if socket else 2.5,
    )


def test_sql_records_match_the_definition_in_every_state(
    records: tuple[Store, Lifecycle, Records, Listeners],
) -> None:
    store, lc, recs, listeners = records
    lc.create([_stream(f"s{i}") for i in range(6)] + [_stream("live", socket=True)])
    lc.create([_stream("wav", filetype="WAV")])
    lc.activate(list(store.get(["s1", "s2", "s3", "live"]).values()))
    word = Word("hi", 0.1, 0.4, 0.8)
    lc.commit(
        "s2", [(Utterance(0.0, 0.5, "hi", 0.9, (word,)), 10.5)], Progress(2.5, 0.2), final=True
    )
    lc.fail("s3", "Cannot decode /x/s3: broken")
    lc.pause(["s4"])
    lc.close(["s5"])
    lc.tombstone(["s0"])
    listeners.add("live", "127.0.0.1:5555").sent = 2
    ids = ["s0", "s1", "s2", "s3", "s4", "s5", "live", "wav", "nope"]
    texts, missing = recs.by_id(ids)
    assert missing == ["nope"]
    parsed = [json.loads(t) for t in texts]
    assert [r["status"] for r in parsed] == [
        "DELETED",
        "ACTIVE",
        "DONE",
        "ERROR",
        "PAUSED",
        "CLOSED",
        "ACTIVE",
        "QUEUED",
    ]
    for rec in parsed:
        record_of(rec)
    tomb, *_ = parsed
    conform(tomb, TombstoneRecord)
    done = parsed[2]
    conform(done, StreamRecord)
    assert done["stats"]["utterances"] == 1 and done["stats"]["words"] == 1
    assert done["stats"]["real_time_factor"] == pytest.approx(0.2 / 2.5)
    assert parsed[6]["listeners"] == [
        {"address": "127.0.0.1:5555", "since": parsed[6]["listeners"][0]["since"], "sent": 2}
    ]
    assert parsed[6]["filetype"] is None and parsed[7]["filetype"] == "WAV"
    assert [json.loads(t)["id"] for t in recs.matching([])] == [
        "s1",
        "s2",
        "s3",
        "s4",
        "s5",
        "live",
        "wav",
    ]
    assert [json.loads(t)["id"] for t in recs.matching([{"encoding": "ulaw", "b": True}])] == [
        "s1", "s2", "s3", "s4", "s5", "live", "wav"
    ]  # fmt: skip
    assert recs.matching([{"b": 1}]) == []  # a bool tag is not a number


# -- the API and the client -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SvServer, Path]]:
    speech_file("001.wav")
    base = tmp_path_factory.mktemp("records")
    root = base / "root"
    root.mkdir()
    shutil.copy(TESTDATA / "001.wav", root / "a.wav")
    srv = SvServer(base / "data", args=["--allow-root", str(root)], workers=1).start()
    yield srv, root
    srv.stop()


def test_openapi_documents_the_record(served: tuple[SvServer, Path]) -> None:
    doc = httpx.get(f"{served[0].url}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for definition in (StreamRecord, TombstoneRecord):
        schema = schemas[definition.__name__]
        keys = list(get_type_hints(definition))
        assert list(schema["properties"]) == keys and sorted(schema["required"]) == sorted(keys)
    assert schemas["StreamRecord"]["properties"]["status"]["enum"] == [
        s.value for s in DecodeStatus if s is not DecodeStatus.DELETED
    ]
    for path in ("/v1/streams", "/v1/streams/refresh", "/v1/streams/query", "/v1/streams/pause"):
        answer = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        ref = answer["schema"]["$ref"].rsplit("/", 1)[1]
        items = schemas[ref]["properties"]["streams"]["items"]["anyOf"]
        assert {i["$ref"].rsplit("/", 1)[1] for i in items} == {"StreamRecord", "TombstoneRecord"}


def test_api_records_match_and_the_client_takes_every_field(served: tuple[SvServer, Path]) -> None:
    srv, root = served
    with Server(srv.url) as server:
        kept, gone = Stream(root / "a.wav", speaker="ann", n=2), Stream(root / "a.wav")
        server.decodestreams([kept, gone])
        server.deletestreams(gone)
        server.joinstartstreams(kept, timeout=60)
        body = httpx.post(f"{srv.url}/v1/streams/refresh", json={"ids": [kept.id, gone.id]}).json()
        for rec in body["streams"]:
            record_of(rec)
        rec, tomb = body["streams"]
        assert tomb == {"id": gone.id, "status": "DELETED"}
        for listed in httpx.post(f"{srv.url}/v1/streams/query", json={}).json()["streams"]:
            conform(listed, StreamRecord)

        seen = Stream._from_record(rec, server)
        assert (seen.id, seen.status, seen.error) == (rec["id"], rec["status"], rec["error"])
        assert seen.source == rec["source"] and seen.getfiletype() == rec["filetype"]
        assert seen.tags == rec["tags"] == {"speaker": "ann", "n": 2}
        fmt = rec["format"]
        got = (seen.encoding(), seen.sampwidth(), seen.samprate(), seen.channels(), seen.endian())
        assert got == tuple(fmt.values())
        assert seen.start == _when(rec["start"]) and seen.end == _when(rec["end"])
        assert seen.stats() == rec["stats"] and seen.sourceseconds() == rec["sourceseconds"]
        assert seen.listenerinfo() == rec["listeners"]
        deleted = Stream._from_record(tomb, server)
        assert deleted.isdeleted() and deleted.id == gone.id and deleted.stats() == {}


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def test_the_checker_refuses_what_does_not_match() -> None:
    good: AnyRecord = {"id": "x", "status": DecodeStatus.DELETED}
    record_of(json.loads(json.dumps(good)))
    for bad in ({"id": "x", "status": "DELETED", "more": 1}, {"id": "x", "status": "QUEUED"}):
        with pytest.raises(AssertionError):
            record_of(bad)


def test_the_schema_version_is_the_last_migration(tmp_path: Path) -> None:
    """A new migration without a new ``SCHEMA_VERSION`` is never applied (its columns are then
    missing at the first query): the two move together, and a new store reaches the last."""
    import sqlite3

    from svwatchd.server._schema import MIGRATIONS, SCHEMA_VERSION

    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))
    Store(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert int(row[0]) == SCHEMA_VERSION
