"""svserver's database damaged on disk: found at start, moved aside, never served.

Before, svserver opened a damaged database as it was and answered 500 to every
query that touched the broken page, for ever. Now it runs SQLite's quick check
at start, as the daemon's journal does.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx

from svwatchd.model.format import AudioFormat
from svwatchd.server._changes import Changes
from svwatchd.server._lifecycle import Lifecycle
from svwatchd.server._store import NewStream, Store
from tests.svserver import SvServer


def _filled(data: Path, n: int = 300) -> Path:
    """A real svserver database holding ``n`` queued streams."""
    data.mkdir(parents=True)
    store = Store(data / "svserver.db")
    lifecycle = Lifecycle(store, Changes())
    ids = itertools.count()
    lifecycle.create(
        [
            NewStream(
                id=f"s{next(ids)}",
                kind="file",
                source=f"/x/{i}.raw",
                path=f"/x/{i}.raw",
                host=None,
                port=None,
                format=AudioFormat("RAW", "SPCM", 2, 16000),
                tags={"note": "x" * 200},
                spec="{}",
                created=0.0,
                anchor=None,
                sourceseconds=1.0,
            )
            for i in range(n)
        ]
    )
    store.close()
    return data / "svserver.db"


def test_a_damaged_database_is_moved_aside_and_svserver_answers(tmp_path: Path) -> None:
    db = _filled(tmp_path / "data")
    pages = db.stat().st_size // 4096
    with open(db, "r+b") as f:  # one page in the middle overwritten: its b-tree header is gone
        f.seek(pages // 2 * 4096)
        f.write(b"\xff" * 4096)
    srv = SvServer(tmp_path / "data").start()
    try:
        answer = httpx.post(f"{srv.url}/v1/streams/query", json={"match": []}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["streams"] == []  # a fresh database: clients submit again
        events = [json.loads(x) for x in srv.output().splitlines() if x.startswith("{")]
        damaged = [e for e in events if e.get("event") == "store.damaged"]
        assert len(damaged) == 1
        copy = Path(damaged[0]["corrupt_copy"])
        assert copy.exists() and copy.name.startswith("svserver.db.corrupt-")
    finally:
        srv.stop()


def test_a_sound_database_is_kept(tmp_path: Path) -> None:
    _filled(tmp_path / "data", n=5)
    srv = SvServer(tmp_path / "data").start()
    try:
        answer = httpx.post(f"{srv.url}/v1/streams/query", json={"match": []}, timeout=30)
        assert len(answer.json()["streams"]) == 5
        assert "store.damaged" not in srv.output()
    finally:
        srv.stop()
