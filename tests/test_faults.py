"""The fault suite's short form (``benchmarks/faults.py --short``): nothing lost, nothing
decoded twice, with the daemon killed, the server killed or down, inotify overflowing.

Each scenario is the benchmark's own code with fewer faults and files; the full
run (``python -m benchmarks.faults``) prints the table of docs/reliability.md.
The server decodes with pocketsphinx here (the engine does not change what is
proved, and it is quicker); the full run uses the default, Whisper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks._faultrig import Outcome
from benchmarks.faults import QUEUE_KNOB, SCENARIOS, hidden
from tests.conftest import needs_privilege, speech_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(name: str, tmp_path: Path) -> Outcome:
    speech_file("001.wav")  # skips where the shared test data is absent
    outcome = SCENARIOS[name](tmp_path / name, True, "pocketsphinx")
    assert outcome.ok, (outcome, outcome.notes)
    assert outcome.files > 0 and outcome.faults > 0
    return outcome


def test_daemon_killed_again_and_again(tmp_path: Path) -> None:
    outcome = _run("kill-loop", tmp_path)
    assert outcome.errors == outcome.files // 50 > 0  # the bad files: an error each


def test_server_killed_mid_submission_and_mid_decode(tmp_path: Path) -> None:
    _run("server-kill", tmp_path)


def test_server_down_backlog_waits_in_the_journal(tmp_path: Path) -> None:
    outcome = _run("server-down", tmp_path)
    assert outcome.depth > 0  # files did wait in the journal


@pytest.mark.privileged
def test_inotify_overflow_is_found_by_the_rescan(tmp_path: Path) -> None:
    if not os.access(QUEUE_KNOB, os.W_OK):
        needs_privilege(f"cannot lower {QUEUE_KNOB} here (needs a writable /proc/sys)")
    outcome = _run("overflow", tmp_path)
    assert outcome.overflows >= 1  # the lost events were noticed and logged


def _needs_strace() -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (scripts/test installs it from Debian)")
    probe = subprocess.run([strace, "-qq", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode != 0:  # ptrace refused (a container's seccomp or Yama policy)
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode(errors='replace')[:200]}")


@pytest.mark.privileged
def test_daemon_killed_at_each_crash_point(tmp_path: Path) -> None:
    _needs_strace()
    outcome = _run("crash-points", tmp_path)
    killed = outcome.notes[-1]
    for call in ("fdatasync", "rename", "sendto"):
        assert f"{call}@1," in killed  # each call's sweep did kill the daemon


def test_damaged_journal_and_server_database(tmp_path: Path) -> None:
    outcome = _run("damaged-state", tmp_path)
    moved = outcome.notes[0]
    assert "journal.db.corrupt-" in moved and "svserver.db.corrupt-" in moved


def test_a_second_daemon_and_a_second_server_are_refused(tmp_path: Path) -> None:
    outcome = _run("second-owner", tmp_path)  # a second one that started is a wrong outcome
    assert all(": refused: " in note for note in outcome.notes)


@pytest.mark.privileged
def test_server_killed_as_it_answers(tmp_path: Path) -> None:
    _needs_strace()
    outcome = _run("server-reply", tmp_path)
    assert outcome.faults >= 5  # the server was killed at most of the points swept


def test_network_faults_between_daemon_and_server(tmp_path: Path) -> None:
    outcome = _run("network", tmp_path)
    touched = outcome.notes[0]
    for mode in ("reset", "drop", "slow"):
        assert f"'{mode}'" in touched  # each fault did reach a connection


@pytest.mark.privileged
def test_disks_full_under_journal_outputs_and_server(tmp_path: Path) -> None:
    outcome = _run("disk-full", tmp_path)  # mounting skips (or fails in CI) where not allowed
    assert "507 (disk full) seen: 0" not in outcome.notes[-1]  # svserver said its disk was full


def test_identity_churn(tmp_path: Path) -> None:
    _run("churn", tmp_path)


@pytest.mark.privileged
def test_server_killed_mid_upload(tmp_path: Path) -> None:
    probe = subprocess.run([*hidden(tmp_path), "true"], capture_output=True)
    if probe.returncode != 0:
        needs_privilege(f"cannot hide a folder in a mount namespace here: {probe.stderr!r}")
    outcome = _run("server-kill-upload", tmp_path)
    assert not outcome.notes[0].endswith(": 0")  # uploads were cut by the kill


@pytest.mark.privileged
def test_disks_full_by_injected_enospc(tmp_path: Path) -> None:
    # the variant for machines that cannot mount: strace attached to the running processes
    _needs_strace()
    if os.geteuid() != 0:
        needs_privilege("attaching strace to a running process needs root (CAP_SYS_PTRACE)")
    outcome = _run("disk-full-injected", tmp_path)
    said = outcome.notes[-1]
    assert "'journal.write_failed': 0" not in said and "'output.failed': 0" not in said
    assert "507 (disk full) seen: 0" not in said
