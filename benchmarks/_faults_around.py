"""The fault suite's scenarios around the daemon: svserver killed or down, the network
between them, the disks under both. Each returns its row of the table
(``benchmarks/faults.py``)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from benchmarks._faultrig import (
    SETTLE_TIMEOUT,
    Outcome,
    Rig,
    fresh,
    need_strace,
    stop_wrapped,
)
from benchmarks._proxy import Mode, Proxy
from tests.diskfull import fill, tiny_fs

__all__ = [
    "disk_full",
    "disk_full_injected",
    "hidden",
    "network",
    "server_down",
    "server_kill",
    "server_kill_upload",
    "server_reply",
]


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
    strace = need_strace()
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
    strace = need_strace()
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
