"""The daemon's YAML config: read once, validated once, every problem reported at once.

:func:`load_config` turns the file into frozen dataclasses or raises one
:class:`ConfigErrors` listing every problem, each with the file, the 1-based
line and the dotted key (``watches[0].settle``), so an operator fixes them
all in one pass; :func:`validate_config` returns that list for ``svwatchd
check``. The YAML is read with ``yaml.SafeLoader`` semantics, from the node
tree, which is what keeps the line numbers: that reading and the value
converters that record problems are `svwatchd.daemon._yamldoc.YamlDoc`; this
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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from svwatchd.daemon._notifyconfig import NotifyConfig, parse_notify
from svwatchd.daemon._schedule import PauseWindow, PauseWindows, load_zone
from svwatchd.daemon._watchconfig import (
    DEFAULT_IGNORE,
    After,
    WatchConfig,
    abspath,
    parse_watch,
)
from svwatchd.daemon._yamldoc import YamlDoc, compose_file
from svwatchd.errors import ConfigError, ConfigErrors
from svwatchd.model.contract import BUNDLED_MODELS, parse_hostport

__all__ = [
    "DEFAULT_IGNORE",
    "After",
    "DaemonConfig",
    "Device",
    "EmbeddedServer",
    "Engine",
    "LogConfig",
    "MetricsConfig",
    "Policy",
    "RemoteServer",
    "WatchConfig",
    "load_config",
    "validate_config",
]

Engine: TypeAlias = Literal["whisper", "pocketsphinx"]
Device: TypeAlias = Literal["auto", "cpu", "cuda"]
_LEVELS = ("debug", "info", "warning", "error", "critical")
_ENGINES: dict[str, Engine] = {"whisper": "whisper", "pocketsphinx": "pocketsphinx"}
_DEVICES: dict[str, Device] = {"auto": "auto", "cpu": "cpu", "cuda": "cuda"}


@dataclass(frozen=True)
class EmbeddedServer:
    """Run svserver as the daemon's child process (its data under ``state_dir``).

    ``server: embedded`` takes the defaults (Whisper tiny.en, one worker per
    core); ``server: {embedded: {engine: pocketsphinx, workers: 1}}`` chooses.
    """

    engine: Engine = "whisper"
    models: tuple[str, ...] = ()  # bundled names as they are, directories made absolute
    model_sha256: Path | None = None
    workers: int | None = None
    threads: int | None = None
    device: Device = "auto"
    model_cache: Path | None = None  # where base is assembled (default: its data dir)
    language_check: bool = True  # flag foreign speech under an English-only model

    def args(self) -> list[str]:
        """The matching ``svserver serve`` options."""
        out = ["--engine", self.engine, "--device", self.device]
        for model in self.models:
            out += ["--model", model]
        if self.model_sha256 is not None:
            out += ["--model-sha256", str(self.model_sha256)]
        if self.workers is not None:
            out += ["--workers", str(self.workers)]
        if self.threads is not None:
            out += ["--threads", str(self.threads)]
        if self.model_cache is not None:
            out += ["--model-cache", str(self.model_cache)]
        if not self.language_check:
            out.append("--no-language-check")
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
    notify: NotifyConfig = field(default_factory=NotifyConfig)  # each watch's is resolved


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
    path = abspath(token_file) if token_file else None
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
    keys = (
        "engine",
        "model",
        "model_sha256",
        "workers",
        "threads",
        "device",
        "model_cache",
        "language_check",
    )
    m = d.mapping(options, "server.embedded", keys)
    if m is None:
        return None
    key = "server.embedded"
    engine = d.get(m, "engine", key, d.text, "whisper")
    device = d.get(m, "device", key, d.text, "auto")
    if engine not in _ENGINES:
        d.error(f"{key}.engine", f"{engine!r} is not an engine: whisper or pocketsphinx")
    if device not in _DEVICES:
        d.error(f"{key}.device", f"{device!r} is not a device: auto, cpu or cuda")
    models: list[str] = []
    for text, where in d.texts(m.get("model"), f"{key}.model"):
        if text in BUNDLED_MODELS:
            models.append(text)
        elif not abspath(text).is_dir():
            names = ", ".join(BUNDLED_MODELS)
            d.error(where, f"{text!r} is neither a model svserver ships ({names}) nor a directory")
        else:
            models.append(str(abspath(text)))
    text = d.get(m, "model_sha256", key, d.text, "")
    manifest = abspath(text) if text else None
    if manifest is not None and not manifest.exists():
        d.error(f"{key}.model_sha256", f"{text!r} does not exist")
    cache = d.get(m, "model_cache", key, d.text, "")
    check = d.get(m, "language_check", key, d.boolean, True)
    workers = d.get(m, "workers", key, lambda v, k: d.integer(v, k, 1), 0)
    threads = d.get(m, "threads", key, lambda v, k: d.integer(v, k, 1), 0)
    return EmbeddedServer(
        engine=_ENGINES.get(engine, "whisper"),
        models=tuple(models),
        model_sha256=manifest,
        workers=workers or None,
        threads=threads or None,
        device=_DEVICES.get(device, "auto"),
        model_cache=abspath(cache) if cache else None,
        language_check=check,
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
        if not w.output_same:  # beside the sources: the watch skips its output names instead
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
    "notify", "watches",
)  # fmt: skip


def _config(d: YamlDoc, value: object) -> DaemonConfig | None:
    m = d.mapping(value, "", _TOP_KEYS, ("state_dir", "watches"))
    if m is None:
        return None
    state_dir = abspath(d.get(m, "state_dir", "", d.text, "") or ".")
    if "state_dir" in m and state_dir.exists() and not state_dir.is_dir():
        d.error("state_dir", f"{str(state_dir)!r} is not a directory")
    items = m.get("watches", [])
    if not isinstance(items, list) or not items:
        d.error("watches", "expected a list of one or more watches, each with a path and output")
        items = []
    found = [(i, parse_watch(d, item, f"watches[{i}]")) for i, item in enumerate(items)]
    watches = [(i, w) for i, w in found if w is not None]
    folders = _folders(d, state_dir, watches)
    notify = parse_notify(d, m.get("notify"), "notify")
    config = DaemonConfig(
        state_dir=state_dir,
        watches=tuple(
            replace(w, excluded_dirs=_excluded(w, folders), notify=w.notify or notify)
            for _, w in watches  # a watch's own notify (null: an empty one) wins
        ),
        server=(_server(d, m["server"]) if "server" in m else None) or EmbeddedServer(),
        refresh_interval=d.get(m, "refresh_interval", "", d.positive, 5.0),
        rescan_interval=d.get(m, "rescan_interval", "", d.positive, 300.0),
        log=_log(d, m.get("log", {})),
        metrics=_metrics(d, m.get("metrics")),
        policy=_policy(d, m.get("policy", {})),
        notify=notify,
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
