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
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._faultrig import Outcome
from benchmarks._faults_around import (
    disk_full,
    disk_full_injected,
    hidden,
    network,
    server_down,
    server_kill,
    server_kill_upload,
    server_reply,
)
from benchmarks._faults_daemon import (
    CRASH_CALLS,
    QUEUE_KNOB,
    churn,
    crash_points,
    damaged_state,
    kill_loop,
    overflow,
    second_owner,
)

__all__ = ["HEADER", "QUEUE_KNOB", "SCENARIOS", "Scenario", "hidden", "main", "row"]

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
        f"| {o.name} | {o.faults} | {o.files} | {o.lost} | {o.unfinished} | {o.twice} | "
        f"{o.resent} | {o.rewritten} | {o.errors} | {o.wrong} | {rec} | {o.rss_mb:.0f} | "
        f"{o.depth} |"
    )


HEADER = (
    "| scenario | faults | files | lost | unfinished | decoded twice | re-sent | "
    "outputs rewritten | expected errors | wrong outcome | recovery p50 / max (s) | "
    "daemon peak RSS (MB) | journal depth |\n" + "| --- " * 13 + "|"
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
