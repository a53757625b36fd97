"""Several Whisper models in one worker, and the rule that picks one for each clip.

svserver may load an English-only model (tiny.en: fast) and a multilingual
one (base: slower, hears 99 languages) side by side, every worker holding
both, so any worker takes any clip. The rule, per clip:

* tagged ``en``: the English-only model when there is one, else the
  multilingual one;
* tagged another language: the multilingual model (svserver refuses such a
  tag at submission when it has none);
* not tagged: the multilingual model detects the language on the clip's
  first 30 s of speech; English goes to the English-only model, any other
  language stays with the multilingual one, decoded in the language found.
  Without a multilingual model, the English-only one decodes it.

Clips routed to one model are decoded together (so they still pack).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from svwatchd.model.speechdata import Utterance
from svwatchd.server._engines.base import SAMPLE_RATE, Audio, Heard, HearsMany, as_audio
from svwatchd.server._engines.whisper import WhisperEngine

__all__ = ["ModelRouter"]


class ModelRouter(HearsMany):
    """An engine over several loaded Whisper models, routing each clip by its language."""

    name = "whisper"
    sample_rate = SAMPLE_RATE

    def __init__(self, engines: Sequence[WhisperEngine]) -> None:
        if not engines:
            raise ValueError("a router needs at least one model")
        self._engines = list(engines)
        self._english = next((e for e in self._engines if not e.multilingual), None)
        self._multi = next((e for e in self._engines if e.multilingual), None)
        self.detections = 0

    def info(self) -> dict[str, object]:
        """The first model's facts, every model's (``models``), and the routing counters."""
        infos = [e.info() for e in self._engines]
        models = [m for i in infos if isinstance(i["models"], list) for m in i["models"]]
        merged = dict(infos[0])
        merged.update(
            model="+".join(str(i["model"]) for i in infos),
            multilingual=self._multi is not None,
            language="detect" if self._multi is not None else "en",
            models=models,
            language_detections=self.detections,
        )
        for counter in ("packed_clips", "fallback_clips", "dropped_segments"):
            merged[counter] = sum(int(str(i[counter])) for i in infos)
        return merged

    def transcribe(self, audio: Audio) -> list[Utterance]:
        """Decode one clip on the model its language calls for."""
        return self.transcribe_many([audio])[0]

    def hear_many(
        self, clips: Sequence[Audio], languages: Sequence[str | None] | None = None
    ) -> list[Heard]:
        """Route each clip to its model (module docstring), decode each model's clips together."""
        audios = [as_audio(c, what=f"clip {i}") for i, c in enumerate(clips)]
        tags = list(languages) if languages is not None else [None] * len(audios)
        routed: dict[int, list[int]] = {}
        langs: list[str | None] = []
        detected: dict[int, float] = {}  # clip -> the detection's probability
        for i, (audio, tag) in enumerate(zip(audios, tags, strict=True)):
            engine, lang, probability = self._route(audio, tag)
            routed.setdefault(id(engine), []).append(i)
            langs.append(lang)
            if probability is not None:
                detected[i] = probability
        results: list[Heard] = [Heard([]) for _ in audios]
        for engine in self._engines:
            picked = routed.get(id(engine), [])
            if not picked:
                continue
            decoded = engine.hear_many([audios[i] for i in picked], [langs[i] for i in picked])
            for i, heard in zip(picked, decoded, strict=True):
                if i in detected:  # heard by the detection, even if an English model decoded it
                    utts = [replace(u, language=langs[i]) for u in heard.utterances]
                    heard = Heard(utts, langs[i], detected[i])
                results[i] = heard
        return results

    def _route(
        self, audio: Audio, tag: str | None
    ) -> tuple[WhisperEngine, str | None, float | None]:
        """The model for the clip, the language to decode it in, a detection's probability."""
        if tag == "en":
            return self._english or self._engines[0], "en", None
        if tag is not None:
            return self._multi or self._engines[0], tag, None
        if self._multi is None or self._english is None:
            return self._multi or self._engines[0], None, None  # it detects (or is English)
        self.detections += 1
        heard = self._multi.detect_language(audio)
        if heard is None:
            return self._english, None, None  # no speech: nothing will be decoded anyway
        language, probability = heard
        return (self._english if language == "en" else self._multi), language, probability
