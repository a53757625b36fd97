"""The fault suite's scenarios in the daemon itself: killed at random and at its system
calls, its inotify queue overflowing, files whose identity moves, its state damaged, a
second owner of its state. Each returns its row of the table (``benchmarks/faults.py``)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks._faultrig import SETTLE_TIMEOUT, Outcome, Rig, fresh, need_strace
from tests.svserver import SvServer

__all__ = [
    "CRASH_CALLS",
    "QUEUE_KNOB",
    "churn",
    "crash_points",
    "damaged_state",
    "inotify_queue",
    "kill_loop",
    "overflow",
    "second_owner",
]


def kill_loop(base: Path, *, kills: int, files: int, engine: str) -> Outcome:
    """SIGKILL the daemon ``kills`` times, 0-2 s apart, while ``files`` files arrive."""
    rng = random.Random(20261206)
    recovery: list[float] = []
    with Rig(fresh(base), engine=engine) as rig:
        per_gap = max(1, files // (kills + 1))
        for k in range(kills):
            until = time.monotonic() + rng.uniform(0.0, 2.0)
            burst = k % 5 == 4  # every fifth gap a burst, else a steady pace
            if burst:
                rig.drop(per_gap)
            else:
                for _ in range(per_gap):
                    rig.drop(1)
                    time.sleep(max(0.0, until - time.monotonic()) / per_gap)
            time.sleep(max(0.0, until - time.monotonic()))
            rig.kill_daemon()
            recovery.append(rig.start_daemon())
        rig.drop(max(0, files - len(rig.manifest) - files // 50))
        rig.drop(files // 50, bad=True)  # bad input in the same run: an error each, not lost
        rig.wait_settled(SETTLE_TIMEOUT)
        return rig.judge("kill-loop", faults=kills, recovery=recovery)


CRASH_CALLS = ("fdatasync", "fsync", "rename", "pwrite64", "sendto", "connect")
"""The system calls a file's life goes through in the daemon: the journal's commits (SQLite's
WAL writes, pwrite64, made durable with fdatasync), the outputs' fsyncs and renames, and
HTTP (connect, sendto: the sender thread's submissions, the loop's refreshes)."""


def crash_points(base: Path, *, calls: tuple[str, ...], points: range, engine: str) -> Outcome:
    """For each system call and each N of ``points``: one new file, the daemon started under
    ``strace --inject=CALL:signal=SIGKILL:when=N`` (the Nth such call of a thread kills
    it), then started again plainly; the file must come out once. N past the file's life
    (the daemon never hit it) ends that call's sweep."""
    strace = need_strace()
    kills = 0
    recovery: list[float] = []
    swept: list[str] = []
    with Rig(fresh(base), engine=engine) as rig:
        rig.stop_daemon()
        for call in calls:
            for n in points:
                rig.drop(1)
                inject = f"inject={call}:signal=SIGKILL:when={n}"
                rig.start_daemon(
                    wait=False, under=[strace, "-f", "-qq", "-o", "/dev/null", "-e", inject]
                )
                assert rig.daemon is not None
                began = time.monotonic()
                while rig.daemon.poll() is None and not rig.settled():
                    if time.monotonic() - began > 60:
                        break
                    time.sleep(0.05)
                killed = rig.daemon.poll() is not None
                if not killed:
                    rig.stop_traced()
                kills += killed
                swept.append(f"{call}@{n}" + ("" if killed else " (not reached)"))
                recovery.append(rig.start_daemon())
                rig.wait_settled(SETTLE_TIMEOUT)
                rig.stop_daemon()
                if not killed:
                    break  # this call's sweep has passed the file's whole life
        rig.start_daemon()
        rig.wait_settled(SETTLE_TIMEOUT)
        outcome = rig.judge("crash-points", faults=kills, recovery=recovery)
        outcome.notes.append("killed at: " + ", ".join(swept))
        return outcome


def overflow(base: Path, *, files: int, queue: int | None, engine: str) -> Outcome:
    """SIGSTOP the daemon, create more files than inotify queues events for, SIGCONT.

    ``queue`` lowers ``fs.inotify.max_queued_events`` for the run (needs a writable
    ``/proc/sys``; restored after), so that a short run overflows with few files.
    """
    with inotify_queue(queue) as limit, Rig(fresh(base), engine=engine, rescan="5s") as rig:
        assert rig.daemon is not None
        rig.daemon.send_signal(signal.SIGSTOP)
        # each file raises IN_CREATE, IN_MODIFY and IN_CLOSE_WRITE: 3 events queued
        rig.drop(max(files, limit // 3 + 100))
        rig.daemon.send_signal(signal.SIGCONT)
        recovery = [rig.wait_settled(SETTLE_TIMEOUT)]
        outcome = rig.judge("overflow", faults=1, recovery=recovery)
        found = [e for e in rig.events() if e.get("event") == "watch.overflow"]
        outcome.notes.append(
            f"inotify queue {limit} events; watch.overflow logged {len(found)} time(s), "
            f"{sum(int(e.get('count', 0)) for e in found)} files found by the rescan"
        )
        outcome.overflows = len(found)
        return outcome


QUEUE_KNOB = Path("/proc/sys/fs/inotify/max_queued_events")


@contextlib.contextmanager
def inotify_queue(limit: int | None) -> Iterator[int]:
    """``fs.inotify.max_queued_events`` set to ``limit`` for the block (restored after);
    yields the queue length in force. Setting it needs a writable ``/proc/sys``."""
    before = int(QUEUE_KNOB.read_text())
    if limit is None or limit == before:
        yield before
        return
    QUEUE_KNOB.write_text(str(limit))  # PermissionError/OSError where it is read-only
    try:
        yield limit
    finally:
        QUEUE_KNOB.write_text(str(before))


def churn(base: Path, *, rounds: int, engine: str) -> Outcome:
    """Files whose identity moves under the daemon, ``rounds`` of each kind: slow writers
    (pauses longer than the settle time), renamed in from outside the watch, truncated and
    rewritten in place, deleted and replaced by another file (which gets the freed inode),
    the same bytes under two names, and a large file replaced while it is being hashed.
    Each path's last content must get its transcript (older contents may have theirs too:
    they were real versions), never twice."""
    stage = fresh(base) / "staging"  # outside the watch
    stage.mkdir()
    with Rig(base, engine=engine, settle="1s") as rig:
        for _ in range(rounds):
            # slow writer: six writes 0.4 s apart (the settle time is 1 s), then closed
            path, data = rig.name(), rig.content()
            step = len(data) // 6 + 1
            with open(path, "wb") as f:
                for at in range(0, len(data), step):
                    f.write(data[at : at + step])
                    f.flush()
                    time.sleep(0.4)
            rig.expect(path, data)
            # renamed in
            path, data = rig.name(), rig.content()
            (stage / path.name).write_bytes(data)
            os.rename(stage / path.name, path)
            rig.expect(path, data)
            # truncated and rewritten in place (same inode), after the first was taken
            path, first = rig.name(), rig.content()
            path.write_bytes(first)
            rig.expect(path, first)
            rig.wait_settled(60)
            data = rig.content()
            with open(path, "r+b") as f:
                f.truncate(0)
                f.write(data)
            rig.expect(path, data)
            # deleted, and another file created at once (it gets the freed inode)
            (gone,) = rig.drop(1)
            rig.wait_settled(60)
            inode = gone.stat().st_ino
            gone.unlink()
            (other,) = rig.drop(1)
            reused = other.stat().st_ino == inode
            # the same bytes under two names
            data = rig.content()
            for path in (rig.name(), rig.name()):
                path.write_bytes(data)
                rig.expect(path, data)
            # a large file (30 s of audio) replaced while it is hashed
            path, big = rig.name(), rig.content()
            big = big[:44] + big[44:] * 27
            (stage / "big").write_bytes(big)
            os.rename(stage / "big", path)
            rig.expect(path, big)  # it may be decoded too, if it was whole for long enough
            data = rig.content()
            (stage / "small").write_bytes(data)
            time.sleep(0.005)
            os.rename(stage / "small", path)
            rig.expect(path, data)
        rig.wait_settled(SETTLE_TIMEOUT)
        outcome = rig.judge("churn", faults=rounds * 6, recovery=[])
        outcome.notes.append(f"last freed inode reused by the next file: {reused}")
        return outcome


def damaged_state(base: Path, *, files: int, engine: str) -> Outcome:
    """The daemon's journal cut in half, its ``-wal`` removed after a kill, svserver's
    database damaged: each detected (or survived), files decoded once."""
    recovery: list[float] = []
    with Rig(fresh(base), engine=engine) as rig:
        journal = rig.state / "journal.db"
        # 1. the journal truncated to half (a disk that lost the end of the file)
        rig.drop(files)
        rig.wait_settled(SETTLE_TIMEOUT)
        rig.stop_daemon()
        with open(journal, "r+b") as f:
            f.truncate(journal.stat().st_size // 2)
        rig.drop(files)
        recovery.append(rig.start_daemon())
        rig.wait_settled(SETTLE_TIMEOUT)
        # 2. killed mid-burst, then the -wal removed: the last commits are gone
        rig.drop(files)
        time.sleep(0.3)
        rig.kill_daemon()
        Path(f"{journal}-wal").unlink(missing_ok=True)
        recovery.append(rig.start_daemon())
        rig.wait_settled(SETTLE_TIMEOUT)
        # 3. svserver's database damaged while it is stopped, files in flight
        rig.drop(files)
        time.sleep(0.3)
        rig.server.stop()
        db = rig.server.data_dir / "svserver.db"
        with open(db, "r+b") as f:
            f.seek(db.stat().st_size // 2)
            f.write(os.urandom(4096))
        rig.server.start()
        began = time.monotonic()
        rig.wait_settled(SETTLE_TIMEOUT)
        recovery.append(time.monotonic() - began)
        outcome = rig.judge("damaged-state", faults=3, recovery=recovery)
        moved = sorted(
            x.name for d in (rig.state, rig.server.data_dir) for x in d.glob("*corrupt*")
        )
        outcome.notes.append(f"moved aside: {', '.join(moved) or 'nothing'}")
        rebuilt = [e for e in rig.events() if e.get("event") == "journal.rebuilt"]
        outcome.notes.append(f"journal.rebuilt logged {len(rebuilt)} time(s)")
        return outcome


def second_owner(base: Path, *, engine: str) -> Outcome:
    """A second daemon on the same state dir, a second svserver on the same data dir:
    each refused with an error that names the dir and the owner; the first runs on."""
    with Rig(fresh(base), engine=engine) as rig:
        rig.drop(5)
        daemon = subprocess.run(
            [sys.executable, "-m", "svwatchd.daemon._cli", "run", "--config", str(rig.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        other = SvServer(rig.server.data_dir, engine=engine)
        try:
            other.start(timeout=60)
            server_refused = False
            server_said = "the second svserver started"
        except RuntimeError as exc:
            server_refused = True
            said = [x for x in str(exc).splitlines() if str(rig.server.data_dir) in x]
            server_said = said[-1] if said else str(exc).strip().splitlines()[-1]
        finally:
            other.kill()
        rig.drop(5)
        rig.wait_settled(SETTLE_TIMEOUT)
        outcome = rig.judge("second-owner", faults=2, recovery=[])
        daemon_said = (daemon.stdout + daemon.stderr).strip().splitlines()[-1:]
        for refused, who, said in (
            (
                daemon.returncode != 0 and str(rig.state) in daemon.stdout + daemon.stderr,
                "daemon",
                " ".join(daemon_said),
            ),
            (server_refused and str(rig.server.data_dir) in server_said, "svserver", server_said),
        ):
            outcome.notes.append(f"second {who}: {'refused' if refused else 'NOT refused'}: {said}")
            outcome.wrong += not refused
        return outcome
