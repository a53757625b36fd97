"""Languages: the bundled multilingual model (assembled, verified), routing by language, detection.

The multilingual model is Whisper base from the ``[multilingual]`` extra's
packages (installed by ``scripts/test``); the tests skip without them.
Foreign speech is spoken here by ``espeak-ng`` (a Debian package, installed
by ``scripts/test``): German and Spanish, which base recognises well from
espeak (its French it does not, so no test rests on French).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from svwatchd.client import Stream
from svwatchd.client.server import Server
from svwatchd.errors import ModelIntegrityError, ServerRefusedError
from svwatchd.model.enums import DecodeStatus
from svwatchd.server._engines import EngineConfig, load_engine
from svwatchd.server._engines.base import Ask, Heard
from svwatchd.server._engines.bundles import BASE, BASE_PARTS, assemble
from svwatchd.server._engines.model import sha256_file, verify_model
from tests.conftest import TESTDATA, speech_file
from tests.foreign import KEY_WORDS, both_models, needs_base, spoken, words
from tests.normalise import normalise
from tests.svserver import SvServer, decode_all

pytestmark = needs_base

ENGLISH = "sense_and_sensibility_01_austen_64kb-0930.wav"


def _sources() -> dict[str, list[Path]]:
    """The installed package files each assembled file is made of."""
    from svwatchd.server._engines.bundles import _locate

    return {name: [_locate(p) for p in parts] for name, parts in BASE_PARTS.items()}


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
def both(model_cache: Path) -> object:
    speech_file(ENGLISH)
    return load_engine(EngineConfig(models=("tiny.en", "base"), cache_dir=str(model_cache)))


@pytest.fixture(scope="module")
def english_only(model_cache: Path) -> object:
    """tiny.en alone, as svserver loads it by default: base only checks its doubtful clips."""
    speech_file(ENGLISH)
    return load_engine(EngineConfig(cache_dir=str(model_cache)))


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
    assert {u.language for u in de} == {"de"} and KEY_WORDS["de"] <= words(
        " ".join(u.text for u in de)
    )
    assert {u.language for u in es} == {"es"} and KEY_WORDS["es"] <= words(
        " ".join(u.text for u in es)
    )
    assert {u.language for u in en} == {"en"}
    assert normalise(" ".join(u.text for u in en)) == "he might even have been made amiable himself"
    assert quiet == []
    assert KEY_WORDS["es"] <= words(" ".join(u.text for u in tagged))
    assert both.info()["language_detections"] == 4  # the tagged clip was not detected


def _text(heard: Heard) -> str:
    return " ".join(u.text for u in heard.utterances)


@pytest.mark.slow
def test_an_english_only_model_flags_foreign_speech_and_does_as_told(
    english_only: object, tmp_path: Path
) -> None:
    from svwatchd.server._engines.router import ModelRouter

    assert isinstance(english_only, ModelRouter)
    assert english_only.info()["language_check"] == "on (base, loaded on first need)"
    german, spanish = (_load(spoken(tmp_path / f"{x}.wav", x)) for x in ("de", "es"))
    english = _load(TESTDATA / ENGLISH)
    brief = _load(spoken(tmp_path / "brief.wav", "de", "Ja, danke."))  # about 1 s of speech
    clips = [german, spanish, german, german, english, brief]
    hold, route = Ask(on_foreign="hold"), Ask(on_foreign="route")
    asks = [Ask("en"), Ask(), hold, route, hold, hold]
    de, es, held, unroutable, en, too_short = english_only.hear_many(clips, asks)
    # decode (the default): tiny.en's English is kept, flagged with what was heard
    assert de.foreign is not None and de.foreign[0] == "de" and de.foreign[1] >= 0.5
    assert de.utterances and de.language == "de" and de.held is None
    assert es.foreign is not None and es.foreign[0] == "es"
    # hold: nothing decoded is kept, and the reason says what was heard and why
    assert held.utterances == [] and held.foreign is not None
    assert held.held is not None and "speech in German (de, probability" in held.held
    assert "tiny.en" in held.held and "on_foreign: hold" in held.held
    # route, with no multilingual model to route to: held, saying so
    assert unroutable.utterances == [] and unroutable.held is not None
    assert "no multilingual model" in unroutable.held
    # English that tiny.en is sure of is not checked, not flagged, not held
    assert en.foreign is None and en.held is None
    assert normalise(_text(en)) == "he might even have been made amiable himself"
    # too little speech to tell its language by: not checked (see CHECK_SPEECH_S), kept
    assert too_short.foreign is None and too_short.held is None
    info = english_only.info()
    assert info["language_mismatches"] == 4
    assert info["language_checks"] in (4, 5)  # the sure English clip was not even looked at
    assert info["language_check"] == "on (base)"


@pytest.mark.slow
def test_foreign_speech_tagged_english_is_routed_to_the_multilingual_model(
    both: object, tmp_path: Path
) -> None:
    from svwatchd.server._engines.router import ModelRouter

    assert isinstance(both, ModelRouter)
    german = _load(spoken(tmp_path / "de.wav", "de"))
    routed, flagged = both.hear_many([german, german], [Ask("en", on_foreign="route"), Ask("en")])
    assert routed.foreign is not None and routed.foreign[0] == "de"
    assert KEY_WORDS["de"] <= words(_text(routed))  # decoded again by base, in German
    assert {u.language for u in routed.utterances} == {"de"}
    assert flagged.foreign is not None and not KEY_WORDS["de"] <= words(_text(flagged))


@pytest.mark.slow
def test_translation_writes_english_and_says_so(both: object, tmp_path: Path) -> None:
    from svwatchd.server._engines.router import ModelRouter

    assert isinstance(both, ModelRouter)
    german = _load(spoken(tmp_path / "de.wav", "de"))
    spanish = _load(spoken(tmp_path / "es.wav", "es"))
    de, es = both.hear_many([german, spanish], [Ask(task="translate"), Ask("es", task="translate")])
    assert de.task == es.task == "translate"
    assert de.language == "de" and es.language == "es"
    assert len({"morning", "weather", "park", "today"} & words(_text(de))) >= 2, _text(de)
    assert len({"beach", "friends", "tomorrow", "hot"} & words(_text(es))) >= 2, _text(es)
    assert not KEY_WORDS["de"] & words(_text(de))


# -- through svserver ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def multilingual(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[tuple[SvServer, Path]]:
    speech_file(ENGLISH)
    root = tmp_path_factory.mktemp("lang")
    audio = root / "audio"
    audio.mkdir()
    srv = both_models(root / "data", audio, model_cache)
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
    assert KEY_WORDS["de"] <= words(" ".join(u.text for u in de))
    assert KEY_WORDS["es"] <= words(" ".join(u.text for u in es))
    assert {u.language for u in en} == {"en"}
    assert stats[0]["task"] == "transcribe"


@pytest.mark.slow
def test_svserver_translates_when_asked_and_says_so(multilingual: tuple[SvServer, Path]) -> None:
    srv, audio = multilingual
    german = spoken(audio / "german-translated.wav", "de")
    stream = Stream(german, task="translate")
    with Server(srv.url) as server:
        decode_all(server, [stream])
        text = " ".join(u.text for u in stream.utterances())
    assert stream.isdone(), stream.error
    assert stream.stats()["task"] == "translate" and stream.stats()["language"] == "de"
    assert len({"morning", "weather", "park", "today"} & words(text)) >= 2, text


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


@pytest.mark.slow
def test_svserver_on_tiny_en_flags_holds_and_refuses_translation(
    model_cache: Path, tmp_path: Path
) -> None:
    """The default server (tiny.en alone): foreign speech is flagged in the stream's stats and
    held when the stream says so; translation, which tiny.en cannot do, is refused."""
    audio = tmp_path / "audio"
    audio.mkdir()
    srv = SvServer(
        tmp_path / "data",
        engine="whisper",
        args=["--allow-root", str(audio), "--model-cache", str(model_cache)],
        workers=1,
    ).start(timeout=300)
    try:
        german = spoken(audio / "german.wav", "de")
        spanish = spoken(audio / "spanish.wav", "es")
        shutil.copy(TESTDATA / ENGLISH, audio / "english.wav")
        flagged = Stream(german)
        held = Stream(german, on_foreign="hold")
        unroutable = Stream(spanish, on_foreign="route")
        english = Stream(audio / "english.wav", on_foreign="hold")
        with Server(srv.url) as server:
            assert server.sysinfo()["engine"]["language_check"].startswith("on")
            with pytest.raises(ServerRefusedError) as refused:
                server.decodestreams(Stream(german, task="translate"))
            decode_all(server, [flagged, held, unroutable, english])
            texts = {s.id: s.utterances() for s in (flagged, held)}
            engine = server.sysinfo()["engine"]  # the workers' counters, as of their last job
    finally:
        srv.stop()
    assert "task_unsupported" in str(refused.value.detail) and "tiny.en" in str(refused.value)
    assert engine["language_check"] == "on (base)" and engine["language_mismatches"] == 3
    assert flagged.isdone() and texts[flagged.id]
    stats = flagged.stats()
    assert stats["language_mismatch"] == "de" and stats["language_mismatch_probability"] > 0.5
    assert stats["language"] == "de" and stats["task"] == "transcribe"
    assert held.status is DecodeStatus.ERROR and texts[held.id] == []
    assert held.error is not None and str(german) in held.error and "German" in held.error
    assert "on_foreign: hold" in held.error and held.stats()["language_mismatch"] == "de"
    assert unroutable.status is DecodeStatus.ERROR and unroutable.error is not None
    assert "no multilingual model" in unroutable.error
    assert english.isdone() and english.stats()["language_mismatch"] is None
    log = srv.log.read_text()
    assert '"event": "language.mismatch"' in log and '"event": "decode.held"' in log


@pytest.mark.slow
def test_a_long_file_is_decoded_in_the_language_its_first_speech_was_heard_in(
    model_cache: Path, tmp_path: Path
) -> None:
    """Detection runs once, on the first piece with speech: the later pieces are decoded in
    that language, not detected again (a meeting's language does not change with a piece).
    Shown with a file whose German first minute is followed by Spanish: the Spanish pieces
    decoded after the first commit are asked in German."""
    audio = tmp_path / "audio"
    audio.mkdir()
    pause = np.zeros(16000, dtype=np.float32)
    parts: dict[str, list[np.ndarray]] = {}
    for language, seconds in (("de", 75), ("es", 50)):
        sentence = _load(spoken(tmp_path / f"{language}.wav", language))
        parts[language] = []
        while sum(len(p) for p in parts[language]) < seconds * 16000:
            parts[language] += [sentence, pause]
    sf.write(audio / "meeting.wav", np.concatenate(parts["de"] + parts["es"]), 16000)
    srv = both_models(tmp_path / "data", audio, model_cache, "--piece-seconds", "30", workers=1)
    try:
        stream = Stream(audio / "meeting.wav")
        with Server(srv.url) as server:
            decode_all(server, [stream])
            utts = stream.utterances()
    finally:
        srv.stop()
    assert stream.isdone(), stream.error
    assert stream.stats()["language"] == "de" and stream.stats()["language_probability"] > 0.5
    late = [u for u in utts if u.start >= 90.0]  # pieces submitted after the first commit
    assert late and {u.language for u in late} == {"de"}
    assert {u.language for u in utts} == {"de"}
