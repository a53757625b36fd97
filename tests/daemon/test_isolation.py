"""Files the daemon cannot handle, dropped among good ones: the good ones go through.

Real daemon, real svserver (pocketsphinx), real inotify; the triggers are
real files. Each used to make a whole step fail at every turn
(``daemon.step_failed``) until the file went away.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import TESTDATA
from tests.daemon.daemon_harness import DaemonProc, inbox_watch, wait_for, write_config
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(300)


def test_a_file_name_that_is_not_utf8_is_left_out_alone(
    area: tuple[SvServer, Path], work: Path
) -> None:
    """A name in Latin-1 (an old Windows share): the journal cannot store it, so the
    file is reported once and left out; the files recorded in the same slice are not."""
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(work, srv, [inbox_watch(work)], rescan_interval="1s")
    daemon = DaemonProc(cfg).start()
    try:
        bad = os.fsencode(inbox) + b"/caf\xe9.wav"
        with open(bad, "wb") as f:
            f.write((TESTDATA / "001.wav").read_bytes())
        for i in range(3):
            shutil.copy(TESTDATA / "001.wav", inbox / f"good{i}.wav")
        wait_for(
            lambda: all((out / f"good{i}.wav.txt").exists() for i in range(3)),
            60,
            "the good files",
            daemon.output,
        )
        time.sleep(3)  # a few rescans: the file is not reported again, nor taken for lost
    finally:
        daemon.stop()
    (left_out,) = daemon.events("file.step_failed")
    assert left_out["step"] == "ingest" and left_out["level"] == "error"
    assert left_out["path"] == os.fsdecode(bad) and "surrogates" in left_out["error"]
    assert daemon.events("daemon.step_failed") == []
    assert daemon.events("watch.overflow") == []
    assert len(daemon.events("stream.submitted")) == 3


def test_metadata_files_yaml_cannot_build_hold_only_their_folder(
    area: tuple[SvServer, Path], work: Path
) -> None:
    """YAML that parses but cannot be built (a tag SafeLoader does not know; nesting too
    deep for PyYAML's recursion) holds the files below it, like any invalid metadata file."""
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(work, srv, [inbox_watch(work)])
    for folder, text in (
        ("tagged", "campaign: !spring x\n"),
        ("deep", "campaign: " + "[" * 5000 + "]" * 5000 + "\n"),
    ):
        (inbox / folder).mkdir()
        (inbox / folder / ".svwatchd.yaml").write_text(text)
    daemon = DaemonProc(cfg).start()
    try:
        for folder in ("tagged", "deep", "fine"):
            (inbox / folder).mkdir(exist_ok=True)
            shutil.copy(TESTDATA / "001.wav", inbox / folder / "x.wav")
        wait_for(lambda: (out / "fine" / "x.wav.txt").exists(), 60, "fine", daemon.output)
        wait_for(lambda: len(daemon.events("file.held")) == 2, 30, "held", daemon.output)
    finally:
        daemon.stop()
    invalid = {e["path"]: e["error"] for e in daemon.events("metadata.invalid")}
    assert "could not determine a constructor" in invalid[str(inbox / "tagged/.svwatchd.yaml")]
    assert "nested too deeply" in invalid[str(inbox / "deep/.svwatchd.yaml")]
    assert daemon.events("daemon.step_failed") == []
    assert not list(out.glob("tagged/*")) and not list(out.glob("deep/*"))
