"""Structured logs for every svwatchd process: one JSON object per line, or console text.

The JSON form is a contract that operators' pipelines parse: keys ``event``
(stable dotted names), ``level``, ``timestamp`` (ISO 8601, UTC, microseconds,
``Z``), plus the event's fields. Logs go to stderr (journald picks them up).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

__all__ = [
    "LogFormat",
    "configure_logging",
    "logging_settings",
]

LogFormat = Literal["json", "console"]
"""The two ways a log line is written."""

_settings: tuple[LogFormat, str] = ("json", "info")


def _timestamp(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event["timestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return event


def configure_logging(fmt: LogFormat = "json", level: str = "info") -> None:
    """Set up structlog (and the stdlib root logger, for libraries) for this process."""
    global _settings
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    _settings = (fmt, level)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def logging_settings() -> tuple[LogFormat, str]:
    """The format and level this process was configured with, for a child process that
    must log the same way (a spawned process starts unconfigured)."""
    return _settings
