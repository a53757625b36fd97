"""One watch of the daemon's config: its dataclass and the parsing of its section.

See :mod:`svwatchd.daemon._config` for the rules every section follows (one
pass, every problem with its line and key; relative paths against the
working directory). A watch's file selection is the same ``FileSelector`` as
``createdirstreams``; its metadata is validated exactly as a Stream's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal, NewType, TypeAlias

from svwatchd.daemon._notifyconfig import NotifyConfig, parse_notify
from svwatchd.daemon._outputnames import OutputName
from svwatchd.daemon._yamldoc import YamlDoc, YamlMap, abspath, join_key
from svwatchd.errors import InvalidStreamError
from svwatchd.model.contract import AUDIO_EXTENSIONS, OUTPUT_FORMATS
from svwatchd.model.metadata import split_metadata
from svwatchd.model.select import FileSelector

__all__ = [
    "DEFAULT_IGNORE",
    "After",
    "WatchConfig",
    "WatchId",
    "abspath",
    "parse_watch",
]

DEFAULT_IGNORE = (".*", "*.part", "*.tmp", "*~")
After: TypeAlias = Literal["keep", "delete"] | tuple[Literal["move"], Path]

WatchId = NewType("WatchId", str)
"""What identifies a watch everywhere (watcher, settler, ingest, journal, metadata, metrics):
its absolute root path as text. Never its place in the config's list, which a reload may
reorder; watches may not repeat or nest, so a path lies in at most one watch."""


def _default_selector() -> FileSelector:
    return FileSelector.create(None, None, DEFAULT_IGNORE)


@dataclass(frozen=True)
class WatchConfig:
    """One watched folder and what becomes of its files; every path is absolute."""

    path: Path
    output_dir: Path
    recursive: bool = True
    selector: FileSelector = field(default_factory=_default_selector)
    settle: float = 2.0
    poll: bool = False
    metadata: dict[str, object] = field(default_factory=dict, hash=False)
    metadata_file: str = ".svwatchd.yaml"
    tags_from_path: re.Pattern[str] | None = None
    formats: tuple[str, ...] = OUTPUT_FORMATS
    after: After = "keep"
    excluded_dirs: tuple[Path, ...] = ()
    output_same: bool = False  # output.dir: same -- outputs beside their sources
    output_name: OutputName = field(default_factory=OutputName)
    output_mode: int | None = None  # None: as the umask allows (a plain write's mode)
    skip_if_exists: bool = False
    notify: NotifyConfig | None = None  # None: the config's global notify section

    @property
    def id(self) -> WatchId:
        """This watch's identity: its root path (see `WatchId`)."""
        return WatchId(str(self.path))

    def contains(self, path: str) -> bool:
        """True when ``path`` (absolute) is a file this watch may record: below its root,
        not its metadata file, not inside an excluded folder (outputs inside the watch)."""
        if not path.startswith(self.id.rstrip("/") + "/"):
            return False
        p = Path(path)
        if p.name == self.metadata_file or self.is_own_output(p.name):
            return False
        return not any(p == x or x in p.parents for x in self.excluded_dirs)

    def is_own_output(self, name: str) -> bool:
        """True when the file name ``name`` beside a source is one of this watch's outputs
        (``output.dir: same``): the watch never takes what it writes for new input."""
        return self.output_same and self.output_name.is_output(name, self.formats)


_WATCH_KEYS = (
    "path", "recursive", "exts", "filters", "ignore", "settle", "poll", "metadata",
    "metadata_file", "tags_from_path", "output", "after", "skip_if_exists", "notify",
)  # fmt: skip


def _selector(d: YamlDoc, m: YamlMap, key: str) -> FileSelector:
    """The watch's FileSelector; each ext and filter is tried alone to place its error."""
    good: dict[str, list[str]] = {"exts": [], "filters": []}
    for name, items in good.items():
        for text, k in d.texts(m.get(name), join_key(key, name)):
            try:
                FileSelector.create(**{name: [text]})
                items.append(text)
            except ValueError as exc:
                d.error(k, str(exc))
    ignore = d.texts(m["ignore"], join_key(key, "ignore")) if "ignore" in m else None
    globs = DEFAULT_IGNORE if ignore is None else [t for t, _ in ignore]
    exts = good["exts"] if "exts" in m else list(AUDIO_EXTENSIONS)  # exts: [] takes every file
    return FileSelector.create(exts or None, good["filters"], globs)


def _metadata(d: YamlDoc, value: object, key: str) -> YamlMap:
    """The watch's metadata as written, each field checked by ``split_metadata`` as Stream does."""
    out: YamlMap = {}
    fields = d.mapping(value, key, None) if value is not None else {}
    for name, field_value in (fields or {}).items():
        k = join_key(key, name)
        if isinstance(field_value, date):  # YAML reads 2026-11-24 as a date: keep the text
            field_value = d.raw[k]
        try:
            split_metadata("metadata", {name: field_value})
            out[name] = field_value
        except InvalidStreamError as exc:
            d.error(k, str(exc).removeprefix("Stream metadata: "))
    return out


def _tags_pattern(d: YamlDoc, value: object, key: str) -> re.Pattern[str] | None:
    if value is None or (text := d.text(value, key)) is None:
        return None
    try:
        pattern = re.compile(text)
    except re.error as exc:
        d.error(key, f"{text!r} is not a valid regular expression: {exc}")
        return None
    if not pattern.groupindex:
        d.error(key, f"{text!r} has no named group; write (?P<name>...) for each tag")
        return None
    return pattern


def _formats(d: YamlDoc, value: object, key: str) -> tuple[str, ...] | None:
    formats: list[str] = []
    for fmt, k in d.texts(value, key):
        if fmt not in OUTPUT_FORMATS:
            d.error(k, f"{fmt!r} is not an output format: {', '.join(OUTPUT_FORMATS)}")
        elif fmt not in formats:
            formats.append(fmt)
    if value is None or value == []:
        d.error(key, f"name one or more of {', '.join(OUTPUT_FORMATS)}")
    return tuple(formats) or None


def _after(d: YamlDoc, value: object, key: str) -> After | None:
    text = d.text(value, key)
    if text in ("keep", "delete"):
        return "keep" if text == "keep" else "delete"
    if text is not None and text.startswith("move:") and text[5:].strip():
        return ("move", abspath(text[5:].strip()))
    if text is not None:
        d.error(key, f"{text!r} is not an action: keep, delete or move:DIR")
    return None


_OUTPUT_KEYS = ("dir", "formats", "name", "mode")


def _name(d: YamlDoc, value: object, key: str) -> OutputName | None:
    text = d.text(value, key)
    try:
        return OutputName.parse(text) if text is not None else None
    except ValueError as exc:
        d.error(key, str(exc))
        return None


def _mode(d: YamlDoc, value: object, key: str) -> int | None:
    """An octal file mode (``0644``, ``"640"``, ``0o664``) as written: YAML would read
    ``0644`` as octal but ``644`` as decimal, so the text decides, always octal."""
    text = d.raw.get(key, "") if isinstance(value, int | str) else ""
    digits = text.strip().lower().removeprefix("0o")
    if digits and all(c in "01234567" for c in digits) and int(digits, 8) <= 0o777:
        return int(digits, 8)
    d.error(key, f"{text or value!r} is not a file mode: write octal digits, e.g. 0644")
    return None


def parse_watch(d: YamlDoc, value: object, key: str) -> WatchConfig | None:
    """One watch; None when it has no usable path (its other keys are still checked)."""
    m = d.mapping(value, key, _WATCH_KEYS, ("path", "output"))
    if m is None:
        return None
    text = d.get(m, "path", key, d.text, "")
    path = abspath(text or os.sep)
    if text and not path.exists():
        d.error(f"{key}.path", f"{str(path)!r} does not exist; create it")
    elif text and not path.is_dir():
        d.error(f"{key}.path", f"{str(path)!r} is not a directory")
    name = d.get(m, "metadata_file", key, d.text, ".svwatchd.yaml")
    if "/" in name or name in ("", ".", ".."):
        d.error(f"{key}.metadata_file", f"{name!r} is not a plain file name")
    out: YamlMap = {}
    if "output" in m:
        out = d.mapping(m["output"], f"{key}.output", _OUTPUT_KEYS, ("dir",)) or {}
    out_dir = d.get(out, "dir", f"{key}.output", d.text, "")
    same = out_dir == "same"
    okey = f"{key}.output"
    watch = WatchConfig(
        path=path,
        output_dir=path if same else abspath(out_dir) if out_dir else path / "<missing dir>",
        recursive=d.get(m, "recursive", key, d.boolean, True),
        selector=_selector(d, m, key),
        settle=d.get(m, "settle", key, d.duration, 2.0),
        poll=d.get(m, "poll", key, d.boolean, False),
        metadata=d.get(m, "metadata", key, lambda v, k: _metadata(d, v, k), {}),
        metadata_file=name,
        tags_from_path=d.get(m, "tags_from_path", key, lambda v, k: _tags_pattern(d, v, k), None),
        formats=d.get(
            out, "formats", f"{key}.output", lambda v, k: _formats(d, v, k), OUTPUT_FORMATS
        ),
        after=d.get(m, "after", key, lambda v, k: _after(d, v, k), "keep"),
        output_same=same,
        output_name=d.get(out, "name", okey, lambda v, k: _name(d, v, k), OutputName()),
        output_mode=d.get(out, "mode", okey, lambda v, k: _mode(d, v, k), None, nullable=True),
        skip_if_exists=d.get(m, "skip_if_exists", key, d.boolean, False),
        notify=parse_notify(d, m["notify"], f"{key}.notify") if "notify" in m else None,
    )
    return watch if text else None
