"""The ``notify:`` section (global, and per watch): who is told when a file is done or failed.

::

    notify:
      webhook: {url: https://hooks.example/svwatchd, secret_file: /etc/svwatchd/hook.key,
                events: [done, error], timeout: 10s, retry_for: 1h}
      exec: [/usr/local/bin/on-transcript, --quiet]        # or {command: [...], events: ...}

A watch's own ``notify:`` replaces the global one as a whole (``notify: null``
in a watch turns notifications off for it); a watch without one takes the
global section. A webhook needs its secret (``secret_file``, read once at
load, surrounding whitespace stripped): every delivery is signed with it. An
``exec`` command is run without a shell; a bare name is looked up in
``PATH`` now, so a typo is a config error rather than a failed delivery
later. ``retry_for`` is how long a delivery is retried (capped, jittered
backoff) before ``notify.failed``. Parsed with the config's rules
(`svwatchd.daemon._config`): every problem with its line and key.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from svwatchd.daemon._yamldoc import YamlDoc, YamlMap, abspath, join_key

__all__ = [
    "EVENTS",
    "Channel",
    "Event",
    "ExecConfig",
    "NotifyConfig",
    "WebhookConfig",
    "parse_notify",
]

Event: TypeAlias = Literal["done", "error"]
Channel: TypeAlias = Literal["webhook", "exec"]
EVENTS: tuple[Event, ...] = ("done", "error")
_BY_NAME: dict[str, Event] = {"done": "done", "error": "error"}
_RETRY_FOR = 3600.0


@dataclass(frozen=True)
class WebhookConfig:
    """POST a signed JSON document to ``url`` (see `svwatchd.daemon._delivery`)."""

    url: str
    secret_file: Path
    secret: bytes = field(repr=False, default=b"")
    events: frozenset[Event] = frozenset(EVENTS)
    timeout: float = 10.0
    retry_for: float = _RETRY_FOR


@dataclass(frozen=True)
class ExecConfig:
    """Run ``command`` (no shell) with the paths as arguments and the JSON on stdin."""

    command: tuple[str, ...]
    events: frozenset[Event] = frozenset(EVENTS)
    timeout: float = 60.0
    retry_for: float = _RETRY_FOR


@dataclass(frozen=True)
class NotifyConfig:
    """A watch's notifications (both None: none)."""

    webhook: WebhookConfig | None = None
    exec: ExecConfig | None = None

    def channels(self, event: str) -> list[Channel]:
        """The channels that want ``event``, in a fixed order."""
        out: list[Channel] = []
        if self.webhook is not None and event in self.webhook.events:
            out.append("webhook")
        if self.exec is not None and event in self.exec.events:
            out.append("exec")
        return out

    def retry_for(self, channel: str) -> float:
        """How long deliveries on ``channel`` are retried (0 when it is not configured)."""
        conf = self.webhook if channel == "webhook" else self.exec
        return conf.retry_for if conf is not None else 0.0


def _events(d: YamlDoc, m: YamlMap, key: str) -> frozenset[Event]:
    if "events" not in m:
        return frozenset(EVENTS)
    found: set[Event] = set()
    texts = d.texts(m["events"], join_key(key, "events"))
    for text, k in texts:
        event = _BY_NAME.get(text)
        if event is not None:
            found.add(event)
        else:
            d.error(k, f"{text!r} is not an event: done or error")
    if not texts:
        d.error(join_key(key, "events"), "name one or both of done, error")
    return frozenset(found)


def _webhook(d: YamlDoc, value: object, key: str) -> WebhookConfig | None:
    keys = ("url", "secret_file", "events", "timeout", "retry_for")
    m = d.mapping(value, key, keys, ("url", "secret_file"))
    if m is None:
        return None
    url = d.get(m, "url", key, d.text, "")
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        d.error(f"{key}.url", f"{url!r} is not an http:// or https:// URL")
    text = d.get(m, "secret_file", key, d.text, "")
    secret = b""
    if text:
        try:
            secret = abspath(text).read_bytes().strip()
        except OSError as exc:
            d.error(f"{key}.secret_file", f"cannot read it: {exc}")
        else:
            if not secret:
                d.error(f"{key}.secret_file", f"{text!r} is empty; put the shared secret in it")
    return WebhookConfig(
        url=url,
        secret_file=abspath(text or "."),
        secret=secret,
        events=_events(d, m, key),
        timeout=d.get(m, "timeout", key, d.positive, 10.0),
        retry_for=d.get(m, "retry_for", key, d.duration, _RETRY_FOR),
    )


def _command(d: YamlDoc, value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        d.error(key, "expected a list: the command, then its arguments (no shell)")
        return ()
    words = d.texts(value, key)
    if len(words) != len(value):
        return ()
    program = words[0][0]
    if "/" in program:
        path = abspath(program)
        if not (path.is_file() and os.access(path, os.X_OK)):
            d.error(words[0][1], f"{program!r} is not an executable file")
        program = str(path)
    elif shutil.which(program) is None:
        d.error(words[0][1], f"{program!r} is not in PATH; write its absolute path")
    return (program, *(w for w, _ in words[1:]))


def _exec(d: YamlDoc, value: object, key: str) -> ExecConfig | None:
    if isinstance(value, list):
        command = _command(d, value, key)
        return ExecConfig(command) if command else None
    if not isinstance(value, dict):
        d.error(key, "expected a list (the command, then its arguments) or {command: [...]}")
        return None
    m = d.mapping(value, key, ("command", "events", "timeout", "retry_for"), ("command",))
    if m is None:
        return None
    command = _command(d, m["command"], f"{key}.command") if "command" in m else ()
    config = ExecConfig(
        command,
        events=_events(d, m, key),
        timeout=d.get(m, "timeout", key, d.positive, 60.0),
        retry_for=d.get(m, "retry_for", key, d.duration, _RETRY_FOR),
    )
    return config if command else None


def parse_notify(d: YamlDoc, value: object, key: str) -> NotifyConfig:
    """The ``notify`` mapping at ``key`` (null: no notifications)."""
    if value is None:
        return NotifyConfig()
    m = d.mapping(value, key, ("webhook", "exec")) or {}
    webhook = _webhook(d, m["webhook"], f"{key}.webhook") if m.get("webhook") else None
    command = _exec(d, m["exec"], f"{key}.exec") if m.get("exec") else None
    return NotifyConfig(webhook, command)
