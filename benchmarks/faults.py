"""The fault suite: "nothing lost, nothing decoded twice" measured, fault by fault.

Each scenario runs a real svserver and a real daemon (``benchmarks/_faultrig.py``:
the rig and the oracle), drops files while it injects its fault, lets
everything settle, and prints one row of the table: files, lost (must be 0),
decoded twice (must be 0), re-sent submissions and rewritten outputs
(allowed, counted), expected errors, recovery time after the fault (p50 and
max: what "recovery" means is said per scenario), the daemon's peak RSS and
the journal's deepest backlog.

Scenarios (``--only`` picks some):

- ``kill-loop``: the daemon killed with SIGKILL at random moments (0-2 s
  apart) while files are dropped at a steady pace and in bursts; restarted
  each time. Recovery: restart -> ``daemon.ready``.
- ``crash-points``: the daemon killed at its Nth fsync / rename / pwrite64 /
  sendto / connect (``strace --inject``), N swept across one file's life,
  restarted after each. Recovery: restart -> ``daemon.ready``.
- ``server-kill``: svserver killed with SIGKILL while the daemon submits a
  burst and while it decodes; restarted after 1 s. Recovery: restart -> every
  file settled.
- ``server-kill-upload``: svserver in its own mount namespace where the inbox
  is hidden (as on another machine), so the daemon uploads every file; the
  uploads slowed by a proxy and svserver killed in their middle. Recovery:
  restart -> every file settled.
- ``server-reply``: svserver killed at its Nth ``sendto`` (``strace --inject``),
  N swept over its answers: some kills fall after a submission's commit and
  before its reply. Recovery: restart -> every file settled.
- ``network``: a TCP proxy between daemon and server (``benchmarks/_proxy.py``)
  resets requests mid-body, then throws away the server's answers (after it
  committed), then holds every chunk 5 s, while files arrive. Recovery: the
  network sound again -> every file settled.
- ``server-down``, ``server-down-10m``: svserver stopped for 1 minute (at 20
  files/s) and for 10 minutes (at 5 files/s); the backlog waits in the journal
  (the daemon backs off 1, 2, 4 ... 60 s, jittered). Recovery: server back ->
  every file settled.
- ``churn``: slow writers, files renamed in, truncated and rewritten, deleted
  and replaced (inode reuse), the same bytes under two names, a file replaced
  while it is hashed: each path's last content transcribed, none twice.
- ``disk-full``: the disk under the journal, under the outputs and under
  svserver's data dir full in turn (a tmpfs each, needs root), files arriving;
  nothing marked DONE without its outputs. Recovery: space back -> settled.
- ``disk-full-injected``: the same where nothing can be mounted: strace attached
  to the running daemon or svserver makes its ``pwrite64`` (SQLite: the
  journal, the store) or ``fsync`` (the outputs) fail with ENOSPC until it
  detaches. Recovery: detached -> settled.
- ``damaged-state``: the journal truncated to half; the journal's ``-wal``
  removed after a kill; svserver's database overwritten in its middle while
  it is stopped. Recovery: restart -> ready (the journal), server back ->
  every file settled (svserver).
- ``second-owner``: a second daemon on the same state dir and a second svserver
  on the same data dir: each must be refused, naming the dir.
- ``overflow``: the daemon stopped (SIGSTOP) while more files are created than
  inotify queues (``fs.inotify.max_queued_events``), then continued: the
  rescan finds them. Recovery: SIGCONT -> every file settled.

The test suite runs a short form (``tests/test_faults.py``); the full run
prints the table: ``python -m benchmarks.faults [--short] [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks._faultrig import Outcome, Rig, fresh, stop_wrapped
from benchmarks._proxy import Mode, Proxy
from tests.diskfull import fill, tiny_fs
from tests.svserver import SvServer

__all__ = [
    "CRASH_CALLS",
    "SCENARIOS",
    "churn",
    "crash_points",
    "damaged_state",
    "disk_full",
    "disk_full_injected",
    "hidden",
    "inotify_queue",
    "kill_loop",
    "main",
    "network",
    "overflow",
    "second_owner",
    "server_down",
    "server_kill",
    "server_kill_upload",
    "server_reply",
]

SETTLE_TIMEOUT = 600.0


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
    strace = shutil.which("strace")
    if strace is None:
        raise RuntimeError("strace is needed for the crash-point sweep (apt-get install strace)")
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


def server_kill(base: Path, *, rounds: int, files: int, engine: str) -> Outcome:
    """SIGKILL svserver mid-submission and mid-decode, ``rounds`` times each."""
    recovery: list[float] = []
    with Rig(fresh(base), engine=engine) as rig:
        for r in range(rounds):
            rig.drop(files // (2 * rounds))
            time.sleep(0.05 if r % 2 == 0 else 1.5)  # in the submission / in the decoding
            rig.server.kill()
            time.sleep(1.0)
            rig.server.start()
            recovery.append(rig.wait_settled(SETTLE_TIMEOUT))
        return rig.judge("server-kill", faults=rounds, recovery=recovery)


def hidden(folder: Path) -> list[str]:
    """A command prefix that runs a program in its own mount namespace with ``folder``
    hidden under an empty tmpfs: a svserver that cannot see the daemon's files, as one on
    another machine (the daemon then uploads them). Needs root (CAP_SYS_ADMIN)."""
    mount = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(folder)]


def server_kill_upload(base: Path, *, rounds: int, engine: str) -> Outcome:
    """svserver killed while the daemon uploads: the server cannot see the inbox (its own
    mount namespace hides it), so the daemon uploads every file; a proxy slows the uploads
    (1 s a chunk) so that the kill falls in the middle of them; restarted at once."""
    recovery: list[float] = []
    partial = 0
    rig = Rig(fresh(base), engine=engine)
    rig.server.wrap = hidden(rig.inbox)
    uploads = rig.server.data_dir / "uploads"
    with Proxy(("127.0.0.1", rig.server.port), delay=1.0) as proxy:
        rig.server_url = proxy.url
        with rig:
            for _ in range(rounds):
                proxy.mode = "slow"
                rig.drop(3, repeat=20)  # 22 s of audio, 700 kB each: a dozen chunks
                began = time.monotonic()
                while not any(uploads.glob("*")) and time.monotonic() - began < 30:
                    time.sleep(0.05)
                time.sleep(0.5)
                partial += sum(1 for _ in uploads.glob("*"))
                rig.server.kill()
                proxy.mode = "pass"
                rig.server.start()
                recovery.append(rig.wait_settled(SETTLE_TIMEOUT))
            outcome = rig.judge("server-kill-upload", faults=rounds, recovery=recovery)
            outcome.notes.append(f"upload files on the server when it was killed: {partial}")
            return outcome


def server_reply(base: Path, *, points: range, engine: str) -> Outcome:
    """svserver killed as it answers: at its Nth ``sendto`` (``strace --inject``), N swept
    over the answers to the daemon's submissions and refreshes, so some kills fall after a
    submission's commit and before its reply. The daemon sends again under the same ids."""
    strace = shutil.which("strace")
    if strace is None:
        raise RuntimeError("strace is needed (apt-get install strace)")
    kills = 0
    recovery: list[float] = []
    swept: list[str] = []
    unanswered = 0
    with Rig(fresh(base), engine=engine) as rig:
        for n in points:
            rig.server.stop()
            inject = f"inject=sendto:signal=SIGKILL:when={n}"
            rig.server.wrap = [strace, "-f", "-qq", "-o", "/dev/null", "-e", inject]
            try:
                rig.server.start()
            except RuntimeError:
                swept.append(f"sendto@{n} (at start)")  # killed answering /healthz
                kills += 1
                rig.server.wrap = []
                rig.server.start()
                continue
            dropped = {str(p) for p in rig.drop(5)}
            proc = rig.server.proc
            assert proc is not None
            began = time.monotonic()
            while proc.poll() is None and not rig.settled() and time.monotonic() - began < 60:
                time.sleep(0.05)
            killed = proc.poll() is not None
            kills += killed
            swept.append(f"sendto@{n}" + ("" if killed else " (not reached)"))
            if killed:  # streams the server had committed, whose submission got no answer
                answered = {
                    e.get("path") for e in rig.events() if e.get("event") == "stream.submitted"
                }
                unanswered += len((rig.server_sources() & dropped) - answered)
            if not killed:
                stop_wrapped(proc)
            rig.server.wrap = []
            began = time.monotonic()
            rig.server.start()
            rig.wait_settled(SETTLE_TIMEOUT)
            recovery.append(time.monotonic() - began)
        outcome = rig.judge("server-reply", faults=kills, recovery=recovery)
        outcome.notes.append("killed at: " + ", ".join(swept))
        outcome.notes.append(
            f"streams committed by svserver whose submission it never answered: {unanswered}"
        )
        return outcome


def network(base: Path, *, seconds: float, rate: float, engine: str) -> Outcome:
    """Files arrive at ``rate`` while a proxy between daemon and server resets requests
    mid-body, then throws away answers the server gave (after it committed), then holds
    every chunk 5 s; ``seconds`` each, then the network is sound again."""
    recovery: list[float] = []
    rig = Rig(fresh(base), engine=engine)
    with Proxy(("127.0.0.1", rig.server.port)) as proxy:
        rig.server_url = proxy.url
        with rig:
            modes: tuple[Mode, ...] = ("reset", "drop", "slow")
            for mode in modes:
                proxy.mode = mode
                began = time.monotonic()
                while time.monotonic() - began < seconds:
                    rig.drop(1)
                    time.sleep(1.0 / rate)
                proxy.mode = "pass"
                recovery.append(rig.wait_settled(SETTLE_TIMEOUT))
            outcome = rig.judge("network", faults=len(modes), recovery=recovery)
            outcome.notes.append(f"chunks touched: {dict(proxy.count)}")
            return outcome


def server_down(
    base: Path, *, seconds: float, rate: float, engine: str, name: str = "server-down"
) -> Outcome:
    """svserver stopped for ``seconds`` while files arrive at ``rate`` per second."""
    with Rig(fresh(base), engine=engine) as rig:
        rig.drop(int(rate * 2))
        rig.server.stop()
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            rig.drop(1)
            time.sleep(1.0 / rate)
        depth = rig.journal_depth()
        rig.server.start()
        recovery = [rig.wait_settled(SETTLE_TIMEOUT)]
        outcome = rig.judge(name, faults=1, recovery=recovery)
        outcome.notes.append(f"backlog in the journal when the server came back: {depth}")
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


def disk_full(base: Path, *, files: int, engine: str) -> Outcome:
    """The disk under the journal, then under the outputs, then under svserver's data dir
    fills up (a small tmpfs each, filled to the last byte) while files arrive; after a few
    seconds the space comes back. Nothing may be marked done without its outputs, nothing
    stored by svserver may be answered as stored when it was not; all resumes."""
    base = fresh(base)
    recovery: list[float] = []
    noted: list[str] = []
    with contextlib.ExitStack() as mounts:
        for name in ("state", "out", "svserver"):
            mounts.enter_context(tiny_fs(base / name, "32m"))
        with Rig(base, engine=engine) as rig:
            for what, fs in (
                ("journal", rig.state),
                ("outputs", rig.out),
                ("svserver", rig.server.data_dir),
            ):
                filler = fill(fs)
                rig.drop(files)
                time.sleep(4.0)
                wrong = rig.done_without_outputs()
                noted.append(f"{what} full: {len(wrong)} marked DONE without outputs")
                filler.unlink()
                (fs / "crumbs").unlink(missing_ok=True)
                recovery.append(rig.wait_settled(SETTLE_TIMEOUT))
            outcome = rig.judge("disk-full", faults=3, recovery=recovery)
            _said_full(outcome, rig, noted)
            return outcome


def _said_full(outcome: Outcome, rig: Rig, noted: list[str]) -> None:
    """What the daemon logged while the disks were full; rows DONE without outputs count as
    wrong outcomes."""
    counts = Counter(str(e.get("event")) for e in rig.events())
    said = {k: counts[k] for k in ("journal.write_failed", "output.failed", "server.unreachable")}
    full = sum(
        "failed with 507" in str(e.get("error", ""))
        for e in rig.events()
        if e.get("event") == "server.unreachable"
    )
    outcome.notes += [*noted, f"logged: {said}; svserver's 507 (disk full) seen: {full}"]
    outcome.wrong += sum(int(n.split(": ")[1].split()[0]) for n in noted)


def disk_full_injected(base: Path, *, files: int, engine: str) -> Outcome:
    """The same three disks full, where nothing can be mounted: strace attached to the
    running daemon or svserver (its main thread: the journal's and the store's SQLite,
    the outputs) makes every ``pwrite64`` (SQLite's writes; the journal, svserver's store)
    or ``fsync`` (the outputs') fail with ENOSPC, as a full disk does; detaching it is the
    space coming back."""
    strace = shutil.which("strace")
    if strace is None:
        raise RuntimeError("strace is needed (apt-get install strace)")
    recovery: list[float] = []
    noted: list[str] = []
    with Rig(fresh(base), engine=engine) as rig:
        assert rig.daemon is not None and rig.server.proc is not None
        for what, pid, call in (
            ("journal", rig.daemon.pid, "pwrite64"),
            ("outputs", rig.daemon.pid, "fsync"),
            ("svserver", rig.server.proc.pid, "pwrite64"),
        ):
            spy = subprocess.Popen(
                [
                    strace,
                    "-qq",
                    "-o",
                    "/dev/null",
                    "-p",
                    str(pid),
                    "-e",
                    f"trace={call}",
                    "-e",
                    f"inject={call}:error=ENOSPC",
                ],
            )
            time.sleep(0.5)  # attached
            rig.drop(files)
            time.sleep(4.0)
            wrong = rig.done_without_outputs()
            noted.append(f"{what} full: {len(wrong)} marked DONE without outputs")
            spy.send_signal(signal.SIGINT)  # detached: the space is back
            spy.wait(30)
            recovery.append(rig.wait_settled(SETTLE_TIMEOUT))
        outcome = rig.judge("disk-full-injected", faults=3, recovery=recovery)
        _said_full(outcome, rig, noted)
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


Scenario = Callable[[Path, bool, str], Outcome]

SCENARIOS: dict[str, Scenario] = {
    "crash-points": lambda b, short, e: crash_points(
        b,
        calls=("fdatasync", "rename", "sendto") if short else CRASH_CALLS,
        points=range(1, 30, 4) if short else range(1, 60),
        engine=e,
    ),
    "kill-loop": lambda b, short, e: kill_loop(
        b, kills=8 if short else 100, files=300 if short else 5000, engine=e
    ),
    "server-kill": lambda b, short, e: server_kill(
        b, rounds=2 if short else 6, files=200 if short else 2000, engine=e
    ),
    "server-kill-upload": lambda b, short, e: server_kill_upload(
        b, rounds=2 if short else 6, engine=e
    ),
    "server-reply": lambda b, short, e: server_reply(
        b, points=range(2, 9) if short else range(2, 30), engine=e
    ),
    "network": lambda b, short, e: network(b, seconds=3.0 if short else 30.0, rate=10.0, engine=e),
    "server-down": lambda b, short, e: server_down(
        b, seconds=5.0 if short else 60.0, rate=20.0, engine=e
    ),
    "server-down-10m": lambda b, short, e: server_down(
        b, seconds=20.0 if short else 600.0, rate=5.0, engine=e, name="server-down-10m"
    ),
    "churn": lambda b, short, e: churn(b, rounds=2 if short else 10, engine=e),
    "disk-full": lambda b, short, e: disk_full(b, files=10 if short else 100, engine=e),
    "disk-full-injected": lambda b, short, e: disk_full_injected(
        b, files=10 if short else 100, engine=e
    ),
    "damaged-state": lambda b, short, e: damaged_state(b, files=20 if short else 200, engine=e),
    "second-owner": lambda b, short, e: second_owner(b, engine=e),
    "overflow": lambda b, short, e: overflow(
        b,
        files=0,
        queue=256 if short else None,
        engine=e,  # just past the queue
    ),
}
"""Each scenario: (work dir, short form?, engine) -> its row."""


def row(o: Outcome) -> str:
    """One line of the table."""
    rec = f"{statistics.median(o.recovery):.2f} / {max(o.recovery):.2f}" if o.recovery else "-"
    return (
        f"| {o.name} | {o.faults} | {o.files} | {o.lost} | {o.twice} | {o.resent} | "
        f"{o.rewritten} | {o.errors} | {o.wrong} | {rec} | {o.rss_mb:.0f} | {o.depth} |"
    )


HEADER = (
    "| scenario | faults | files | lost | decoded twice | re-sent | outputs rewritten | "
    "expected errors | wrong outcome | recovery p50 / max (s) | daemon peak RSS (MB) | "
    "journal depth |\n" + "| --- " * 12 + "|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="the short form the tests run")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--engine", default="whisper", help="svserver's engine (default whisper)")
    args = parser.parse_args(argv)
    print(f"faults: short={args.short} engine={args.engine} load average {os.getloadavg()}")
    print(HEADER)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="svfaults-") as tmp:
        for name in args.only or list(SCENARIOS):
            began = time.monotonic()
            outcome = SCENARIOS[name](Path(tmp) / name, args.short, args.engine)
            print(row(outcome), flush=True)
            for note in outcome.notes[:20]:
                print(f"    {note}")
            print(f"    ({time.monotonic() - began:.0f} s)", flush=True)
            failed += not outcome.ok
    print(f"faults: load average at end {os.getloadavg()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
