"""Per-directory metadata files: inheritance, validation, holding, and the daemon around them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from svwatchd.daemon._metadata import Held, MetadataResolver, load_metadata_file
from svwatchd.errors import ConfigError
from tests.conftest import TESTDATA, speech_file
from tests.daemon.daemon_harness import DaemonProc, tags_of, wait_for, write_config
from tests.normalise import normalise
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(300)


def _write(path: Path, text: str) -> None:
    """Atomically, as the issue asks of tests: temp file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_inheritance_and_precedence_across_three_levels(tmp_path: Path) -> None:
    root = tmp_path / "watch"
    _write(root / ".svwatchd.yaml", "customer: acme\ncampaign: base\nsamprate: 8k\n")
    _write(root / "a" / ".svwatchd.yaml", "campaign: spring\nencoding: ULAW\n")
    _write(root / "a" / "b" / ".svwatchd.yaml", "recorder: r7\ncampaign: final\n")
    (root / "a" / "b").mkdir(parents=True, exist_ok=True)
    raw = root / "a" / "b" / "bob_20261124.raw"
    shutil.copy(speech_file("goforward.raw"), raw)
    import re

    resolver = MetadataResolver(
        root,
        {"customer": "config", "priority": 1, "agent": "config"},
        tags_from_path=re.compile(r"(?P<agent>[a-z]+)_(?P<date>\d{8})"),
    )
    meta = resolver.resolve(raw)
    assert meta == {
        "customer": "acme",  # a metadata file beats the watch config
        "priority": 1,  # the watch config still applies where nothing overrides it
        "campaign": "final",  # nearer wins
        "samprate": "8k",
        "encoding": "ULAW",
        "recorder": "r7",
        "agent": "bob",  # tags_from_path beats everything
        "date": "20261124",
    }
    # at the top level only the root file applies
    top = root / "top.raw"
    shutil.copy(speech_file("goforward.raw"), top)
    assert resolver.resolve(top)["campaign"] == "base"  # type: ignore[index]
    # a WAV header wins: format fields are dropped for WAV files
    wav = root / "a" / "b" / "c.wav"
    shutil.copy(TESTDATA / "001.wav", wav)
    meta = resolver.resolve(wav)
    assert isinstance(meta, dict) and "samprate" not in meta and "encoding" not in meta
    assert meta["recorder"] == "r7"


@pytest.mark.parametrize(
    ("text", "line", "key", "needle"),
    [
        ("customer: acme\nsamprate: 7k\n", 2, "samprate", "7000"),
        ("a: 1\nencoding: MP3\n", 2, "encoding", "MP3"),
        ("a: 1\n  b: [\n", None, None, "YAML"),
        ("- just\n- a list\n", 1, None, "mapping"),
        ("ok: 1\nnested: {x: 1}\n", 2, "nested", "nested"),
    ],
)
def test_invalid_files_name_file_line_and_key(
    tmp_path: Path, text: str, line: int | None, key: str | None, needle: str
) -> None:
    path = tmp_path / ".svwatchd.yaml"
    _write(path, text)
    with pytest.raises(ConfigError) as err:
        load_metadata_file(path, tmp_path)
    assert err.value.file == str(path) and err.value.key == key and needle in str(err.value)
    if line is not None:
        assert err.value.line == line and f"{path}:{line}" in str(err.value)


def test_oversized_and_escaping_files_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "watch"
    root.mkdir()
    big = root / ".svwatchd.yaml"
    _write(big, "x: " + "a" * 70_000 + "\n")
    with pytest.raises(ConfigError, match="limited"):
        load_metadata_file(big, root)
    outside = tmp_path / "elsewhere.yaml"
    _write(outside, "customer: x\n")
    big.unlink()
    big.symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the watch"):
        load_metadata_file(big, root)


def test_broken_file_holds_only_what_is_below_it(tmp_path: Path) -> None:
    root = tmp_path / "watch"
    _write(root / "bad" / ".svwatchd.yaml", "samprate: fast\n")
    (root / "good").mkdir(parents=True)
    for f in (root / "bad" / "x.raw", root / "good" / "y.raw"):
        shutil.copy(speech_file("goforward.raw"), f)
    resolver = MetadataResolver(root, {})
    held = resolver.resolve(root / "bad" / "x.raw")
    assert isinstance(held, Held) and held.file.endswith("bad/.svwatchd.yaml")
    assert "samprate" in held.reason
    assert resolver.resolve(root / "good" / "y.raw") == {}
    _write(root / "bad" / ".svwatchd.yaml", "samprate: 16k\n")  # fixed: released
    assert resolver.resolve(root / "bad" / "x.raw") == {"samprate": "16k"}


def test_check_reports_every_broken_metadata_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    _write(inbox / "x" / ".svwatchd.yaml", "customer: a\nchannels: zero\n")
    cfg = write_config(
        tmp_path, "embedded", [{"path": str(inbox), "output": {"dir": str(tmp_path / "o")}}]
    )
    run = subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert f"{inbox}/x/.svwatchd.yaml:2: channels:" in run.stderr
    _write(inbox / "x" / ".svwatchd.yaml", "customer: a\nchannels: 1\n")
    run = subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


# -- the daemon around them ----------------------------------------------------------------


def test_daemon_uses_edits_holds_and_releases(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(
        work,
        srv,
        [{"path": str(inbox), "settle": "500ms", "output": {"dir": str(out), "formats": ["txt"]}}],
    )
    _write(
        inbox / "calls" / ".svwatchd.yaml",
        "samprate: 16k\nencoding: SPCM\nsampwidth: 2\ncampaign: one\n",
    )
    daemon = DaemonProc(cfg).start()
    try:
        shutil.copy(TESTDATA / "goforward.raw", inbox / "calls" / "first.raw")
        wait_for(lambda: (out / "calls" / "first.raw.txt").exists(), 60, "first", daemon.output)
        assert normalise((out / "calls" / "first.raw.txt").read_text()) == "go forward ten meters"
        assert tags_of(srv, inbox / "calls" / "first.raw") == {"campaign": "one"}

        # edited while running: new files get the new metadata, the old one keeps its own
        _write(
            inbox / "calls" / ".svwatchd.yaml",
            "samprate: 16k\nencoding: SPCM\nsampwidth: 2\ncampaign: two\n",
        )
        time.sleep(0.3)
        shutil.copy(TESTDATA / "something.raw", inbox / "calls" / "second.raw")
        wait_for(lambda: (out / "calls" / "second.raw.txt").exists(), 60, "second", daemon.output)
        assert tags_of(srv, inbox / "calls" / "second.raw") == {"campaign": "two"}
        assert tags_of(srv, inbox / "calls" / "first.raw") == {"campaign": "one"}

        # broken: files under it are held with a clear error, logged once; fixing releases
        _write(inbox / "calls" / ".svwatchd.yaml", "samprate: 16k\nencoding: SPCM\nsampwidth: 9\n")
        time.sleep(0.3)
        for i in range(3):
            shutil.copy(TESTDATA / "goforward.raw", inbox / "calls" / f"held{i}.raw")
        wait_for(lambda: len(daemon.events("file.held")) == 3, 60, "held", daemon.output)
        invalid = daemon.events("metadata.invalid")
        assert len(invalid) == 1 and "sampwidth" in invalid[0]["error"]
        assert ".svwatchd.yaml:3" in invalid[0]["error"]
        status = subprocess.run(
            [sys.executable, "-m", "svwatchd.daemon._cli", "status", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            status.returncode == 0 and "sampwidth" in status.stdout and "held0.raw" in status.stdout
        )
        assert not list(out.glob("calls/held*"))
        _write(inbox / "calls" / ".svwatchd.yaml", "samprate: 16k\nencoding: SPCM\nsampwidth: 2\n")
        wait_for(lambda: len(list(out.glob("calls/held*.txt"))) == 3, 60, "released", daemon.output)
    finally:
        daemon.stop()


def test_folder_copied_in_gets_its_late_metadata_file(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    cfg = write_config(
        work,
        srv,
        [{"path": str(inbox), "settle": "1s", "output": {"dir": str(out), "formats": ["txt"]}}],
    )
    daemon = DaemonProc(cfg).start()
    try:
        # like cp -r: the folder appears, its audio lands, its metadata file comes last
        folder = inbox / "batch"
        folder.mkdir()
        for i in range(3):
            shutil.copy(TESTDATA / "goforward.raw", folder / f"f{i}.raw")
            time.sleep(0.2)
        shutil.copy(TESTDATA / "goforward.raw", folder / "f3.raw")
        time.sleep(0.3)
        meta = "samprate: 16k\nencoding: SPCM\nsampwidth: 2\ncustomer: late\n"
        (folder / ".svwatchd.yaml").write_text(meta)  # written in place, as cp does
        wait_for(lambda: len(list(out.glob("batch/*.txt"))) == 4, 60, "all four", daemon.output)
        for i in range(4):
            assert tags_of(srv, folder / f"f{i}.raw") == {"customer": "late"}
        assert not list(out.glob("batch/*.error.json"))
    finally:
        daemon.stop()
