"""The metadata a file is submitted with: watch config, per-directory files, path tags.

Precedence, lowest to highest: the watch's ``metadata`` in the main config,
then the metadata files (``.svwatchd.yaml`` by default) from the watch root
down to the file's own directory (nearer wins), then ``tags_from_path``.
Format fields (``samprate``, ``encoding``, ...) apply to headerless sources
only: a WAV file's header wins over them silently.

A metadata file that is not valid YAML, not a mapping, too large, a symlink
leading outside the watch, or that has an invalid field holds the files under
it (they are never submitted with wrong or partial metadata) until it is
fixed; the error names the file, the line and the key.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from svwatchd._audio import is_riff
from svwatchd._sniff import is_container
from svwatchd.errors import ConfigError, InvalidStreamError
from svwatchd.model.metadata import FORMAT_FIELDS, split_metadata

__all__ = [
    "MAX_METADATA_BYTES",
    "Held",
    "MetadataResolver",
    "load_metadata_file",
]

MAX_METADATA_BYTES = 64 * 1024


def load_metadata_file(path: Path, watch_root: Path) -> dict[str, object]:
    """Read and validate one metadata file; ``ConfigError`` names file, line and key."""
    name = str(path)
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(watch_root))
    if real != root and root not in real.parents:
        raise ConfigError(f"is a link to {real}, outside the watch {root}; refused", file=name)
    try:
        size = real.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise ConfigError(
                f"is {size} bytes; metadata files are limited to {MAX_METADATA_BYTES}", file=name
            )
        text = real.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror or exc}", file=name) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", file=name) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError) as exc:
        raise _invalid_yaml(name, exc) from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            "must be a mapping of fields (key: value)", file=name, line=node.start_mark.line + 1
        )
    loader = yaml.SafeLoader("")
    out: dict[str, object] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        try:  # e.g. a tag SafeLoader does not know (!custom), a nesting too deep
            key = loader.construct_object(key_node)
            value = loader.construct_object(value_node, deep=True)
        except (yaml.YAMLError, RecursionError) as exc:
            raise _invalid_yaml(name, exc) from None
        if not isinstance(key, str):
            raise ConfigError(f"field name {key!r} is not a string", file=name, line=line)
        if hasattr(value, "isoformat"):
            value = value.isoformat()  # YAML dates and times become ISO 8601 strings
        try:
            split_metadata(name, {key: value})
        except InvalidStreamError as exc:
            problem = str(exc).split(": ", 1)[-1]
            raise ConfigError(
                problem, file=name, line=value_node.start_mark.line + 1, key=key
            ) from None
        out[key] = value
    return out


def _invalid_yaml(name: str, exc: Exception) -> ConfigError:
    """The ConfigError for a file PyYAML cannot read, with the line where it can tell."""
    if isinstance(exc, RecursionError):
        return ConfigError("is not valid YAML: nested too deeply", file=name)
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigError(f"is not valid YAML: {problem}", file=name, line=line)


_WRITING: dict[str, object] = {}  # a marker: the metadata file is not complete yet


@dataclass(frozen=True)
class Held:
    """The file must wait: the metadata file ``file`` is broken (``reason`` says how)."""

    file: str
    reason: str


class MetadataResolver:
    """Resolves a file's metadata for one watch, caching metadata files by stat."""

    def __init__(
        self,
        root: Path,
        base: Mapping[str, object],
        *,
        filename: str | None = ".svwatchd.yaml",
        tags_from_path: re.Pattern[str] | None = None,
        settle: float = 0.0,
        complete: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.root = root
        self.settle = settle
        self._complete = complete
        self.base = dict(base)
        self.filename = filename
        self.tags_from_path = tags_from_path
        self._cache: dict[Path, tuple[tuple[int, int], dict[str, object] | ConfigError]] = {}

    def directory_file(self, directory: Path) -> dict[str, object] | ConfigError | None:
        """The parsed metadata file of one directory (None if there is none)."""
        if self.filename is None:
            return None
        path = directory / self.filename
        try:
            st = path.lstat()
        except OSError:
            self._cache.pop(path, None)
            return None
        if time.time() - st.st_mtime < self.settle and not self._complete(str(path)):
            return _WRITING  # maybe half-written: read it once closed, moved in or settled
        key = (st.st_size, st.st_mtime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        parsed: dict[str, object] | ConfigError
        try:
            parsed = load_metadata_file(path, self.root)
        except ConfigError as exc:
            parsed = exc
        self._cache[path] = (key, parsed)
        return parsed

    def resolve(self, path: Path) -> dict[str, object] | Held | None:
        """The metadata for ``path``; ``Held`` when a metadata file above it is broken;
        None while one is still being written (ask again soon)."""
        merged = dict(self.base)
        rel = path.relative_to(self.root)
        directory = self.root
        for part in (None, *rel.parts[:-1]):
            if part is not None:
                directory = directory / part
            found = self.directory_file(directory)
            if found is _WRITING:
                return None
            if isinstance(found, ConfigError):
                return Held(str(directory / str(self.filename)), str(found))
            if found:
                merged.update(found)
        if self.tags_from_path is not None:
            m = self.tags_from_path.search(rel.as_posix())
            if m:
                merged.update({k: v for k, v in m.groupdict().items() if v is not None})
        if _has_own_format(path):  # format fields are for headerless files only
            merged = {k: v for k, v in merged.items() if k not in FORMAT_FIELDS}
        return merged


def _has_own_format(path: Path) -> bool:
    """A WAV file (by name or content) or a known container: its header says its format."""
    if path.name.lower().endswith((".wav", ".wave")):
        return True
    return is_riff(path) or is_container(str(path))
