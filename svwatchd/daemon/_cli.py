"""The ``svwatchd`` command: ``run``, ``check`` and ``status`` on a YAML config."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from svwatchd._logs import configure_logging
from svwatchd.daemon._collisions import output_collisions
from svwatchd.daemon._config import DaemonConfig, WatchConfig, load_config, validate_config
from svwatchd.daemon._journal_read import JournalReader
from svwatchd.daemon._metadata import MetadataResolver
from svwatchd.errors import ConfigError, SchemaVersionError, SvwatchdError
from svwatchd.model.contract import FILETYPES

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
        config = load_config(path)
        errors = metadata_file_errors(config) + output_collisions(config, str(path))
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"svwatchd: {path}: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"svwatchd: {path}: ok")
    print(f"svwatchd: decodes {', '.join(FILETYPES)} (RAW: headerless, with its format fields)")
    for watch in load_config(path).watches:
        exts = " ".join(f".{e.lstrip('.')}" for e in watch.selector.exts) or "every file"
        print(f"svwatchd: watch {watch.path} takes {exts}")
        print(f"svwatchd:   writes {_writes(watch)}")
        if watch.notify is not None and watch.notify.webhook is not None:
            hook = watch.notify.webhook
            print(f"svwatchd:   notifies {hook.url} on {', '.join(sorted(hook.events))}")
        if watch.notify is not None and watch.notify.exec is not None:
            run = watch.notify.exec
            print(f"svwatchd:   runs {run.command[0]} on {', '.join(sorted(run.events))}")
    return 0


def _writes(watch: WatchConfig) -> str:
    """Where and how a watch's outputs are written, in one line."""
    where = "beside the sources" if watch.output_same else f"under {watch.output_dir}"
    extra = " if not there yet" if watch.skip_if_exists else ""
    mode = f", mode {watch.output_mode:04o}" if watch.output_mode is not None else ""
    formats = ", ".join(watch.formats)
    return f"{watch.output_name.template} ({formats}) {where}{mode}{extra}"


def _status(config: DaemonConfig) -> int:
    # read-only and without the lock: works while the daemon runs
    try:
        journal = JournalReader.open_readonly(config.state_dir)
    except (FileNotFoundError, SchemaVersionError) as exc:
        print(f"svwatchd: {exc}", file=sys.stderr)
        return 1
    with journal:
        oldest = journal.oldest_pending()
        report = {
            "watches": journal.counts_by_watch(),
            "oldest_pending": (
                {"path": oldest.path, "waiting_seconds": round(time.time() - oldest.detected, 1)}
                if oldest
                else None
            ),
            "held": [{"path": r.path, "reason": r.last_error} for r in journal.held(20)],
            "last_errors": [
                {"path": r.path, "state": r.state, "error": r.last_error}
                for r in journal.last_errors(10)
            ],
            "notifications": _notifications(journal),
        }
    print(json.dumps(report, indent=2))
    return 0


def _notifications(journal: JournalReader) -> dict[str, int]:
    """Deliveries owed (PENDING), delivered (SENT) and given up (FAILED)."""
    try:
        rows = journal.read("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
    except sqlite3.OperationalError:  # a journal the daemon has not migrated to schema 3 yet
        rows = []
    found = {str(r[0]): int(r[1]) for r in rows}
    return {state: found.get(state, 0) for state in ("PENDING", "SENT", "FAILED")}


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
    from svwatchd.daemon._runner import Daemon

    try:
        return Daemon(config, config_path=args.config).run()
    except SvwatchdError as exc:
        print(f"svwatchd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
