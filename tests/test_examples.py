"""The README's commands and the example configs work as documented."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from tests.conftest import TESTDATA, speech_file
from tests.daemon.daemon_harness import DaemonProc, wait_for
from tests.media_files import write_format
from tests.normalise import normalise

ROOT = Path(__file__).resolve().parents[1]


def _check(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_readme_names_the_two_setup_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/demo" in readme and "./scripts/test" in readme
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text()
    demo = (ROOT / "scripts" / "demo").read_text()
    assert "config/svwatchd.yaml" in demo and "mkdir -p inbox transcripts" in demo


def test_production_example_is_valid_once_its_folders_exist(tmp_path: Path) -> None:
    text = (ROOT / "config" / "production.yaml").read_text()
    # move the example's absolute paths under tmp_path, keep everything else as written
    text = re.sub(r"(?<![\w.])/(srv|var|etc)/", lambda m: f"{tmp_path}/{m.group(1)}/", text)
    (tmp_path / "etc" / "svwatchd").mkdir(parents=True)
    (tmp_path / "etc" / "svwatchd" / "token").write_text("t0ken\n")
    (tmp_path / "etc" / "svwatchd" / "hook.key").write_text("a shared secret\n")
    for watch in yaml.safe_load(text)["watches"]:
        Path(watch["path"]).mkdir(parents=True)
    config = tmp_path / "production.yaml"
    config.write_text(text)
    result = _check(config, tmp_path)
    assert result.returncode == 0, result.stderr


def test_demo_config_runs_with_the_embedded_whisper_server(tmp_path: Path) -> None:
    """The README's first command, minus the install: the demo config, from a fresh folder."""
    speech_file("001.wav")
    shutil.copy(ROOT / "config" / "svwatchd.yaml", tmp_path / "svwatchd.yaml")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "transcripts").mkdir()
    assert _check(tmp_path / "svwatchd.yaml", tmp_path).returncode == 0
    daemon = DaemonProc(tmp_path / "svwatchd.yaml")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the demo's paths are relative to where it runs
    try:
        daemon.start()
    finally:
        os.chdir(cwd)
    try:
        shutil.copy(
            TESTDATA / "sense_and_sensibility_01_austen_64kb-0930.wav", tmp_path / "inbox" / "a.wav"
        )
        shutil.copy(TESTDATA / "goforward.raw", tmp_path / "inbox" / "b.raw")
        speech, rate = sf.read(TESTDATA / "sense_and_sensibility_01_austen_64kb-0930.wav")
        write_format(tmp_path / "c.mp3", speech, rate).rename(tmp_path / "inbox" / "c.mp3")
        out = tmp_path / "transcripts"
        names = ("a.wav.txt", "b.raw.txt", "c.mp3.txt")
        wait_for(
            lambda: all((out / n).exists() for n in names),
            180,
            "demo transcripts",
            daemon.output,
        )
        assert normalise((out / "c.mp3.txt").read_text()) == (
            "he might even have been made amiable himself"
        )
        assert normalise((out / "a.wav.txt").read_text()) == (
            "he might even have been made amiable himself"
        )
        assert normalise((out / "b.raw.txt").read_text()) == "go forward ten meters"
        for fmt in ("json", "srt", "vtt"):
            assert (out / f"a.wav.{fmt}").exists()
    finally:
        assert daemon.stop() == 0
    assert "server.stopping" in daemon.output()  # the embedded server went down with it


@pytest.mark.parametrize("name", ["svwatchd.yaml", "production.yaml"])
def test_example_configs_parse_as_yaml(name: str) -> None:
    assert isinstance(yaml.safe_load((ROOT / "config" / name).read_text()), dict)
