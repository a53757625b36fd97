"""Reading a YAML config file so that every problem is reported with its line and key.

`yaml.safe_load` gives plain data but forgets where each value was written,
and stops at the first problem. `YamlDoc` builds the same data from the node
tree (``yaml.SafeLoader`` semantics, merge keys included), keeping the line
and the source text of every dotted key (``watches[0].settle``), and offers
converters that record a :class:`~svwatchd.errors.ConfigError` at that line
and carry on, so a caller validates a whole file in one pass. `compose_file`
reads the file into the node tree. The daemon's config
(`svwatchd.daemon._config`) is built on it; what the keys mean is its business,
not this module's.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias, TypeVar

import yaml

from svwatchd.daemon._durations import parse_duration
from svwatchd.errors import ConfigError

__all__ = ["YamlDoc", "YamlMap", "abspath", "compose_file", "join_key", "yaml_problem"]

YamlMap: TypeAlias = dict[str, object]
_T = TypeVar("_T")


def abspath(text: str) -> Path:
    """``text`` as an absolute path: ``~`` expanded, relative to the working directory."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def join_key(key: str, name: str) -> str:
    """The dotted key of entry ``name`` under ``key`` (``name`` alone at the top level)."""
    return f"{key}.{name}" if key else name


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error's own words, without the source excerpt its str() adds."""
    if isinstance(exc, yaml.MarkedYAMLError):
        return ", ".join(str(p) for p in (exc.context, exc.problem) if p) or str(exc)
    return str(exc)


class YamlDoc:
    """The YAML as plain data, with the line and source text of every dotted key.

    `build` turns the node tree into data and notes, by dotted key
    (``watches[0].settle``), the 1-based line (``lines``) and the scalar's
    text as written (``raw``). The converters (`mapping`, `text`, `texts`,
    `boolean`, `integer`, `duration`, `positive`) take a value and its key.
    Checks record a :class:`ConfigError` in ``errors`` and return None instead
    of raising, so one pass finds every problem; a key keeps only its first
    problem.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[ConfigError] = []
        self.lines: dict[str, int] = {}
        self.raw: dict[str, str] = {}
        self._loader = yaml.SafeLoader("")

    def error(self, key: str, message: str) -> None:
        """Record ``message`` for ``key`` (at its line, else its nearest parent's) unless the
        key already has a problem; ``""`` is the whole file."""
        if any(e.key == (key or None) for e in self.errors):
            return
        probe = key
        while probe and probe not in self.lines:  # a missing key: its parent's line
            probe = re.sub(r"(^|\.)[^.\[]*$|\[\d+\]$", "", probe)
        line = self.lines.get(probe)
        self.errors.append(ConfigError(message, file=self.file, line=line, key=key or None))

    def build(self, node: yaml.Node, key: str) -> object:
        """Construct ``node`` as ``yaml.safe_load`` would, noting lines and texts by key."""
        self.lines.setdefault(key, node.start_mark.line + 1)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, f"{key}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for knode, _ in node.value:
                name = join_key(key, str(knode.value))
                if knode.tag != "tag:yaml.org,2002:merge" and knode.value in seen:
                    self.lines.setdefault(name, knode.start_mark.line + 1)
                    self.error(name, "duplicate key")
                seen.add(knode.value)
            try:
                self._loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
            except yaml.YAMLError as exc:
                self.error(key, f"cannot read this mapping: {yaml_problem(exc)}")
                return None
            out: YamlMap = {}
            for knode, vnode in node.value:
                name = str(knode.value)
                self.lines[join_key(key, name)] = knode.start_mark.line + 1
                out[name] = self.build(vnode, join_key(key, name))
            return out
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.error(key, f"cannot read this value: {yaml_problem(exc)}")
            return None
        if value is not None:
            self.raw[key] = str(node.value)
        return value

    def mapping(
        self, value: object, key: str, allowed: Sequence[str] | None, required: Sequence[str] = ()
    ) -> YamlMap | None:
        """``value`` as a mapping; unknown keys (typos) and missing required keys are errors."""
        if not isinstance(value, dict):
            what = f" with keys {', '.join(allowed)}" if allowed else ""
            self.error(key, f"expected a mapping{what}")
            return None
        for name in value:
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                valid = ", ".join(sorted(allowed))
                self.error(join_key(key, name), f"unknown key{hint}; valid keys: {valid}")
        for name in required:
            if name not in value:
                self.error(join_key(key, name), "is required")
        return {k: v for k, v in value.items() if allowed is None or k in allowed}

    def get(
        self,
        m: YamlMap,
        name: str,
        key: str,
        conv: Callable[[object, str], _T | None],
        default: _T,
        *,
        nullable: bool = False,
    ) -> _T:
        """``conv`` of entry ``name``: ``default`` if absent, in error, or null and ``nullable``."""
        if name not in m or (nullable and m[name] is None):
            return default
        result = conv(m[name], join_key(key, name))
        return default if result is None else result

    def text(self, value: object, key: str) -> str | None:
        """``value`` as text; a scalar YAML read as another type (``yes``, ``1.0``) as written."""
        if isinstance(value, str):
            return value
        if key in self.raw and not isinstance(value, dict | list):
            return self.raw[key]
        self.error(key, "expected a text value")
        return None

    def texts(self, value: object, key: str) -> list[tuple[str, str]]:
        """A list of (text, key); one text is a list of one, null an empty list."""
        if value is None or value == []:
            return []
        if isinstance(value, dict):
            self.error(key, "expected a list of text values")
            return []
        if not isinstance(value, list):
            return [(t, key)] if (t := self.text(value, key)) is not None else []
        items = [(self.text(v, f"{key}[{i}]"), f"{key}[{i}]") for i, v in enumerate(value)]
        return [(t, k) for t, k in items if t is not None]

    def boolean(self, value: object, key: str) -> bool | None:
        """``value`` if it is true or false."""
        if isinstance(value, bool):
            return value
        self.error(key, f"expected true or false, got {value!r}")
        return None

    def integer(self, value: object, key: str, low: int) -> int | None:
        """``value`` if it is a whole number (not a boolean) of at least ``low``."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            return value
        self.error(key, f"expected a whole number >= {low}, got {value!r}")
        return None

    def duration(self, value: object, key: str, *, positive: bool = False) -> float | None:
        """``value`` (``30s``, ``1h``, a number of seconds) in seconds; more than 0 if
        ``positive``."""
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.error(key, str(exc))
            return None
        if positive and seconds <= 0:
            self.error(key, f"{value!r} is too short: it must be more than 0")
            return None
        return seconds

    def positive(self, value: object, key: str) -> float | None:
        """A `duration` of more than 0 seconds."""
        return self.duration(value, key, positive=True)


def compose_file(file: str) -> yaml.Node | None:
    """The YAML node tree of ``file`` (None when it holds no document).

    Raises :class:`ConfigError` (with the line, for invalid YAML) when the file
    cannot be read or parsed.
    """
    try:
        text = Path(file).read_text(encoding="utf-8")
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read the config file: {exc}", file=file) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {yaml_problem(exc)}", file=file, line=line) from exc
