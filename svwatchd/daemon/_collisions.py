"""Two sources whose outputs would get one name: found by ``svwatchd check`` before a run.

An ``output.name`` template without ``{name}`` (or ``{ext}``) can give two
sources one output name (``movie.mkv`` and ``movie.mp4`` -> ``movie.en.srt``
with ``{stem}.{lang}.{fmt}``). ``svwatchd check`` walks the watches' folders
as the daemon would and reports each such pair, naming both; at run time the
second one to finish is failed with the same message
(`svwatchd.daemon._collect`), never written over the first. Before decoding
the language is known only from the watch's ``language`` tag: without one,
sources are compared as if heard in the same language, the case that clashes.
"""

from __future__ import annotations

from svwatchd.daemon._config import DaemonConfig
from svwatchd.daemon._outputnames import language_for_name
from svwatchd.daemon._stage import output_path
from svwatchd.errors import ConfigError

__all__ = ["output_collisions"]


def output_collisions(config: DaemonConfig, file: str | None = None) -> list[ConfigError]:
    """One problem per output path that two source files present now would both get."""
    owners: dict[str, str] = {}
    errors: list[ConfigError] = []
    for i, watch in enumerate(config.watches):
        lang = language_for_name(watch.metadata)
        for path, skipped in watch.selector.walk_all(str(watch.path), recursive=watch.recursive):
            if skipped is not None or not watch.contains(path):
                continue
            for fmt in watch.formats:
                out = str(output_path(watch, path, fmt, lang))
                first = owners.setdefault(out, path)
                if first != path:
                    message = (
                        f"{watch.output_name.template!r} gives {out} for both {first} and "
                        f"{path}; add {{ext}} or {{name}} to the template, or move one of them"
                    )
                    key = f"watches[{i}].output.name"
                    errors.append(ConfigError(message, file=file, key=key))
                    break
    return errors
