"""The daemon's YAML config: read once, validated once, every problem reported at once.

:func:`load_config` turns the file into frozen dataclasses or raises one
:class:`ConfigErrors` listing every problem, each with the file, the 1-based
line and the dotted key (``watches[0].settle``), so an operator fixes them
all in one pass; :func:`validate_config` returns that list for ``svwatchd
check``. The YAML is read with ``yaml.SafeLoader`` semantics, from the node
tree, which is what keeps the line numbers: that reading and the value
converters that record problems are `svwatchd.daemon.yamldoc.YamlDoc`; this
module holds the config's dataclasses and the parsing of each section.

Relative paths (a watch's ``path``, ``state_dir``, ``output.dir``,
``move:DIR``, ``token_file``) resolve against the current working directory
of the process, not the config file's folder: that is what operators expect
from ``./inbox`` when they run the demo from the repository root. ``~`` is
expanded. Under systemd set ``WorkingDirectory=`` or write absolute paths.

Decisions beyond the issue: ``state_dir``, ``watches`` (one or more) and each
watch's ``output.dir`` are required; ``server`` defaults to ``embedded``.
Null means "none" for list keys and "never" for ``delete_after`` and
``close_after``. Text keys take the text as written (``ignore: [yes]`` is the
glob ``yes``; a metadata value YAML would read as a date stays its text).
``WatchConfig.excluded_dirs`` holds every output, ``move:`` and state folder
(of any watch) lying inside that watch, so the daemon never ingests its own
files. An output or ``move:`` folder may not be a watch folder nor contain
one (mirrored outputs could land in the watch); ``state_dir`` may not be one.
Watches may not repeat or nest. Problems come sorted by line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from svwatchd.client.metadata import split_metadata
from svwatchd.client.select import FileSelector
from svwatchd.daemon.schedule import PauseWindow, PauseWindows, load_zone
from svwatchd.daemon.yamldoc import YamlDoc, YamlMap, compose_file, join_key
from svwatchd.errors import ConfigError, InvalidStreamError
from svwatchd.server.config import parse_hostport

__all__ = [
    "DEFAULT_IGNORE",
    "FORMATS",
    "After",
    "ConfigErrors",
    "DaemonConfig",
    "EmbeddedServer",
    "LogConfig",
    "MetricsConfig",
    "Policy",
    "RemoteServer",
    "WatchConfig",
    "load_config",
    "validate_config",
]

FORMATS = ("txt", "json", "srt", "vtt")
DEFAULT_IGNORE = (".*", "*.part", "*.tmp", "*~")
After: TypeAlias = Literal["keep", "delete"] | tuple[Literal["move"], Path]
_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigErrors(ConfigError):
    """Every problem found in one config file; ``errors`` lists them, one per message line."""

    def __init__(self, errors: Sequence[ConfigError], *, file: str | None = None) -> None:
        lines = "".join(f"\n  {e}" for e in errors)
        super().__init__(f"{len(errors)} problem(s):{lines}", file=file)
        self.errors = list(errors)


@dataclass(frozen=True)
class EmbeddedServer:
    """Run svserver as the daemon's child process (its data under ``state_dir``).

    ``server: embedded`` takes the defaults (Whisper tiny.en, one worker per
    core); ``server: {embedded: {engine: pocketsphinx, workers: 1}}`` chooses.
    """

    engine: Literal["whisper", "pocketsphinx"] = "whisper"
    model: Path | None = None
    model_sha256: Path | None = None
    workers: int | None = None
    threads: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def args(self) -> list[str]:
        """The matching ``svserver serve`` options."""
        out = ["--engine", self.engine, "--device", self.device]
        if self.model is not None:
            out += ["--model", str(self.model)]
        if self.model_sha256 is not None:
            out += ["--model-sha256", str(self.model_sha256)]
        if self.workers is not None:
            out += ["--workers", str(self.workers)]
        if self.threads is not None:
            out += ["--threads", str(self.threads)]
        return out


@dataclass(frozen=True)
class RemoteServer:
    """A running svserver: ``url`` without a trailing slash; ``token`` read from ``token_file``."""

    url: str
    token_file: Path | None = None
    token: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class LogConfig:
    """Log lines: ``json`` (one object per line, the operators' contract) or ``console``."""

    format: Literal["json", "console"] = "json"
    level: str = "info"


@dataclass(frozen=True)
class MetricsConfig:
    """Where the metrics endpoint listens."""

    host: str
    port: int


@dataclass(frozen=True)
class Policy:
    """How the daemon treats its streams on the server (seconds; None = never)."""

    max_inflight: int = 100
    retry_errors: int = 2
    delete_after: float | None = None
    close_after: float | None = None
    pause_windows: PauseWindows = field(default_factory=PauseWindows)


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
    formats: tuple[str, ...] = FORMATS
    after: After = "keep"
    excluded_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class DaemonConfig:
    """The whole daemon config, validated (see :func:`load_config`)."""

    state_dir: Path
    watches: tuple[WatchConfig, ...]
    server: EmbeddedServer | RemoteServer = field(default_factory=EmbeddedServer)
    refresh_interval: float = 5.0
    rescan_interval: float = 300.0
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig | None = None
    policy: Policy = field(default_factory=Policy)


def _abspath(text: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(text)))


def _inside(child: Path, parent: Path) -> bool:
    c, p = os.path.realpath(child), os.path.realpath(parent)
    return c == p or c.startswith(p.rstrip("/") + "/")


def _server(d: YamlDoc, value: object) -> EmbeddedServer | RemoteServer | None:
    if value == "embedded":
        return EmbeddedServer()
    if isinstance(value, dict) and "embedded" in value:
        return _embedded(d, value)
    if not isinstance(value, dict):
        example = "{url: http://host:8750, token_file: ..., timeout: 10s}"
        d.error("server", f"{value!r} is not a server: write 'embedded' or a mapping {example}")
        return None
    m = d.mapping(value, "server", ("url", "token_file", "token", "timeout"), ("url",)) or {}
    url = d.get(m, "url", "server", d.text, "")
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        d.error("server.url", f"{url!r} is not an http:// or https:// URL")
    token = d.get(m, "token", "server", d.text, "")
    token_file = d.get(m, "token_file", "server", d.text, None)
    path = _abspath(token_file) if token_file else None
    if path is not None:
        if token:
            d.error("server.token", "give token or token_file, not both")
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            d.error("server.token_file", f"cannot read it: {exc}")
        else:
            if not token:
                d.error("server.token_file", f"{str(path)!r} is empty")
    timeout = d.get(m, "timeout", "server", d.positive, 10.0)
    return RemoteServer(url.rstrip("/"), path, token or None, timeout)


def _embedded(d: YamlDoc, value: dict[str, object]) -> EmbeddedServer | None:
    d.mapping(value, "server", ("embedded",))
    options = value["embedded"] if value["embedded"] is not None else {}
    keys = ("engine", "model", "model_sha256", "workers", "threads", "device")
    m = d.mapping(options, "server.embedded", keys)
    if m is None:
        return None
    key = "server.embedded"
    engine = d.get(m, "engine", key, d.text, "whisper")
    device = d.get(m, "device", key, d.text, "auto")
    if engine not in ("whisper", "pocketsphinx"):
        d.error(f"{key}.engine", f"{engine!r} is not an engine: whisper or pocketsphinx")
    if device not in ("auto", "cpu", "cuda"):
        d.error(f"{key}.device", f"{device!r} is not a device: auto, cpu or cuda")
    paths: dict[str, Path | None] = {}
    for name in ("model", "model_sha256"):
        text = d.get(m, name, key, d.text, "")
        paths[name] = _abspath(text) if text else None
        if paths[name] is not None and not paths[name].exists():  # type: ignore[union-attr]
            d.error(f"{key}.{name}", f"{text!r} does not exist")
    workers = d.get(m, "workers", key, lambda v, k: d.integer(v, k, 1), 0)
    threads = d.get(m, "threads", key, lambda v, k: d.integer(v, k, 1), 0)
    return EmbeddedServer(
        engine=engine,  # type: ignore[arg-type]
        model=paths["model"],
        model_sha256=paths["model_sha256"],
        workers=workers or None,
        threads=threads or None,
        device=device,  # type: ignore[arg-type]
    )


def _log(d: YamlDoc, value: object) -> LogConfig:
    m = d.mapping(value, "log", ("format", "level")) or {}
    fmt = d.get(m, "format", "log", d.text, "json")
    if fmt not in ("json", "console"):
        d.error("log.format", f"{fmt!r} is not a log format: json or console")
    level = d.get(m, "level", "log", d.text, "info").lower()
    level = {"warn": "warning"}.get(level, level)
    if level not in _LEVELS:
        d.error("log.level", f"{level!r} is not a level: {', '.join(_LEVELS)}")
    return LogConfig("console" if fmt == "console" else "json", level)


def _metrics(d: YamlDoc, value: object) -> MetricsConfig | None:
    if value is None:
        return None
    m = d.mapping(value, "metrics", ("listen",), ("listen",)) or {}
    listen = d.get(m, "listen", "metrics", d.text, "")
    try:
        host, port = parse_hostport(listen) if listen else ("", 0)
        if port is None:
            raise ValueError(f"{listen!r} has no port")
    except ValueError as exc:
        d.error("metrics.listen", f"{exc}; write HOST:PORT, e.g. 127.0.0.1:9750")
        return None
    return MetricsConfig(host, port) if listen else None


def _policy(d: YamlDoc, value: object) -> Policy:
    keys = ("max_inflight", "retry_errors", "delete_after", "close_after", "pause_windows")
    m = d.mapping(value, "policy", (*keys, "timezone")) or {}
    windows: list[PauseWindow] = []
    for spec, key in d.texts(m.get("pause_windows"), "policy.pause_windows"):
        try:
            windows.append(PauseWindow.parse(spec))
        except ValueError as exc:
            d.error(key, str(exc))
    tz_name = None if m.get("timezone") is None else d.text(m["timezone"], "policy.timezone")
    try:
        zone = load_zone(tz_name)
    except ValueError as exc:
        d.error("policy.timezone", str(exc))
        tz_name, zone = None, load_zone(None)
    return Policy(
        max_inflight=d.get(m, "max_inflight", "policy", lambda v, k: d.integer(v, k, 1), 100),
        retry_errors=d.get(m, "retry_errors", "policy", lambda v, k: d.integer(v, k, 0), 2),
        delete_after=d.get(m, "delete_after", "policy", d.duration, None, nullable=True),
        close_after=d.get(m, "close_after", "policy", d.positive, None, nullable=True),
        pause_windows=PauseWindows(tuple(windows), tz_name, zone),
    )


_WATCH_KEYS = (
    "path", "recursive", "exts", "filters", "ignore", "settle", "poll", "metadata",
    "metadata_file", "tags_from_path", "output", "after",
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
    return FileSelector.create(good["exts"] or None, good["filters"], globs)


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
        if fmt not in FORMATS:
            d.error(k, f"{fmt!r} is not an output format: {', '.join(FORMATS)}")
        elif fmt not in formats:
            formats.append(fmt)
    if value is None or value == []:
        d.error(key, f"name one or more of {', '.join(FORMATS)}")
    return tuple(formats) or None


def _after(d: YamlDoc, value: object, key: str) -> After | None:
    text = d.text(value, key)
    if text in ("keep", "delete"):
        return "keep" if text == "keep" else "delete"
    if text is not None and text.startswith("move:") and text[5:].strip():
        return ("move", _abspath(text[5:].strip()))
    if text is not None:
        d.error(key, f"{text!r} is not an action: keep, delete or move:DIR")
    return None


def _watch(d: YamlDoc, value: object, key: str) -> WatchConfig | None:
    """One watch; None when it has no usable path (its other keys are still checked)."""
    m = d.mapping(value, key, _WATCH_KEYS, ("path", "output"))
    if m is None:
        return None
    text = d.get(m, "path", key, d.text, "")
    path = _abspath(text or os.sep)
    if text and not path.exists():
        d.error(f"{key}.path", f"{str(path)!r} does not exist; create it")
    elif text and not path.is_dir():
        d.error(f"{key}.path", f"{str(path)!r} is not a directory")
    name = d.get(m, "metadata_file", key, d.text, ".svwatchd.yaml")
    if "/" in name or name in ("", ".", ".."):
        d.error(f"{key}.metadata_file", f"{name!r} is not a plain file name")
    out: YamlMap = {}
    if "output" in m:
        out = d.mapping(m["output"], f"{key}.output", ("dir", "formats"), ("dir",)) or {}
    out_dir = d.get(out, "dir", f"{key}.output", d.text, "")
    watch = WatchConfig(
        path=path,
        output_dir=_abspath(out_dir) if out_dir else path / "<missing output.dir>",
        recursive=d.get(m, "recursive", key, d.boolean, True),
        selector=_selector(d, m, key),
        settle=d.get(m, "settle", key, d.duration, 2.0),
        poll=d.get(m, "poll", key, d.boolean, False),
        metadata=d.get(m, "metadata", key, lambda v, k: _metadata(d, v, k), {}),
        metadata_file=name,
        tags_from_path=d.get(m, "tags_from_path", key, lambda v, k: _tags_pattern(d, v, k), None),
        formats=d.get(out, "formats", f"{key}.output", lambda v, k: _formats(d, v, k), FORMATS),
        after=d.get(m, "after", key, lambda v, k: _after(d, v, k), "keep"),
    )
    return watch if text else None


def _folders(d: YamlDoc, state_dir: Path, watches: Sequence[tuple[int, WatchConfig]]) -> list[Path]:
    """Check how watch, output, move and state folders lie; return the ones to exclude."""
    for n, (i, w) in enumerate(watches):
        for j, other in watches[:n]:
            a, b = _inside(w.path, other.path), _inside(other.path, w.path)
            if a or b:
                how = "is the same folder as" if a and b else "is nested with"
                where = f"watches[{j}].path {str(other.path)!r}"
                d.error(f"watches[{i}].path", f"{str(w.path)!r} {how} {where}; watch it once")
    folders = [("state_dir", state_dir)]
    for i, w in watches:
        folders.append((f"watches[{i}].output.dir", w.output_dir))
        if isinstance(w.after, tuple):
            folders.append((f"watches[{i}].after", w.after[1]))
    for key, folder in folders:
        for i, w in watches:
            if _inside(w.path, folder) and (key != "state_dir" or _inside(folder, w.path)):
                what = f"{str(folder)!r} is or contains watches[{i}].path {str(w.path)!r}"
                d.error(key, f"{what}; put it outside the watch, or in a subfolder of it")
    return [folder for _, folder in folders]


def _excluded(watch: WatchConfig, folders: Sequence[Path]) -> tuple[Path, ...]:
    """The folders inside ``watch``, spelled under ``watch.path`` as the watcher sees paths."""
    root = os.path.realpath(watch.path)
    rels = {os.path.relpath(os.path.realpath(f), root) for f in folders if _inside(f, watch.path)}
    return tuple(sorted(watch.path / rel for rel in rels))


_TOP_KEYS = (
    "server", "state_dir", "refresh_interval", "rescan_interval", "log", "metrics", "policy",
    "watches",
)  # fmt: skip


def _config(d: YamlDoc, value: object) -> DaemonConfig | None:
    m = d.mapping(value, "", _TOP_KEYS, ("state_dir", "watches"))
    if m is None:
        return None
    state_dir = _abspath(d.get(m, "state_dir", "", d.text, "") or ".")
    if "state_dir" in m and state_dir.exists() and not state_dir.is_dir():
        d.error("state_dir", f"{str(state_dir)!r} is not a directory")
    items = m.get("watches", [])
    if not isinstance(items, list) or not items:
        d.error("watches", "expected a list of one or more watches, each with a path and output")
        items = []
    found = [(i, _watch(d, item, f"watches[{i}]")) for i, item in enumerate(items)]
    watches = [(i, w) for i, w in found if w is not None]
    folders = _folders(d, state_dir, watches)
    config = DaemonConfig(
        state_dir=state_dir,
        watches=tuple(replace(w, excluded_dirs=_excluded(w, folders)) for _, w in watches),
        server=(_server(d, m["server"]) if "server" in m else None) or EmbeddedServer(),
        refresh_interval=d.get(m, "refresh_interval", "", d.positive, 5.0),
        rescan_interval=d.get(m, "rescan_interval", "", d.positive, 300.0),
        log=_log(d, m.get("log", {})),
        metrics=_metrics(d, m.get("metrics")),
        policy=_policy(d, m.get("policy", {})),
    )
    return None if d.errors else config


def _read(path: str | os.PathLike[str]) -> tuple[DaemonConfig | None, list[ConfigError]]:
    file = os.fspath(path)
    try:
        root = compose_file(file)
    except ConfigError as exc:
        return None, [exc]
    d = YamlDoc(file)
    data = None if root is None else d.build(root, "")
    if data is None and not d.errors:
        d.error("", "the file is empty; it needs at least state_dir and watches")
    elif not isinstance(data, dict):
        d.error(
            "", "the top level must be a mapping (key: value lines), not a single value or a list"
        )
    else:
        config = _config(d, data)
        return config, sorted(d.errors, key=lambda e: e.line or 0)
    return None, d.errors


def load_config(path: str | os.PathLike[str]) -> DaemonConfig:
    """Read and validate the config at ``path``; raise :class:`ConfigErrors` naming all problems."""
    config, errors = _read(path)
    if config is None:
        raise ConfigErrors(errors, file=os.fspath(path))
    return config


def validate_config(path: str | os.PathLike[str]) -> list[ConfigError]:
    """Every problem in the config at ``path`` (empty when valid), for ``svwatchd check``."""
    return _read(path)[1]
