"""What a source's outputs are called: the watch's ``output.name`` template.

A template is a plain file name with fields: ``{stem}`` (the source's name
without its last extension), ``{name}`` (the full name), ``{ext}`` (the last
extension, without the dot), ``{lang}``, ``{channel}`` and ``{fmt}`` (``txt``,
``json``, ``srt``, ``vtt``; ``error.json`` for the file saying why a source
failed). The default, ``{name}.{fmt}``, is the daemon's historic naming
(``call.wav`` -> ``call.wav.txt``); ``{stem}.{lang}.{fmt}`` gives
``movie.en.srt`` beside ``movie.mkv``, the name Jellyfin and Plex pick up.

``{lang}`` is the stream's ``language`` tag when it names a language, else
the language heard (the server's stats, or the one language its engine
decodes: the collector's), else `UNKNOWN_LANGUAGE` (``und``, ISO 639-2's
"undetermined"); a translation (``task: translate``) is English.
``{channel}`` is a channel's speaker label (``agent``, ``ch1``) when channels
are decoded apart (``split_channels``), which makes one output per channel and
format; otherwise `MIX` (``mix``): one output of the mixed audio.

`OutputName.pattern` recognises every name the template can give, whatever
its fields, so a watch whose outputs land beside its sources (``output.dir:
same``) never takes them (or their temporary files) for new input.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

__all__ = [
    "DEFAULT_NAME",
    "ERROR_FORMAT",
    "FIELDS",
    "MIX",
    "UNKNOWN_LANGUAGE",
    "OutputName",
    "language_for_name",
]

DEFAULT_NAME = "{name}.{fmt}"
ERROR_FORMAT = "error.json"  # {fmt} of the file that says why a source failed
UNKNOWN_LANGUAGE = "und"
MIX = "mix"
FIELDS = ("stem", "name", "ext", "lang", "channel", "fmt")
_TEMP = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # atomic_write's temporary names
_LANG = re.compile(r"^[a-z]{2,3}$")


def language_for_name(metadata: Mapping[str, object] | None, heard: object = None) -> str | None:
    """The language ``{lang}`` stands for: the tag, a translation's English, the language
    heard; None when none is known (the name then says `UNKNOWN_LANGUAGE`)."""
    meta = metadata or {}
    if meta.get("task") == "translate":
        return "en"
    tag = meta.get("language")
    if isinstance(tag, str) and _LANG.match(tag):
        return tag
    return heard if isinstance(heard, str) and _LANG.match(heard) else None


@dataclass(frozen=True)
class OutputName:
    """One validated ``output.name`` template (see the module's docstring)."""

    template: str = DEFAULT_NAME
    fields: frozenset[str] = field(default=frozenset({"name", "fmt"}), compare=False)

    @classmethod
    def parse(cls, template: str) -> OutputName:
        """The template, checked: known fields only, ``{fmt}`` present, one plain file name.

        Raises ``ValueError`` with a sentence naming the problem.
        """
        found: set[str] = set()
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"{template!r} is not a template: {exc}") from None
        for _, name, spec, conv in parsed:
            if name is None:
                continue
            if name not in FIELDS:
                raise ValueError(
                    f"{template!r} has an unknown field {{{name}}}; "
                    f"fields: {', '.join('{' + f + '}' for f in FIELDS)}"
                )
            if spec or conv:
                raise ValueError(f"{template!r}: write {{{name}}} without a format or conversion")
            found.add(name)
        if "fmt" not in found:
            raise ValueError(f"{template!r} has no {{fmt}}: each format needs a name of its own")
        probe = cls(template, frozenset(found)).render("x.wav", "txt", "en", MIX)
        if "/" in template or probe.startswith(".") or probe in ("", ".", ".."):
            raise ValueError(
                f"{template!r} must give a plain file name (no '/', not starting with '.')"
            )
        return cls(template, frozenset(found))

    @property
    def per_channel(self) -> bool:
        """True when the name has ``{channel}``: channels decoded apart get a file each."""
        return "channel" in self.fields

    def render(self, source: str, fmt: str, lang: str | None, channel: str = MIX) -> str:
        """The output name of ``source`` (a file name or path) in format ``fmt``."""
        p = PurePath(source)
        return self.template.format(
            stem=p.stem,
            name=p.name,
            ext=p.suffix.removeprefix("."),
            lang=lang or UNKNOWN_LANGUAGE,
            channel=channel,
            fmt=fmt,
        )

    def pattern(
        self, formats: tuple[str, ...], source: str | None = None, lang: str | None = None
    ) -> re.Pattern[str]:
        """A regular expression matching the names this template gives in ``formats``:
        of any source, or of ``source`` when given; of any language
        unless ``lang`` is given; of any channel."""
        return _pattern(self.template, formats, source, lang)

    def is_output(self, name: str, formats: tuple[str, ...]) -> bool:
        """True when the file name ``name`` is one this template writes (or its temporary)."""
        temp = _TEMP.match(name)
        pattern = self.pattern((*formats, ERROR_FORMAT))
        return bool(pattern.fullmatch(name) or (temp and pattern.fullmatch(temp["name"])))


@functools.lru_cache(maxsize=256)
def _pattern(
    template: str, formats: tuple[str, ...], source: str | None, lang: str | None
) -> re.Pattern[str]:
    any_text = "[^/]+"
    values: dict[str, str] = {
        "stem": any_text,
        "name": any_text,
        "ext": "[^/.]*",
        "lang": "[a-z]{2,3}" if lang is None else re.escape(lang),
        "channel": any_text,
        "fmt": "(?:" + "|".join(re.escape(f) for f in formats) + ")",
    }
    if source is not None:
        p = PurePath(source)
        values |= {
            "stem": re.escape(p.stem),
            "name": re.escape(p.name),
            "ext": re.escape(p.suffix.removeprefix(".")),
        }
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(values[name])
    return re.compile("".join(parts))
