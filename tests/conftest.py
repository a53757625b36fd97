"""Shared test helpers: where the real speech test data lives; tests that need privileges."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "speech"


def speech_file(name: str) -> Path:
    """Path of a file in ../shared/testdata/speech; skips the test when the folder is absent."""
    path = TESTDATA / name
    if not TESTDATA.is_dir():
        pytest.skip(f"test data folder {TESTDATA} is absent (it lives in ../shared/testdata)")
    return path


def proc_environ(pid: int) -> dict[str, str]:
    """A running process's environment, from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def reference(name: str) -> str:
    """The normalised reference transcript of a LibriVox clip (its ``.txt`` beside it)."""
    from tests.normalise import normalise

    return normalise(speech_file(name.replace(".wav", ".txt")).read_text())


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' svservers and engines assemble Whisper base (once per run)."""
    return tmp_path_factory.mktemp("models")


REQUIRE_PRIVILEGED = "SVWATCHD_REQUIRE_PRIVILEGED"
"""Set to 1 (``.ci/run`` does) where the tests run as root with a writable ``/proc/sys``:
a test that needs those and cannot have them then fails instead of skipping."""


def needs_privilege(reason: str) -> None:
    """This test cannot run here (``reason``: mounting a tmpfs, writing ``/proc/sys``...):
    skip it, or fail it where ``$SVWATCHD_REQUIRE_PRIVILEGED`` says privileges are there."""
    if os.environ.get(REQUIRE_PRIVILEGED) == "1":
        pytest.fail(f"{reason} ({REQUIRE_PRIVILEGED}=1: this machine should allow it)")
    pytest.skip(reason)


_privileged: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Note the outcome of every test marked ``privileged``, for the summary."""
    if "privileged" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        _privileged.append((report.nodeid, report.outcome))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which tests that need privileges ran, and which did not."""
    if not _privileged:
        return
    terminalreporter.section("tests that need privileges (root, tmpfs, /proc/sys)")
    for nodeid, outcome in _privileged:
        terminalreporter.write_line(f"{outcome.upper():8} {nodeid}")
