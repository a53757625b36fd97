"""What recorders, phones and meeting tools write, dropped into a watch, end to end.

Compressed files and containers are made here from the shared speech; the
daemon runs with its default extensions against a real svserver
(pocketsphinx, as the other daemon tests: the formats are decoded by the same
code whatever the engine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from svwatchd.model.contract import AUDIO_EXTENSIONS, FILETYPES
from svwatchd.model.select import FileSelector
from tests.conftest import TESTDATA
from tests.daemon.daemon_harness import DaemonProc, inbox_watch, wait_for, write_config
from tests.media_files import write_format
from tests.normalise import normalise
from tests.svserver import SvServer


def _speech(name: str) -> np.ndarray:
    data, _ = sf.read(TESTDATA / name, dtype="float32")
    return np.asarray(data, dtype=np.float32)


def test_every_format_dropped_in_becomes_a_transcript(
    area: tuple[SvServer, Path], work: Path
) -> None:
    srv, _ = area
    inbox, out = work / "inbox", work / "out"
    watch = inbox_watch(work, output={"dir": str(out), "formats": ["txt", "json"]})
    daemon = DaemonProc(write_config(work, srv, [watch])).start()
    try:
        made = {
            "cards.mp3": "001.wav",
            "cards.flac": "005.wav",
            "cards.m4a": "003.wav",
            "cards.ogg": "001.wav",
            "cards.webm": "005.wav",
        }
        for name, source in made.items():
            staging = write_format(work / name, _speech(source), 16000)
            staging.rename(inbox / name)  # moved in whole, as a recorder's rename
        left, right = _speech("001.wav"), _speech("005.wav")
        call = np.zeros((len(left) + len(right) + 16000, 2), dtype=np.float32)
        call[: len(left), 0] = left
        call[len(left) + 16000 :, 1] = right
        (inbox / "calls").mkdir()
        (inbox / "calls" / ".svwatchd.yaml").write_text(
            "split_channels: true\nchannel_labels: [agent, customer]\n"
        )
        sf.write(work / "call.flac", call, 16000)
        (work / "call.flac").rename(inbox / "calls" / "call.flac")
        (inbox / "notes.flac").write_text("meeting notes, not audio\n")  # a bad file
        (inbox / "minutes.txt").write_text("not a recording\n")  # not taken: said so

        outputs = [out / f"{n}.txt" for n in made] + [out / "calls" / "call.flac.txt"]
        wait_for(lambda: all(p.exists() for p in outputs), 120, "transcripts", daemon.output)
        wait_for(lambda: (out / "notes.flac.error.json").exists(), 60, "error", daemon.output)
        assert normalise((out / "cards.mp3.txt").read_text()) == "ten of clubs"
        assert "eight of spades" in normalise((out / "cards.flac.txt").read_text())
        assert normalise((out / "cards.m4a.txt").read_text()) == "seven of clubs"
        record = json.loads((out / "cards.m4a.json").read_text())
        assert record["filetype"] == "M4A" and record["track"] == 0

        call_lines = (out / "calls" / "call.flac.txt").read_text().splitlines()
        assert call_lines[0].startswith("agent: ") and call_lines[-1].startswith("customer: ")
        assert "ten of clubs" in normalise(call_lines[0])
        call_json = json.loads((out / "calls" / "call.flac.json").read_text())
        assert {u["channel"] for u in call_json["utterances"]} == {0, 1}
        assert call_json["channels_decoded"] == 2

        error = json.loads((out / "notes.flac.error.json").read_text())
        assert str(inbox / "notes.flac") in json.dumps(error) and "text" in json.dumps(error)
        ignored = [e for e in daemon.events("file.ignored") if e["path"].endswith("minutes.txt")]
        assert len(ignored) == 1 and "extension" in ignored[0]["reason"]
        assert not (out / "minutes.txt.txt").exists()
        assert not daemon.events("daemon.step_failed")
    finally:
        daemon.stop()


def test_a_watch_takes_every_supported_format_unless_told_otherwise(tmp_path: Path) -> None:
    cfg = tmp_path / "svwatchd.yaml"
    cfg.write_text(
        f"server: {{url: http://127.0.0.1:9}}\nstate_dir: {tmp_path / 'state'}\n"
        f"watches:\n  - path: {tmp_path / 'in'}\n    output: {{dir: {tmp_path / 'out1'}}}\n"
        f"  - path: {tmp_path / 'only'}\n    output: {{dir: {tmp_path / 'out2'}}}\n"
        "    exts: [wav]\n"
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "only").mkdir()
    checked = subprocess.run(
        [sys.executable, "-m", "svwatchd.daemon._cli", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    for filetype in FILETYPES:
        assert filetype in checked.stdout
    assert ".mp3" in checked.stdout and ".m4a" in checked.stdout
    assert f"watch {tmp_path / 'only'} takes .wav\n" in checked.stdout


def test_selector_says_why_a_file_is_not_taken(tmp_path: Path) -> None:
    selector = FileSelector.create(AUDIO_EXTENSIONS, [r"/calls/"], [".*"])
    (tmp_path / "calls").mkdir()
    for name in ("calls/a.mp3", "calls/b.txt", "c.mp3", "calls/.d.mp3"):
        (tmp_path / name).write_bytes(b"x")
    found = dict(selector.walk_all(str(tmp_path)))
    assert found[str(tmp_path / "calls" / "a.mp3")] is None
    assert "extension" in (found[str(tmp_path / "calls" / "b.txt")] or "")
    assert "filter" in (found[str(tmp_path / "c.mp3")] or "")
    assert str(tmp_path / "calls" / ".d.mp3") not in found  # ignored: not even mentioned
    assert list(selector.walk(str(tmp_path))) == [str(tmp_path / "calls" / "a.mp3")]
    shutil.rmtree(tmp_path / "calls")
