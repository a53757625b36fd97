"""Outputs where the next program looks: beside the source, named by a template, readable.

End to end with a real daemon and a real svserver (pocketsphinx): the names
only depend on the template, the language tag or what was heard, and the
channels.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from svwatchd.daemon._config import validate_config
from svwatchd.daemon._outputnames import OutputName
from tests.conftest import TESTDATA
from tests.daemon.daemon_harness import DaemonProc, server_streams, wait_for, write_config
from tests.normalise import normalise
from tests.svserver import SvServer

pytestmark = pytest.mark.timeout(300)

RAW = {"samprate": "16k", "encoding": "SPCM", "sampwidth": 2}


def _beside(work: Path, name: str, **extra: Any) -> dict[str, Any]:
    """A watch of ``work/inbox`` writing beside its sources with the template ``name``."""
    output = {"dir": "same", "name": name, "formats": ["txt", "srt"], **extra.pop("output", {})}
    return {"path": str(work / "inbox"), "settle": "300ms", "output": output, **extra}


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """The daemon child inherits the umask it starts with."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_subtitles_beside_the_video_with_the_umask_and_never_taken_as_input(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox = work / "inbox"
    # exts: [] takes every file: only the output-name rule keeps the outputs out
    watch = _beside(work, "{stem}.{lang}.{fmt}", exts=[], metadata={"language": "en"})
    cfg = write_config(work, srv, [watch])
    with _umask(0o022):
        daemon = DaemonProc(cfg).start()
    try:
        (inbox / "season 1").mkdir()
        shutil.copy(TESTDATA / "001.wav", inbox / "season 1" / "movie.wav")
        srt = inbox / "season 1" / "movie.en.srt"
        txt = inbox / "season 1" / "movie.en.txt"
        wait_for(lambda: srt.exists() and txt.exists(), 60, "outputs beside", daemon.output)
        assert normalise(txt.read_text()) == "ten of clubs"
        assert srt.read_text().startswith("1\n00:00:")
        assert _mode(srt) == _mode(txt) == 0o644  # what a plain write gives under umask 022
        wait_for(lambda: daemon.events("stream.done"), 30, "done", daemon.output)
        time.sleep(2)  # a rescan or an event would have taken them by now
        assert [e["path"] for e in daemon.events("file.detected")] == [
            str(inbox / "season 1" / "movie.wav")
        ]
        assert len(server_streams(srv, inbox)) == 1
        assert sorted(p.name for p in (inbox / "season 1").iterdir()) == [
            "movie.en.srt",
            "movie.en.txt",
            "movie.wav",
        ]
    finally:
        daemon.stop()
    # a restart's scan does not take them either
    again = DaemonProc(cfg).start()
    try:
        time.sleep(2)
        assert len(again.events("file.detected")) == 1 and len(server_streams(srv, inbox)) == 1
    finally:
        again.stop()


def test_the_engines_language_else_und_and_output_mode(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    watch = {
        "path": str(inbox),
        "settle": "300ms",
        "output": {"dir": str(out), "name": "{stem}.{lang}.{fmt}", "mode": "0640"},
    }
    with _umask(0o077):
        daemon = DaemonProc(write_config(work, srv, [watch])).start()
    try:
        shutil.copy(TESTDATA / "001.wav", inbox / "call.wav")
        shutil.copy(TESTDATA / "bad.wav", inbox / "bad.wav")
        # none is tagged or heard, but the server's engine decodes English only: en
        # (Jellyfin and Plex find movie.en.srt); a file that failed was heard in nothing: und
        names = ["call.en.txt", "call.en.json", "call.en.srt", "call.en.vtt"]
        wait_for(lambda: all((out / n).exists() for n in names), 60, "outputs", daemon.output)
        assert all(_mode(out / n) == 0o640 for n in names)  # output.mode, not the umask
        wait_for(lambda: (out / "bad.und.error.json").exists(), 60, "error file", daemon.output)
        assert _mode(out / "bad.und.error.json") == 0o640
    finally:
        daemon.stop()


def test_a_channel_per_file_with_split_channels(area: tuple[SvServer, Path], work: Path) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    watch = {
        "path": str(inbox),
        "settle": "300ms",
        "metadata": RAW,
        "output": {"dir": str(out), "name": "{stem}.{channel}.{fmt}", "formats": ["txt"]},
    }
    daemon = DaemonProc(write_config(work, srv, [watch])).start()
    try:
        left, _ = sf.read(TESTDATA / "001.wav", dtype="float32")
        right, _ = sf.read(TESTDATA / "005.wav", dtype="float32")
        call = np.zeros((len(left) + len(right) + 16000, 2), dtype=np.float32)
        call[: len(left), 0] = left
        call[len(left) + 16000 :, 1] = right
        (inbox / "calls").mkdir()
        (inbox / "calls" / ".svwatchd.yaml").write_text(
            "split_channels: true\nchannel_labels: [agent, customer]\n"
        )
        sf.write(work / "call.wav", call, 16000)
        (work / "call.wav").rename(inbox / "calls" / "call.wav")
        shutil.copy(TESTDATA / "001.wav", inbox / "mono.wav")
        agent, customer = out / "calls" / "call.agent.txt", out / "calls" / "call.customer.txt"
        wait_for(lambda: agent.exists() and customer.exists(), 90, "per channel", daemon.output)
        assert normalise(agent.read_text()) == "agent ten of clubs"
        assert "customer" in customer.read_text() and "agent" not in customer.read_text()
        # channels not split: one output of the mixed audio
        wait_for(lambda: (out / "mono.mix.txt").exists(), 60, "mix", daemon.output)
    finally:
        daemon.stop()


def test_two_sources_with_one_output_name_are_refused(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox = work / "inbox"
    watch = _beside(work, "{stem}.{fmt}", exts=["wav", "raw"], metadata=RAW)
    watch["output"]["formats"] = ["txt"]
    cfg = write_config(work, srv, [watch])
    daemon = DaemonProc(cfg).start()
    try:
        shutil.copy(TESTDATA / "001.wav", inbox / "a.wav")
        wait_for(lambda: (inbox / "a.txt").exists(), 60, "first", daemon.output)
        shutil.copy(TESTDATA / "goforward.raw", inbox / "a.raw")
        wait_for(lambda: daemon.events("stream.error"), 60, "the refusal", daemon.output)
        (error,) = daemon.events("stream.error")
        assert error["path"] == str(inbox / "a.raw")
        assert str(inbox / "a.wav") in error["error"] and str(inbox / "a.txt") in error["error"]
        assert normalise((inbox / "a.txt").read_text()) == "ten of clubs"  # not overwritten
        assert (inbox / "a.error.json").exists()
    finally:
        daemon.stop()
    checked = subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 1
    assert "watches[0].output.name" in checked.stderr
    assert str(inbox / "a.raw") in checked.stderr and str(inbox / "a.wav") in checked.stderr


def test_skip_if_exists_records_done_without_decoding(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox = work / "inbox"
    watch = _beside(work, "{stem}.{lang}.{fmt}", skip_if_exists=True)
    watch["output"]["formats"] = ["srt"]
    shutil.copy(TESTDATA / "001.wav", inbox / "movie.wav")
    (inbox / "movie.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nalready here\n")
    cfg = write_config(work, srv, [watch])
    checked = subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "{stem}.{lang}.{fmt} (srt) beside the sources if not there yet" in checked.stdout
    daemon = DaemonProc(cfg).start()
    try:
        wait_for(lambda: daemon.events("file.skipped"), 30, "the skip", daemon.output)
        shutil.copy(TESTDATA / "005.wav", inbox / "other.wav")
        wait_for(lambda: (inbox / "other.en.srt").exists(), 60, "a decode", daemon.output)
        (skipped,) = daemon.events("file.skipped")
        assert skipped["path"] == str(inbox / "movie.wav")
        assert skipped["outputs"] == [str(inbox / "movie.en.srt")]
        assert [s["source"] for s in server_streams(srv, inbox)] == [str(inbox / "other.wav")]
        assert "already here" in (inbox / "movie.en.srt").read_text()
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("output", "key", "words"),
    [
        ({"name": "{stem}.txt"}, "watches[0].output.name", "has no {fmt}"),
        ({"name": "{title}.{fmt}"}, "watches[0].output.name", "unknown field {title}"),
        ({"name": "sub/{name}.{fmt}"}, "watches[0].output.name", "plain file name"),
        ({"name": "{fmt:>5}"}, "watches[0].output.name", "without a format"),
        ({"mode": "rw-r--r--"}, "watches[0].output.mode", "octal"),
        ({"mode": "0999"}, "watches[0].output.mode", "octal"),
        ({"dri": "x"}, "watches[0].output.dri", "did you mean 'dir'"),
    ],
)
def test_output_config_errors_name_the_key(
    tmp_path: Path, output: dict[str, Any], key: str, words: str
) -> None:
    (tmp_path / "in").mkdir()
    watch = {"path": str(tmp_path / "in"), "output": {"dir": str(tmp_path / "o"), **output}}
    errors = validate_config(write_config(tmp_path, "embedded", [watch]))
    assert [e.key for e in errors] == [key], errors
    assert words in str(errors[0])


def test_output_mode_is_read_as_octal(tmp_path: Path) -> None:
    from svwatchd.daemon._config import load_config

    (tmp_path / "in").mkdir()
    cfg = tmp_path / "c.yaml"
    for text, mode in (("0644", 0o644), ("640", 0o640), ('"0o664"', 0o664), ("0600", 0o600)):
        cfg.write_text(
            f"state_dir: {tmp_path / 's'}\nwatches:\n  - path: {tmp_path / 'in'}\n"
            f"    output: {{dir: same, mode: {text}}}\n"
        )
        (watch,) = load_config(cfg).watches
        assert watch.output_mode == mode, text
        assert watch.output_same and watch.output_dir == tmp_path / "in"
        assert watch.excluded_dirs == ()  # the watch's own folder is not excluded


def test_template_names() -> None:
    default = OutputName()
    assert default.render("/a/call.wav", "txt", None) == "call.wav.txt"
    jellyfin = OutputName.parse("{stem}.{lang}.{fmt}")
    assert jellyfin.render("/m/movie.mkv", "srt", "en") == "movie.en.srt"
    assert jellyfin.render("/m/movie.mkv", "srt", None) == "movie.und.srt"
    both = OutputName.parse("{name}-{ext}-{channel}.{fmt}")
    assert both.render("x.tar.gz", "json", None, "agent") == "x.tar.gz-gz-agent.json"
    assert jellyfin.is_output("movie.fr.srt", ("srt",))
    assert jellyfin.is_output(".movie.en.srt.k3j2l1.tmp", ("srt",))  # atomic_write's temp
    assert jellyfin.is_output("movie.und.error.json", ("srt",))
    assert not jellyfin.is_output("movie.mkv", ("srt",))
    assert not jellyfin.is_output("movie.en.txt", ("srt",))
