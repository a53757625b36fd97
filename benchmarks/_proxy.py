"""A small TCP proxy for the fault suite: loopback network faults between daemon and server.

Runs an asyncio loop in its own thread. Each chunk is handled in the mode in
force when it arrives (``mode`` may change at any time; the daemon keeps its
connections alive, so a fault must reach the open ones):

- ``pass``: bytes go both ways untouched;
- ``reset``: the request's first bytes are forwarded, then both sides are reset
  mid-body (the server never sees a whole request);
- ``drop``: the request goes through whole, the server answers (it has
  committed whatever it was asked), and the answer is thrown away: the client's
  connection is reset;
- ``slow``: every chunk, both ways, is held for ``delay`` seconds.

``count`` says how many chunks each fault touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import Counter
from typing import Literal

__all__ = ["Mode", "Proxy"]

Mode = Literal["pass", "reset", "drop", "slow"]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


class Proxy:
    """Listens on 127.0.0.1 (``port``) and forwards to ``target`` (host, port)."""

    def __init__(self, target: tuple[str, int], *, delay: float = 5.0) -> None:
        self.target = target
        self.delay = delay
        self.mode: Mode = "pass"
        self.count: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # both ends of every live connection
        self.port = 0

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        # stopped: close the listener and every connection still open, then the loop
        self._server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        for writer in list(self._open):
            writer.transport.abort()
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(client_w)
            await asyncio.sleep(0)
            return
        ends = (client_w, server_w)
        self._open.update(ends)
        up = asyncio.ensure_future(self._pipe(client_r, server_w, ends, upstream=True))
        down = asyncio.ensure_future(self._pipe(server_r, client_w, ends, upstream=False))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            for end in ends:
                end.close()
                self._open.discard(end)

    async def _pipe(
        self,
        r: asyncio.StreamReader,
        w: asyncio.StreamWriter,
        ends: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        *,
        upstream: bool,
    ) -> None:
        """Copy one direction, applying the mode in force at each chunk (connections are
        kept alive, so a fault must reach the ones already open)."""
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await r.read(65536):
                mode = self.mode
                if mode == "slow":
                    self.count["slow"] += 1
                    await asyncio.sleep(self.delay)
                elif mode == "reset" and upstream:
                    self.count["reset"] += 1
                    w.write(data[: max(1, len(data) // 2)])  # half a request, then RST
                    await w.drain()
                    for end in ends:
                        _reset(end)
                    return
                elif mode == "drop" and not upstream:
                    self.count["drop"] += 1  # the server answered (and committed): lost
                    for end in ends:
                        _reset(end)
                    return
                w.write(data)
                await w.drain()
