"""One decode worker process: its main loop (child side) and its handle (parent side).

The two sides speak over a duplex pipe, one message at a time:

    child  -> ("ready", info) | ("error", packed error)      once, after loading
    parent -> ("job", clips)  -> child ("ok", results) | ("error", packed error)
    parent -> ("stop", None)  -> child exits

Errors cross the process boundary by pickling when that round-trips;
svwatchd's own errors take keyword-only arguments and do not unpickle, so
they are rebuilt from class, message and attributes instead. Either way the
caller gets the original class and message, with the worker's traceback
attached as a note.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import pickle
import signal
import traceback
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from svwatchd.errors import EngineError
from svwatchd.server._engines.base import (
    COUNTERS,
    Ask,
    Audio,
    Engine,
    EngineConfig,
    load_engine,
)
from svwatchd.server._engines.heap import give_back_if_grown

__all__ = [
    "NATIVE_THREAD_VARS",
    "JobOutcome",
    "PackedError",
    "Worker",
    "WorkerGoneError",
    "end_process",
    "load_warm",
    "merged_info",
    "native_thread_env",
    "native_threads",
    "pack_error",
    "run_job",
    "spawn_worker",
    "unpack_error",
]

_CONTEXT = multiprocessing.get_context("spawn")

PackedError = tuple[str, str, bytes | None, dict[str, Any], str]


class WorkerGoneError(Exception):
    """The worker process ended or its pipe broke (internal: the pool turns it into an error)."""


def pack_error(exc: BaseException) -> PackedError:
    """Turn an exception into plain data that survives the pipe."""
    cls = type(exc)
    data: bytes | None
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
    except Exception:
        data = None
    try:
        attrs = {k: v for k, v in vars(exc).items() if _picklable(v)}
    except TypeError:
        attrs = {}
    tb = "".join(traceback.format_exception(exc))
    return f"{cls.__module__}:{cls.__qualname__}", str(exc), data, attrs, tb


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def unpack_error(packed: PackedError, where: str = "a decode worker process") -> BaseException:
    """Rebuild the exception raised in ``where``: same class and message where possible."""
    name, message, data, attrs, tb = packed
    exc: BaseException | None = None
    if data is not None:
        exc = pickle.loads(data)
    else:
        module, _, qualname = name.partition(":")
        cls = getattr(importlib.import_module(module), qualname, None) if module else None
        if module.startswith("svwatchd.") and isinstance(cls, type) and issubclass(cls, Exception):
            exc = cls.__new__(cls)
            Exception.__init__(exc, message)
            exc.__dict__.update(attrs)
    if exc is None:
        exc = EngineError(f"{name.rpartition(':')[2]}: {message}")
    exc.add_note(f"raised in {where}:\n" + tb.rstrip())
    return exc


def load_warm(config: EngineConfig) -> Engine:
    """Load a worker's engine (models verified) at the worker's niceness: what every
    kind of decode worker (a pool process, a Ray actor) does once when it starts."""
    if config.nice:
        os.nice(config.nice)  # bulk work: the server's own process comes first
    return load_engine(config)


JobOutcome = tuple[str, Any]
"""``("ok", (heard, engine info))`` or ``("error", packed error)``: plain data for the wire."""


def run_job(engine: Engine, clips: list[Audio], asks: list[Ask] | None) -> JobOutcome:
    """Decode one job on a warm engine; its outcome as plain data, never raised (the
    engine's error crosses the process boundary packed, with its class and message)."""
    try:
        heard = engine.hear_many(clips, asks)
        return "ok", (heard, engine.info())  # its counters move with each job
    except Exception as exc:
        return "error", pack_error(exc)
    finally:
        give_back_if_grown()  # an idle worker holds little free heap (heap.py)


def merged_info(first: dict[str, object], latest: list[dict[str, object]]) -> dict[str, object]:
    """Several workers' engine facts as one: ``first``'s, with each counter summed over
    ``latest`` (every worker's since its start, as its last job left it) and the workers'
    language checks listed (e.g. base loaded by some workers only)."""
    info = dict(first)
    for counter in COUNTERS:
        if counter in info:
            info[counter] = sum(int(str(i.get(counter, 0))) for i in latest)
    if latest and "language_check" in info:
        info["language_check"] = "; ".join(sorted({str(i["language_check"]) for i in latest}))
    return info


def _main(config: EngineConfig, conn: Connection) -> None:
    """Child process: load the engine once, then decode jobs until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    try:
        engine = load_warm(config)
        conn.send(("ready", engine.info()))
    except BaseException as exc:
        conn.send(("error", pack_error(exc)))
        return
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if kind != "job":
            return
        conn.send(run_job(engine, *payload))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, process: BaseProcess, conn: Connection, slot: int) -> None:
        self.process = process
        self.conn = conn
        self.slot = slot
        self.pid = int(process.pid or 0)

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.is_alive()

    def _receive(self, timeout: float | None) -> tuple[str, Any]:
        """The next message; TimeoutError, or WorkerGoneError if the process ends first."""
        try:
            ready = wait([self.conn, self.process.sentinel], timeout)
        except (OSError, ValueError) as exc:  # the pipe was closed under us (pool closing)
            raise WorkerGoneError(f"its pipe closed ({exc})") from exc
        if not ready:
            raise TimeoutError
        try:
            if self.conn in ready or self.conn.poll():
                kind, payload = self.conn.recv()
                return str(kind), payload
        except (EOFError, OSError, ValueError):
            pass
        self.process.join(1.0)
        raise WorkerGoneError(_describe_exit(self.process.exitcode))

    def wait_ready(self, timeout: float) -> dict[str, object]:
        """Wait for the engine to load; return its info or raise the load error."""
        try:
            kind, payload = self._receive(timeout)
        except TimeoutError:
            self.stop(timeout=0)
            raise EngineError(
                f"decode worker {self.slot} (pid {self.pid}) did not load its engine "
                f"within {timeout:g} s"
            ) from None
        except WorkerGoneError as gone:
            raise EngineError(
                f"decode worker {self.slot} (pid {self.pid}) ended while loading its engine: {gone}"
            ) from None
        if kind == "error":
            self.process.join(5.0)
            raise unpack_error(payload)
        return dict(payload)

    def call(self, clips: list[Audio], asks: list[Ask] | None = None) -> Any:
        """Decode one job: (the results, the engine's info after it), or the worker's
        exception (returned, not raised)."""
        try:
            self.conn.send(("job", (clips, asks)))
        except (OSError, ValueError) as exc:
            self.process.join(1.0)
            raise WorkerGoneError(_describe_exit(self.process.exitcode)) from exc
        kind, payload = self._receive(None)
        return unpack_error(payload) if kind == "error" else payload

    def stop(self, timeout: float) -> None:
        """Ask the worker to exit; terminate, then kill it, if it does not in ``timeout`` s."""
        end_process(self.process, self.conn, ("stop", None), timeout)


def end_process(
    process: BaseProcess, conn: Connection, goodbye: tuple[Any, ...], timeout: float
) -> None:
    """Send a child process ``goodbye`` on its pipe and give it ``timeout`` s to exit;
    terminate, then kill it, if it does not; close the pipe."""
    if process.is_alive() and timeout > 0:
        with contextlib.suppress(OSError, ValueError):
            conn.send(goodbye)
        process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(2.0)
    if process.is_alive():
        process.kill()
        process.join(2.0)
    conn.close()


NATIVE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""The variables that size native libraries' thread pools when they load. A worker runs
``config.threads`` threads of CTranslate2, but numpy's OpenBLAS (the feature extractor's
matrix products) starts one thread per core in every worker, so two workers on two cores
ran four busy threads. Measured (99 clips of 4-6 s through svserver, 2 workers, tiny.en):
capped at the worker's threads, 12.7-13.0 s instead of 16.1-18.2 s, the workers' CPU 24 s
instead of 30 s (OpenBLAS's cap alone gave the same). Ray sets only OMP_NUM_THREADS for
its actors: they get the others with their start (``runtime_env``)."""


def native_thread_env(threads: int) -> dict[str, str]:
    """The native thread caps for a worker of ``threads`` threads; a value the operator
    set stands."""
    return {name: os.environ.get(name, str(threads)) for name in NATIVE_THREAD_VARS}


def native_threads(threads: int) -> None:
    """Size the native thread pools of the worker processes started from now on to
    ``threads`` (:func:`native_thread_env`). (A spawned process inherits the environment;
    svserver's own, already loaded, libraries keep theirs.)"""
    os.environ.update(native_thread_env(threads))


def spawn_worker(config: EngineConfig, slot: int) -> Worker:
    """Start a worker process for ``slot``; it begins loading its engine at once, its
    native libraries on ``config.threads`` threads (:func:`native_threads`)."""
    native_threads(config.threads)
    parent, child = _CONTEXT.Pipe(duplex=True)
    process = _CONTEXT.Process(
        target=_main, args=(config, child), name=f"svserver-decode-{slot}", daemon=True
    )
    process.start()
    child.close()
    return Worker(process, parent, slot)
