"""The ``svwatchd`` command: ``run``, ``check`` and ``status`` on a YAML config."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from svwatchd.daemon.config import DaemonConfig, load_config, validate_config
from svwatchd.daemon.metadata import MetadataResolver
from svwatchd.errors import ConfigError, SvwatchdError
from svwatchd.logs import configure_logging

__all__ = [
    "main",
    "metadata_file_errors",
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="svwatchd", description="Watch folders, transcribe audio.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the daemon in the foreground"),
        ("check", "validate the config (and every metadata file); exit 1 on error"),
        ("status", "counts by state per watch, oldest pending file, last errors"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--config", "-c", required=True, type=Path)
    return p


def metadata_file_errors(config: DaemonConfig) -> list[ConfigError]:
    """Every invalid per-directory metadata file under every watch."""
    errors: list[ConfigError] = []
    for watch in config.watches:
        resolver = MetadataResolver(watch.path, watch.metadata, filename=watch.metadata_file)
        for meta in sorted(watch.path.rglob(watch.metadata_file)):
            found = resolver.directory_file(meta.parent)
            if isinstance(found, ConfigError):
                errors.append(found)
    return errors


def _check(path: Path) -> int:
    errors = validate_config(path)
    if not errors:
        errors = metadata_file_errors(load_config(path))
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"svwatchd: {path}: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"svwatchd: {path}: ok")
    return 0


def _status(config: DaemonConfig) -> int:
    db = config.state_dir / "journal.db"
    if not db.exists():
        print(f"svwatchd: no journal at {db} yet (the daemon has not run)", file=sys.stderr)
        return 1
    # read-only and without the lock: works while the daemon runs
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        counts: dict[str, dict[str, int]] = {}
        for watch, state, n in conn.execute(
            "SELECT watch, state, COUNT(*) FROM files GROUP BY watch, state"
        ):
            counts.setdefault(watch, {})[state] = n
        oldest = conn.execute(
            "SELECT path, detected FROM files WHERE state IN ('PENDING', 'HELD') "
            "ORDER BY detected LIMIT 1"
        ).fetchone()
        held = conn.execute(
            "SELECT path, last_error FROM files WHERE state='HELD' ORDER BY updated DESC LIMIT 20"
        ).fetchall()
        errors = conn.execute(
            "SELECT path, state, last_error FROM files WHERE last_error IS NOT NULL "
            "AND state IN ('FAILED', 'INFLIGHT') ORDER BY updated DESC LIMIT 10"
        ).fetchall()
    finally:
        conn.close()
    report = {
        "watches": counts,
        "oldest_pending": (
            {"path": oldest[0], "waiting_seconds": round(time.time() - oldest[1], 1)}
            if oldest
            else None
        ),
        "held": [{"path": p, "reason": r} for p, r in held],
        "last_errors": [{"path": p, "state": s, "error": e} for p, s, e in errors],
    }
    print(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args.config)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"svwatchd: {exc}", file=sys.stderr)
        return 2
    if args.command == "status":
        return _status(config)
    configure_logging(config.log.format, config.log.level)
    from svwatchd.daemon.runner import Daemon

    try:
        return Daemon(config, config_path=args.config).run()
    except SvwatchdError as exc:
        print(f"svwatchd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
