"""Several Whisper models in one worker, the rule that picks one for each clip, and the
check that keeps an English-only model from writing English over foreign speech.

svserver may load an English-only model (tiny.en: fast) and a multilingual
one (base: slower, hears 99 languages) side by side, every worker holding
both, so any worker takes any clip. The rule, per clip:

* ``task: translate``: the multilingual model (svserver refuses the task
  at submission when it has none);
* tagged ``en``: the English-only model when there is one, else the
  multilingual one;
* tagged another language: the multilingual model (svserver refuses such a
  tag at submission when it has none);
* not tagged: the multilingual model detects the language on the clip's
  first 30 s of speech; English goes to the English-only model, any other
  language stays with the multilingual one, decoded in the language found.
  Without a multilingual model, the English-only one decodes it.

Clips routed to one model are decoded together (so they still pack).

**The foreign-speech check.** An English-only model given German writes
fluent English that was never said. So a clip the English-only model
decoded, and whose words it was unsure of (mean word probability below
:data:`CHECK_BELOW`, the words at its edges aside), is checked by the
multilingual model on its first 30 s of speech
(:meth:`WhisperEngine.foreign_language`: a cheap first look, then Whisper's
full detection only when English is not clear at once).
Speech found not to be English is a mismatch, handled as the clip's
``on_foreign`` says: ``decode`` keeps the English-only text, flagged;
``hold`` keeps nothing and says why; ``route`` decodes the clip again on
the multilingual model in the language found (held when there is none).
Clips the English-only model was sure of are not checked, so an English
backlog pays for detection only on its doubtful clips (measured: tiny.en's
words over espeak-ng German and Spanish average 0.14-0.66, over the shared
English read speech 0.83-0.97; short card clips 0.39-0.88). Nor are clips
with less than :data:`~svwatchd.server._engines.langid.CHECK_SPEECH_S` of
speech (the VAD's; not the English-only model's words, which for foreign
speech are often a few invented ones): on so little, Whisper's
detection is a guess (base's full detection named Korean for 1.1 s of
espeak German and English for 1.2 s of Spanish) and costs 0.7 s a clip on
one core, three times what tiny.en takes to decode such a clip. Without a
multilingual model loaded, the detector is ``base``, assembled and loaded on
first need, when the ``[multilingual]`` extra is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from svwatchd.model.languages import language_name
from svwatchd.model.speechdata import Utterance
from svwatchd.server._engines.base import (
    COUNTERS,
    SAMPLE_RATE,
    Ask,
    Audio,
    Heard,
    HearsMany,
    as_audio,
)
from svwatchd.server._engines.whisper import WhisperEngine

__all__ = ["CHECK_BELOW", "EDGE_WORDS_KEPT", "ModelRouter"]

log = logging.getLogger(__name__)

CHECK_BELOW = 0.8
"""An English-only model's clip whose mean word probability is below this is checked."""

EDGE_WORDS_KEPT = 4
"""Up to this many words, a clip's mean counts them all; above, not its first and last.
Measured (tiny.en): on 99 clips of 4-6 s cut back to back from the shared read speech,
16 were doubtful with every word counted and 9 without the edge words (a check costs
about 0.1 s of CPU on English, a quarter of decoding such a clip); on espeak-ng German,
Spanish, French, Italian and Dutch (2-5 s) the mean was 0.40-0.56 either way."""


_Plan = list[tuple[WhisperEngine, Ask]]


class ModelRouter(HearsMany):
    """An engine over loaded Whisper models, routing each clip by its language and checking
    an English-only model's doubtful clips for foreign speech (module docstring).

    ``detector`` builds the multilingual model the check uses when none is loaded; it is
    called once, on the first clip that needs it.
    """

    name = "whisper"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        engines: Sequence[WhisperEngine],
        detector: Callable[[], WhisperEngine] | None = None,
    ) -> None:
        if not engines:
            raise ValueError("a router needs at least one model")
        self._engines = list(engines)
        self._english = next((e for e in self._engines if not e.multilingual), None)
        self._multi = next((e for e in self._engines if e.multilingual), None)
        self._load_detector = detector if self._multi is None else None
        self._detector: WhisperEngine | None = self._multi
        self._detector_failed: str | None = None
        self.detections = 0
        self.checks = 0
        self.mismatches = 0

    @property
    def checking(self) -> bool:
        """True when the English-only model's clips are checked for foreign speech."""
        return (
            self._english is not None
            and self._detector_failed is None
            and (self._detector is not None or self._load_detector is not None)
        )

    def info(self) -> dict[str, object]:
        """The first model's facts, every model's (``models``), routing and check counters."""
        infos = [e.info() for e in self._engines]
        models = [m for i in infos if isinstance(i["models"], list) for m in i["models"]]
        merged = dict(infos[0])
        merged.update(
            model="+".join(str(i["model"]) for i in infos),
            multilingual=self._multi is not None,
            language="detect" if self._multi is not None else "en",
            models=models,
            language_detections=self.detections,
            language_check=self._check_state(),
            language_checks=self.checks,
            language_mismatches=self.mismatches,
        )
        for counter in COUNTERS:  # the models' own (the router's are set above)
            if counter in infos[0]:
                merged[counter] = sum(int(str(i[counter])) for i in infos)
        return merged

    def _check_state(self) -> str:
        if self._english is None:
            return "not needed"  # every model hears every language
        if self._detector_failed is not None:
            return f"failed: {self._detector_failed}"
        if self._detector is not None:
            return f"on ({self._detector.info()['model']})"
        return "on (base, loaded on first need)" if self._load_detector else "off"

    def transcribe(self, audio: Audio) -> list[Utterance]:
        """Decode one clip on the model its language calls for."""
        return self.transcribe_many([audio])[0]

    def hear_many(self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None) -> list[Heard]:
        """Route each clip to its model, decode each model's clips together, then check the
        English-only model's doubtful clips for foreign speech (module docstring)."""
        audios = [as_audio(c, what=f"clip {i}") for i, c in enumerate(clips)]
        wanted = list(asks) if asks is not None else [Ask()] * len(audios)
        plan: _Plan = []
        detected: dict[int, tuple[str, float]] = {}
        for i, (audio, ask) in enumerate(zip(audios, wanted, strict=True)):
            engine, language, found = self._route(audio, ask)
            plan.append((engine, replace(ask, language=language)))
            if found is not None:
                detected[i] = found
        results = self._decode(audios, plan, range(len(audios)))
        for i, (language, probability) in detected.items():
            # heard by the detection, even if the English-only model decoded it
            results[i] = _heard_in(results[i], language, probability)
        if self.checking:
            self._check(audios, wanted, plan, results, skip=detected)
        return results

    def _decode(self, audios: Sequence[Audio], plan: _Plan, only: Iterable[int]) -> list[Heard]:
        """Decode the clips ``only`` names as ``plan`` says, each model's together."""
        results = [Heard([]) for _ in audios]
        chosen = list(only)
        for engine in self._engines:
            picked = [i for i in chosen if plan[i][0] is engine]
            if picked:
                decoded = engine.hear_many(
                    [audios[i] for i in picked], [plan[i][1] for i in picked]
                )
                for i, heard in zip(picked, decoded, strict=True):
                    results[i] = heard
        return results

    def _route(
        self, audio: Audio, ask: Ask
    ) -> tuple[WhisperEngine, str | None, tuple[str, float] | None]:
        """The model for the clip, the language to decode it in, a detection (language,
        probability) when one ran."""
        first = self._engines[0]
        tag = ask.language
        if ask.task == "translate":
            return self._multi or first, tag, None
        if tag == "en":
            return self._english or first, "en", None
        if tag is not None:
            return self._multi or first, tag, None
        if self._multi is None or self._english is None:
            return self._multi or first, None, None  # it detects (or is English)
        found = self._detect(audio)
        if found is None:
            return self._english, None, None  # no speech: nothing will be decoded anyway
        return (self._english if found[0] == "en" else self._multi), found[0], found

    def _check(
        self,
        audios: Sequence[Audio],
        wanted: Sequence[Ask],
        plan: _Plan,
        results: list[Heard],
        skip: Iterable[int],
    ) -> None:
        """The foreign-speech check of the English-only model's doubtful clips."""
        skipped = set(skip)
        rerun: dict[int, tuple[str, float]] = {}
        for i, heard in enumerate(results):
            engine = plan[i][0]
            if i in skipped or engine.multilingual or not _doubtful(heard):
                continue
            self.checks += 1
            detector = self._loaded_detector()
            found = detector.foreign_language(audios[i]) if detector is not None else None
            if found is None:
                continue
            self.mismatches += 1
            language, probability = found
            choice = wanted[i].on_foreign
            if choice == "route" and self._multi is not None:
                plan[i] = (self._multi, replace(wanted[i], language=language))
                rerun[i] = found
            elif choice == "decode":
                results[i] = replace(_heard_in(heard, language, probability), foreign=found)
            else:
                why = (
                    "on_foreign: hold"
                    if choice == "hold"
                    else "no multilingual model to route it to"
                )
                results[i] = Heard(
                    [],
                    language,
                    probability,
                    heard.task,
                    found,
                    held=(
                        f"speech in {(language_name(language) or language).title()} ({language}, "
                        f"probability {probability:.2f}) under the English-only model "
                        f"{engine.info()['model']}; {why}"
                    ),
                )
        if rerun:
            redone = self._decode(audios, plan, rerun)
            for i, (language, probability) in rerun.items():
                results[i] = replace(
                    redone[i], language_probability=probability, foreign=(language, probability)
                )

    def _detect(self, audio: Audio) -> tuple[str, float] | None:
        """The multilingual model's detection on the clip's first 30 s of speech."""
        detector = self._loaded_detector()
        if detector is None:
            return None
        self.detections += 1
        return detector.detect_language(audio)

    def _loaded_detector(self) -> WhisperEngine | None:
        """The multilingual model, loaded now if it is the check's and not loaded yet."""
        waiting = self._detector is None and self._detector_failed is None
        if waiting and self._load_detector is not None:
            try:
                self._detector = self._load_detector()
            except Exception as exc:  # decoding goes on unchecked, and says so
                self._detector_failed = str(exc)
                log.error("the foreign-speech check is off: its model did not load: %s", exc)
        return self._detector


def _doubtful(heard: Heard) -> bool:
    """True when the clip has words and the model was unsure of them on average, its first
    and last word left out when it has more than :data:`EDGE_WORDS_KEPT` (a clip cut from
    a longer recording begins and ends mid-word, and a cut word's low probability says
    nothing of the language)."""
    words = [w.confidence for u in heard.utterances for w in u.words]
    if len(words) > EDGE_WORDS_KEPT:
        words = words[1:-1]
    return bool(words) and sum(words) / len(words) < CHECK_BELOW


def _heard_in(heard: Heard, language: str, probability: float) -> Heard:
    """``heard`` with the language a detection found, on the clip and its utterances."""
    utts = [replace(u, language=language) for u in heard.utterances]
    return replace(heard, utterances=utts, language=language, language_probability=probability)
