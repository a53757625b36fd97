"""Languages end to end: files in German and Spanish dropped into watches, a real svserver
with tiny.en and base (the ``[multilingual]`` extra), the daemon's outputs and journal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TESTDATA, speech_file
from tests.daemon.daemon_harness import DaemonProc, inbox_watch, wait_for, write_config
from tests.foreign import KEY_WORDS, both_models, needs_base, spoken, words
from tests.svserver import SvServer

pytestmark = [needs_base, pytest.mark.slow]

ENGLISH = "sense_and_sensibility_01_austen_64kb-0930.wav"


@pytest.fixture(scope="module")
def two_models(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[tuple[SvServer, Path]]:
    speech_file(ENGLISH)
    base = tmp_path_factory.mktemp("daemon-languages")
    (base / "work").mkdir()
    srv = both_models(base / "svdata", base / "work", model_cache, workers=1)
    yield srv, base / "work"
    srv.stop()


def test_the_language_heard_is_in_the_outputs_and_foreign_speech_is_held_when_asked(
    two_models: tuple[SvServer, Path],
) -> None:
    srv, work = two_models
    inbox, out = work / "inbox", work / "out"
    english_only, held_out = work / "english", work / "english-out"
    routing, routed_out = work / "routing", work / "routing-out"
    for folder in (inbox, english_only, routing):
        folder.mkdir()
    watches = [
        inbox_watch(work, output={"dir": str(out), "formats": ["txt", "json"]}),
        {
            "path": str(english_only),
            "settle": "300ms",
            "output": {"dir": str(held_out), "formats": ["txt", "json"]},
            "metadata": {"language": "en", "on_foreign": "hold"},
        },
        {
            "path": str(routing),
            "settle": "300ms",
            "output": {"dir": str(routed_out), "formats": ["txt", "json"]},
            "metadata": {"language": "en", "on_foreign": "route"},
        },
    ]
    config = write_config(work, srv, watches)
    daemon = DaemonProc(config).start()
    try:
        for language in ("de", "es"):
            made = spoken(work / f"{language}.wav", language)
            made.rename(inbox / made.name)
        shutil.copy(TESTDATA / ENGLISH, work / "english.wav")
        (work / "english.wav").rename(english_only / "english.wav")
        spoken(work / "german.wav", "de").rename(english_only / "german.wav")
        spoken(work / "spanish.wav", "es").rename(routing / "spanish.wav")

        outputs = [
            *(out / "de.wav.json", out / "es.wav.json", held_out / "english.wav.json"),
            routed_out / "spanish.wav.json",
        ]
        wait_for(lambda: all(p.exists() for p in outputs), 300, "transcripts", daemon.output)
        wait_for(lambda: daemon.events("file.held"), 120, "the German file held", daemon.output)
        for language in ("de", "es"):
            record = json.loads((out / f"{language}.wav.json").read_text())
            assert record["language"] == language and record["language_probability"] > 0.5
            assert record["task"] == "transcribe"
            assert {u["language"] for u in record["utterances"]} == {language}
            text = " ".join(u["text"] for u in record["utterances"])
            assert KEY_WORDS[language] <= words(text)
        english = json.loads((held_out / "english.wav.json").read_text())
        assert "language_mismatch" not in english
        (held,) = daemon.events("file.held")
        assert held["path"] == str(english_only / "german.wav")
        assert "German" in held["reason"] and "on_foreign: hold" in held["reason"]
        # tagged English, heard Spanish, routed to base: decoded in Spanish, the mismatch kept
        routed = json.loads((routed_out / "spanish.wav.json").read_text())
        assert routed["language_mismatch"] == "es" and routed["language"] == "es"
        text = " ".join(u["text"] for u in routed["utterances"])
        assert KEY_WORDS["es"] <= words(text)
        mismatches = {e["path"]: e for e in daemon.events("language.mismatch")}
        assert mismatches[str(english_only / "german.wav")]["on_foreign"] == "hold"
        assert mismatches[str(routing / "spanish.wav")]["language"] == "es"
        assert not (held_out / "german.wav.txt").exists()
        assert not (held_out / "german.wav.error.json").exists()  # held, not failed
        status = subprocess.run(
            [sys.executable, "-m", "svwatchd.daemon._cli", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            check=True,
        )
        (entry,) = json.loads(status.stdout)["held"]
        assert entry["path"] == str(english_only / "german.wav") and "German" in entry["reason"]

        # the operator decides: route that folder's foreign speech to base. The held file is
        # released, sent again under its id with the new metadata, and decoded in German
        (english_only / ".svwatchd.yaml").write_text("on_foreign: route\n")
        german = held_out / "german.wav.json"
        wait_for(german.exists, 120, "the released file's transcript", daemon.output)
        record = json.loads(german.read_text())
        assert record["language"] == "de" and record["language_mismatch"] == "de"
        assert KEY_WORDS["de"] <= words(" ".join(u["text"] for u in record["utterances"]))
        assert daemon.events("file.released") and not daemon.events("stream.error")
    finally:
        daemon.stop()
