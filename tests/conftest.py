"""Shared test helpers: where the real speech test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "speech"


def speech_file(name: str) -> Path:
    """Path of a file in ../shared/testdata/speech; skips the test when the folder is absent."""
    path = TESTDATA / name
    if not TESTDATA.is_dir():
        pytest.skip(f"test data folder {TESTDATA} is absent (it lives in ../shared/testdata)")
    return path


def reference(name: str) -> str:
    """The normalised reference transcript of a LibriVox clip (its ``.txt`` beside it)."""
    from tests.normalise import normalise

    return normalise(speech_file(name.replace(".wav", ".txt")).read_text())


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' svservers and engines assemble Whisper base (once per run)."""
    return tmp_path_factory.mktemp("models")
