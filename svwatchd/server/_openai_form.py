"""The fields of an OpenAI ``POST /v1/audio/transcriptions`` form, checked as they arrive.

:class:`TranscriptionForm` takes each field as the multipart reader finds it
(so a wrong ``model`` is refused before a large file has arrived, when the
client sends the fields first, as the OpenAI SDK does) and :meth:`~TranscriptionForm.asked`
checks what needs the whole form: the ``model`` and ``file`` that are
required, ``timestamp_granularities[]`` only with ``verbose_json`` (the real
API's rule). Every refusal is a :class:`~svwatchd.server._multipart.FormError`
naming the field (OpenAI's ``param``).

What is carried into the stream: ``language`` (the ``language`` tag),
``prompt`` (the ``prompt`` tag: Whisper's initial prompt) and
``temperature`` (the ``temperature`` tag: the first temperature of Whisper's
fallback). ``model`` picks no model: svserver routes each clip among the
models it has by language, as for any stream, so ``whisper-1`` and every name
``GET /v1/models`` lists are accepted alike. Fields of the real API that
svserver cannot honour (``stream`` true, ``include``, ``chunking_strategy``,
the speaker references...) are refused by name, never ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias, TypeVar, get_args

from svwatchd.model.contract import LANGUAGE_AUTO, is_language
from svwatchd.model.languages import LANGUAGES
from svwatchd.server._multipart import FormError, FormFile

__all__ = [
    "DEFAULT_MODEL",
    "Granularity",
    "ResponseFormat",
    "Transcription",
    "TranscriptionForm",
]

DEFAULT_MODEL: Final = "whisper-1"
"""The model name OpenAI clients send by default; svserver's models answer to it."""

ResponseFormat: TypeAlias = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity: TypeAlias = Literal["word", "segment"]

_FORMATS: Final[tuple[ResponseFormat, ...]] = get_args(ResponseFormat)
_GRANULARITIES: Final[tuple[Granularity, ...]] = get_args(Granularity)
_Choice = TypeVar("_Choice", bound=str)
_UNSUPPORTED: Final = (
    "include",
    "include[]",
    "chunking_strategy",
    "known_speaker_names",
    "known_speaker_names[]",
    "known_speaker_references",
    "known_speaker_references[]",
    "keywords",
    "keywords[]",
    "languages",
    "languages[]",
)


@dataclass(frozen=True)
class Transcription:
    """What one request asks for, checked."""

    model: str
    file: FormFile
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    response_format: ResponseFormat = "json"
    granularities: frozenset[Granularity] = frozenset()

    @property
    def tags(self) -> dict[str, str | float]:
        """The stream's tags: where it came from, and what it carries to the engine."""
        tags: dict[str, str | float] = {"via": "openai"}
        if self.language is not None:
            tags["language"] = self.language
        if self.prompt:
            tags["prompt"] = self.prompt
        if self.temperature is not None:
            tags["temperature"] = self.temperature
        return tags


@dataclass
class TranscriptionForm:
    """The form's fields, each checked as it arrives (:meth:`take`)."""

    models: Sequence[str]
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    response_format: ResponseFormat = "json"
    granularities: set[Granularity] = field(default_factory=set)

    def take(self, name: str, value: str) -> None:
        """Check one field and keep it (the multipart reader's ``on_field``)."""
        if name == "model":
            self.model = self._model(value)
        elif name == "language":
            self.language = _language(value)
        elif name == "prompt":
            self.prompt = value
        elif name == "temperature":
            self.temperature = _temperature(value)
        elif name == "response_format":
            self.response_format = _one_of(name, value, _FORMATS)
        elif name in ("timestamp_granularities[]", "timestamp_granularities"):
            self.granularities.add(_one_of(name, value, _GRANULARITIES))
        elif name == "stream":
            if value.strip().lower() not in ("false", "0", ""):
                raise FormError(
                    "stream: svserver answers a transcription whole, not as server-sent "
                    "events (as for whisper-1); leave stream out or send false",
                    field="stream",
                    code="unsupported_value",
                )
        elif name in _UNSUPPORTED:
            raise FormError(
                f"{name}: svserver's Whisper models do not support this field; leave it out",
                field=name,
                code="unsupported_parameter",
            )
        else:
            raise FormError(
                f"{name}: not a field of /v1/audio/transcriptions; the fields are file, model, "
                "language, prompt, response_format, temperature, timestamp_granularities[]",
                field=name,
                code="unknown_parameter",
            )

    def asked(self, file: FormFile | None) -> Transcription:
        """The whole request, once every field arrived (``file``: the file part, if any)."""
        if self.model is None:
            raise FormError(
                "model: required; send whisper-1 or a name GET /v1/models lists",
                field="model",
                code="missing_required_parameter",
            )
        if file is None:
            raise FormError(
                "file: required; send the audio as the form's file part",
                field="file",
                code="missing_required_parameter",
            )
        if self.granularities and self.response_format != "verbose_json":
            raise FormError(
                "timestamp_granularities[]: only with response_format verbose_json, not "
                f"{self.response_format}",
                field="timestamp_granularities[]",
                code="invalid_value",
            )
        return Transcription(
            model=self.model,
            file=file,
            language=self.language,
            prompt=self.prompt,
            temperature=self.temperature,
            response_format=self.response_format,
            granularities=frozenset(self.granularities or {"segment"}),
        )

    def _model(self, value: str) -> str:
        if value == DEFAULT_MODEL or value in self.models:
            return value
        choices = ", ".join([DEFAULT_MODEL, *self.models])
        raise FormError(
            f"model: {value!r} is not a model of this server; choose one of {choices}",
            field="model",
            code="model_not_found",
        )


def _language(value: str) -> str:
    code = value.strip().lower()
    if code == LANGUAGE_AUTO or not is_language(code) or code not in LANGUAGES:
        raise FormError(
            f"language: {value!r} is not an ISO-639-1 language code Whisper knows "
            "(e.g. en, de, fr); leave it out to have the language detected",
            field="language",
            code="invalid_value",
        )
    return code


def _temperature(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise FormError(
            f"temperature: {value!r} is not a number between 0 and 1",
            field="temperature",
            code="invalid_value",
        )
    return number


def _one_of(name: str, value: str, choices: tuple[_Choice, ...]) -> _Choice:
    """``value`` as one of ``choices`` (the values of a Literal type), else a 400 naming them."""
    for known in choices:
        if value == known:
            return known
    raise FormError(
        f"{name}: {value!r} is not one of {', '.join(choices)}",
        field=name,
        code="invalid_value",
    )
