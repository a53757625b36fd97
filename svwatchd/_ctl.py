"""``svctl``: svserver from the command line (decode, streams, pause, listen, status...)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream, createstreams
from svwatchd.errors import StreamsError, SvwatchdError
from svwatchd.model import speechdata
from svwatchd.model.contract import OUTPUT_FORMATS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="svctl", description="Talk to an svserver.")
    p.add_argument("--server", default=None, help="host, host:port or URL ($SVSERVER_URL)")
    p.add_argument("--token", default=None, help="bearer token (default $SVSERVER_TOKEN)")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode", help="submit files; with --wait, print their transcripts")
    d.add_argument("files", nargs="+")
    d.add_argument("--wait", action="store_true")
    d.add_argument("--format", choices=OUTPUT_FORMATS, default="txt")
    d.add_argument("--upload", action="store_true", help="send the files' bytes")
    d.add_argument("--meta", action="append", default=[], metavar="K=V", help="metadata")
    s = sub.add_parser("streams", help="list streams")
    s.add_argument("--tag", action="append", default=[], metavar="K=V")
    for name in ("pause", "close", "delete"):
        sub.add_parser(name, help=f"{name} streams").add_argument("ids", nargs="+")
    r = sub.add_parser("resume", help="resume streams")
    r.add_argument("ids", nargs="+")
    r.add_argument("--from", dest="fromtime", default=None, help="ISO time, or 'now'")
    sub.add_parser("listen", help="follow a stream's utterances").add_argument("id")
    sub.add_parser("status", help="server status")
    sub.add_parser("sysinfo", help="server facts")
    pa = sub.add_parser("params", help="show or set parameters")
    pa.add_argument("assignments", nargs="*", metavar="K=V")
    return p


def _pairs(items: Sequence[str]) -> dict[str, Any]:
    """``k=v`` strings to a dict; values are read as YAML scalars (3 -> int, true -> bool)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"svctl: {item!r} is not KEY=VALUE")
        parsed = yaml.safe_load(value) if value else ""
        out[key] = parsed if isinstance(parsed, str | int | float | bool) else value
    return out


def _streams(server: Server, ids: Sequence[str]) -> list[Stream]:
    known = {s.id: s for s in server.getstreams()}
    missing = [i for i in ids if i not in known]
    if missing:
        raise SystemExit(f"svctl: no such streams: {', '.join(missing)}")
    return [known[i] for i in ids]


def _row(s: Stream) -> str:
    err = f"  {s.error}" if s.error else ""
    status = s.status.value if s.status else "-"
    return f"{s.id}  {status:<8} {s.sourcename()}{err}"


def _decode(server: Server, args: argparse.Namespace) -> int:
    try:
        streams = createstreams(args.files, **_pairs(args.meta))
    except StreamsError as exc:
        for e in exc.errors:
            print(f"svctl: {e}", file=sys.stderr)
        return 2
    server.decodestreams(streams, upload=True if args.upload else None)
    if not args.wait:
        for s in streams:
            print(_row(s))
        return 0
    total = len(streams)
    while True:
        server.refreshstreams(streams)
        done = sum(s.isdone() for s in streams)
        bar = "#" * int(30 * done / total)
        print(f"\r[{bar:<30}] {done}/{total} decoded", end="", file=sys.stderr, flush=True)
        if done == total:
            print(file=sys.stderr)
            break
        time.sleep(0.3)
    failed = 0
    for s in streams:
        if s.status is not None and s.status.value != "DONE":
            print(f"svctl: {s.sourcename()}: {s.status.value} {s.error or ''}", file=sys.stderr)
            failed += 1
            continue
        text = speechdata.render(s.utterances(), args.format, source=s.sourcename())
        if total > 1 and args.format == "txt":
            print(f"== {s.sourcename()}")
        sys.stdout.write(text)
    return 1 if failed else 0


def _run(server: Server, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "decode":
        return _decode(server, args)
    if cmd == "streams":
        tags = _pairs(args.tag)
        for s in server.getstreams(*([tags] if tags else [])):
            print(_row(s))
        return 0
    if cmd in ("pause", "close", "delete"):
        streams = _streams(server, args.ids)
        ok = getattr(server, f"{cmd}streams")(streams)
        for s in streams:
            print(_row(s))
        return 0 if ok else 1
    if cmd == "resume":
        streams = _streams(server, args.ids)
        when: Any = None
        if args.fromtime == "now":
            when = -1
        elif args.fromtime:
            when = datetime.fromisoformat(args.fromtime)
        ok = server.resumestreams(streams, fromtime=when)
        for s in streams:
            print(_row(s))
        return 0 if ok else 1
    if cmd == "listen":
        (stream,) = _streams(server, [args.id])
        for utt in stream.listen():
            print(f"[{utt.start:8.2f} - {utt.end:8.2f}] {utt.text}", flush=True)
        return 0
    if cmd == "params":
        values = _pairs(args.assignments)
        result = server.setparams(**values) if values else server.getparams()
        print(json.dumps(result, indent=2))
        return 0
    print(json.dumps(server.status() if cmd == "status" else server.sysinfo(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    import os

    args = _parser().parse_args(argv)
    host = args.server or os.environ.get("SVSERVER_URL", "localhost")
    try:
        with Server(host, token=args.token) as server:
            return _run(server, args)
    except SvwatchdError as exc:
        print(f"svctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
