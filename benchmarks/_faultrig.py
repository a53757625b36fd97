"""The fault suite's rig and oracle: a real svserver, a real daemon, files, and what became of them.

The oracle is a manifest of every file the scenario created (path, sha256,
what should come of it: a transcript, or an ``.error.json`` for a file made
bad on purpose), compared at the end with the outputs, the daemon's logs
(every run of it: the log is appended across restarts), its journal and the
server's streams:

- lost: a file with neither output when the scenario has settled, and no row
  waiting in the journal (such a row is counted as unfinished: a backlog the
  engine had not decoded yet when the scenario stopped waiting);
- decoded twice: a path with more streams on the server than the contents it
  had (each content is a version, decoded once), or a transcript holding an
  utterance twice;
- re-sent: ``stream.submitted`` logged again for a file (allowed: a resend
  under the same id after a crash; counted);
- outputs rewritten: ``output.written`` again for a file (allowed: a crash
  between the outputs and the journal's DONE; same content; counted).

Samplers run beside the scenario: the daemon's peak RSS (VmHWM of every daemon
process, read just before each is killed or stopped) and the journal's depth
(rows not finished), read from the journal with a read-only connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import TESTDATA
from tests.svserver import SvServer

__all__ = [
    "SETTLE_TIMEOUT",
    "STALL_SECONDS",
    "Outcome",
    "Rig",
    "fresh",
    "need_strace",
    "stop_wrapped",
]

CLIP = (TESTDATA / "001.wav").read_bytes()  # 1.1 s of speech: "ten of clubs"
BAD = (TESTDATA / "bad.wav").read_bytes()  # not a RIFF/WAVE header: an .error.json
SETTLE_TIMEOUT = 3 * 3600.0  # the longest a scenario waits for every file's outcome ...
STALL_SECONDS = 180.0  # ... or for the next one (a backlog that still moves is waited for)


@dataclass
class Outcome:
    """One scenario's row of the table."""

    name: str
    files: int = 0
    lost: int = 0
    unfinished: int = 0  # still waiting in the journal when the scenario gave up waiting
    twice: int = 0
    resent: int = 0
    rewritten: int = 0
    errors: int = 0  # expected errors (.error.json for the bad files)
    wrong: int = 0  # a good file with an error, or a bad one with a transcript
    recovery: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    depth: int = 0
    faults: int = 0
    overflows: int = 0  # watch.overflow logged (the overflow scenario)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost or left unfinished, nothing decoded twice, no outcome the other way
        round."""
        return self.lost == 0 and self.unfinished == 0 and self.twice == 0 and self.wrong == 0


class Rig:
    """A svserver, a daemon watching ``inbox`` into ``out``, and the files dropped there."""

    def __init__(
        self,
        base: Path,
        *,
        engine: str = "pocketsphinx",
        workers: int = 2,
        rescan: str = "1h",
        settle: str = "300ms",
    ) -> None:
        self.base = base
        self.inbox = base / "inbox"
        self.out = base / "out"
        self.state = base / "state"
        self.inbox.mkdir(parents=True)
        self.server = SvServer(
            base / "svserver", engine=engine, args=["--allow-root", str(base)], workers=workers
        )
        self.config = base / "svwatchd.yaml"
        self.log = base / "svwatchd.log"
        self.server_url = self.server.url  # where the daemon sends (a proxy's, for network faults)
        self._rescan = rescan
        self._settle = settle
        self.manifest: dict[str, tuple[str, str]] = {}  # path -> (sha256, "transcript"|"error")
        self.versions: Counter[str] = Counter()  # path -> contents it had (each may be decoded)
        self.daemon: subprocess.Popen[bytes] | None = None
        self.peak_rss_kb = 0
        self.peak_depth = 0
        self._count = 0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="sampler", daemon=True)

    # -- processes ----------------------------------------------------------------------

    def _write_config(self) -> None:
        self.config.write_text(
            yaml.safe_dump(
                {
                    "server": {"url": self.server_url, "timeout": "10s"},
                    "state_dir": str(self.state),
                    "refresh_interval": "300ms",
                    "rescan_interval": self._rescan,
                    "log": {"format": "json", "level": "info"},
                    "watches": [
                        {
                            "path": str(self.inbox),
                            "settle": self._settle,
                            "output": {"dir": str(self.out), "formats": ["txt", "json"]},
                        }
                    ],
                }
            )
        )

    def __enter__(self) -> Rig:
        self._write_config()
        self.server.start()
        self.start_daemon()
        self._sampling.set()
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sampling.clear()
        self.stop_daemon()
        self.server.stop()

    def start_daemon(self, *, wait: bool = True, under: Sequence[str] = ()) -> float:
        """Start ``svwatchd run`` (``under`` a wrapper command such as strace, if given); the
        seconds until it logged ``daemon.ready``."""
        began = time.monotonic()
        ready = self.log_text().count('"daemon.ready"')
        with open(self.log, "ab") as log:
            self.daemon = subprocess.Popen(
                [
                    *under,
                    sys.executable,
                    "-m",
                    "svwatchd.daemon._cli",
                    "run",
                    "--config",
                    str(self.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while wait and self.log_text().count('"daemon.ready"') <= ready:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited {self.daemon.returncode}:\n{self.tail()}")
            time.sleep(0.02)
        return time.monotonic() - began

    def kill_daemon(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.daemon is not None and self.daemon.poll() is None:
            self._note_rss(self.daemon.pid)
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait(30)

    def stop_daemon(self) -> None:
        """SIGTERM and wait."""
        if self.daemon is not None and self.daemon.poll() is None:
            self._note_rss(self.daemon.pid)
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(60)

    def stop_traced(self) -> None:
        """SIGTERM the daemon running under a wrapper (strace): to the daemon itself, so that
        it stops as it would alone; the wrapper exits with it."""
        if self.daemon is not None:
            stop_wrapped(self.daemon, self._note_rss)

    def _note_rss(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))

    def _sample(self) -> None:
        while self._sampling.is_set():
            self.peak_depth = max(self.peak_depth, self.journal_depth())
            if self.daemon is not None and self.daemon.poll() is None:
                self._note_rss(self.daemon.pid)
            time.sleep(0.5)

    def done_without_outputs(self) -> list[str]:
        """Journal rows marked DONE whose transcript is not there (must be none)."""
        done = [r[0] for r in self._journal("SELECT path FROM files WHERE state='DONE'")]
        return [p for p in done if p in self.manifest and self._finished(p) != "transcript"]

    def server_sources(self) -> set[str]:
        """The sources of the streams in svserver's database, read directly (read-only: the
        server may be down)."""
        return {r[0] for r in _read_only(self.server.data_dir / "svserver.db", _SOURCES)}

    def journal_waiting(self) -> set[str]:
        """Paths whose rows wait in the journal (pending or in flight), read-only."""
        return {r[0] for r in self._journal(f"SELECT path FROM files WHERE {_WAITING}")}

    def journal_depth(self) -> int:
        """Rows of the journal not finished (read-only: never in the daemon's way)."""
        rows = self._journal(f"SELECT COUNT(*) FROM files WHERE {_WAITING}")
        return int(rows[0][0]) if rows else 0

    def _journal(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a read-only query of the daemon's journal (none while it cannot be read:
        not made yet, or moved aside)."""
        db = self.state / "journal.db"
        if not db.exists():
            return []
        try:
            return _read_only(db, sql)
        except sqlite3.Error:
            return []

    # -- files --------------------------------------------------------------------------

    def drop(self, n: int = 1, *, bad: bool = False, repeat: int = 1) -> list[Path]:
        """Write ``n`` files into the inbox (each distinct content), as a recorder would."""
        made = []
        for _ in range(n):
            path = self.name()
            data = self.content(bad=bad, repeat=repeat)
            path.write_bytes(data)
            self.expect(path, data, bad=bad)
            made.append(path)
        return made

    def name(self) -> Path:
        """A new file name in the inbox."""
        self._count += 1
        return self.inbox / f"f{self._count:06d}.wav"

    @staticmethod
    def content(*, bad: bool = False, repeat: int = 1) -> bytes:
        """A clip's bytes (``repeat`` times over), distinct from every other (or a bad
        header: an error). The header's sizes are left as they are: readers take the
        file's real length."""
        salt = os.urandom(4)
        return BAD + salt if bad else CLIP[:44] + salt + CLIP[48:] + CLIP[44:] * (repeat - 1)

    def expect(self, path: Path, data: bytes, *, bad: bool = False) -> None:
        """``data`` is ``path``'s content now (its last one, as far as the oracle knows: the
        outcome it checks); each call counts one more version the path may be decoded in."""
        self.versions[str(path)] += 1
        self.manifest[str(path)] = (
            hashlib.sha256(data).hexdigest(),
            "error" if bad else "transcript",
        )

    def _finished(self, path: str) -> str | None:
        out = self.out / Path(path).relative_to(self.inbox)
        if Path(f"{out}.json").exists():
            return "transcript"
        if Path(f"{out}.error.json").exists():
            return "error"
        return None

    def settled(self) -> bool:
        """Every file in the manifest has an outcome."""
        return all(self._finished(p) is not None for p in self.manifest)

    def wait_settled(self, timeout: float, *, stall: float = STALL_SECONDS) -> float:
        """Wait until every file has its outcome; the seconds it took. Gives up after
        ``timeout``, or once no file has got its outcome for ``stall`` seconds (a slow
        engine's backlog keeps making progress; a stuck one does not)."""
        began = last = time.monotonic()
        done = -1
        while time.monotonic() - began < timeout:
            now_done = sum(1 for p in self.manifest if self._finished(p) is not None)
            if now_done == len(self.manifest):
                break
            if now_done != done:
                done, last = now_done, time.monotonic()
            elif time.monotonic() - last > stall:
                break
            time.sleep(0.5)
        return time.monotonic() - began

    # -- the oracle ---------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 4000) -> str:
        return self.log_text()[-n:]

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    out.append(event)
        return out

    def judge(self, name: str, *, faults: int, recovery: list[float]) -> Outcome:
        """Compare the manifest with what came of it (see the module docstring)."""
        result = Outcome(name, files=len(self.manifest), faults=faults, recovery=recovery)
        events = self.events()
        submitted = Counter(e.get("path") for e in events if e.get("event") == "stream.submitted")
        written = Counter(
            e.get("source")
            for e in events
            if e.get("event") == "output.written" and str(e.get("path", "")).endswith(".json")
        )
        body = httpx.post(f"{self.server.url}/v1/streams/query", json={"match": []}, timeout=60)
        streams = Counter(s["source"] for s in body.json()["streams"])
        waiting = self.journal_waiting()
        for path, (_, expect) in self.manifest.items():
            got = self._finished(path)
            if got is None and path in waiting:
                result.unfinished += 1  # still queued in the journal: slow, not lost
                continue
            if got is None:
                result.lost += 1
                result.notes.append(f"lost: {path}")
                continue
            doc = self._transcript(path)
            if got != expect:
                result.wrong += 1
                result.notes.append(f"{path}: {got}, expected {expect}")
            elif got == "transcript" and not _of_content(doc, self.manifest[path][0]):
                result.lost += 1  # the file's last content never got its transcript
                result.notes.append(f"lost (transcript of an older content only): {path}")
            if got == "error":
                result.errors += 1
            twice = streams[path] > self.versions[path] or _repeats(doc)
            if twice:
                result.twice += 1
                result.notes.append(f"twice: {path} ({streams[path]} streams)")
            result.resent += max(0, submitted[path] - self.versions[path])
            result.rewritten += max(0, written[path] - self.versions[path])
        result.rss_mb = self.peak_rss_kb / 1024
        result.depth = self.peak_depth
        return result

    def _transcript(self, path: str) -> dict[str, Any] | None:
        """The file's JSON output (None when there is none, or it does not parse)."""
        out = self.out / Path(path).relative_to(self.inbox)
        try:
            doc = json.loads(Path(f"{out}.json").read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None


def _of_content(doc: dict[str, Any] | None, sha256: str) -> bool:
    """Whether the transcript was made from this content (its recorded fingerprint)."""
    return doc is not None and doc.get("fingerprint") == "sha256:" + sha256


def _repeats(doc: dict[str, Any] | None) -> bool:
    """Whether the transcript holds an utterance twice (same start, same text)."""
    if doc is None:
        return False
    seen = Counter((u["start"], u["text"]) for u in doc.get("utterances", []))
    return any(n > 1 for n in seen.values())


_WAITING = "state IN ('PENDING', 'HELD', 'SUBMITTING', 'INFLIGHT')"  # not finished yet
_SOURCES = "SELECT source FROM streams"


def _read_only(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Every row of ``sql`` on ``db``, through a read-only connection (never in the way of
    the process that writes it)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute(sql))


def need_strace() -> str:
    """The strace command (the crash-point and ENOSPC scenarios inject faults with it)."""
    found = shutil.which("strace")
    if found is None:
        raise RuntimeError("strace is needed for this scenario (apt-get install strace)")
    return found


def stop_wrapped(
    proc: subprocess.Popen[bytes], before: Callable[[int], None] = lambda pid: None
) -> None:
    """SIGTERM the program a wrapper (strace) runs, so that it stops as it would alone (the
    wrapper exits with it); ``before`` is called with its pid first."""
    if proc.poll() is not None:
        return
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    with contextlib.suppress(OSError):
        for pid in children.read_text().split():
            before(int(pid))
            os.kill(int(pid), signal.SIGTERM)
    proc.wait(60)


def fresh(base: Path) -> Path:
    """An empty directory ``base`` (removed first if it exists)."""
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    return base
