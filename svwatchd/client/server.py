"""The Server client: svserver's streams and parameters over HTTP, as ``server-module.md`` says.

Every bulk method is one HTTP request for any number of streams. Submission is
idempotent: each Stream carries a client-chosen id, so resending the same
``decodestreams`` after a timeout never creates a second stream. Failures are
:class:`~svwatchd.errors.ServerUnavailableError` (retrying may help: no answer,
:class:`~svwatchd.errors.ServerUnreachableError`, or a 5xx,
:class:`~svwatchd.errors.ServerFailedError`) or
:class:`~svwatchd.errors.ServerRefusedError` (4xx, with the server's message:
retrying will not help). A closed ``Server`` raises
:class:`~svwatchd.errors.ClientClosedError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from svwatchd.client.stream import Stream
from svwatchd.errors import (
    ClientClosedError,
    InvalidInputError,
    ServerFailedError,
    ServerRefusedError,
    ServerUnavailableError,
    ServerUnreachableError,
    StreamStateError,
)
from svwatchd.model.contract import DEFAULT_PORT, parse_hostport
from svwatchd.model.record import AnyRecord
from svwatchd.model.speechdata import Utterance

__all__ = ["Server", "StreamOrStreams"]

StreamOrStreams = Stream | Sequence[Stream]


def _base_url(host: str) -> str:
    if host.startswith(("http://", "https://")):
        return host.rstrip("/")
    try:
        name, port = parse_hostport(host, DEFAULT_PORT)
    except ValueError as exc:
        raise InvalidInputError(
            f"Server address {host!r} is not NAME[:PORT], [IPv6]:PORT or an http(s) URL: {exc}"
        ) from None
    return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


def _listify(streams: StreamOrStreams) -> list[Stream]:
    return [streams] if isinstance(streams, Stream) else list(streams)


class Server:
    """A client for the svserver on ``host`` (``name``, ``name:port`` or an http(s) URL).

    ``token`` (else ``$SVSERVER_TOKEN``) is sent as a bearer token. ``upload``
    decides when a file's bytes are sent instead of its path: ``None`` (auto)
    uploads only when the server answers that the path does not exist on its
    side; ``True`` always uploads; ``False`` never does. A path the server
    refuses (outside its roots) is an error, never retried as an upload.
    ``transport`` lets tests talk to an app in-process (``httpx.ASGITransport``).
    """

    def __init__(
        self,
        host: str = "localhost",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        upload: bool | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _base_url(host)
        token = token if token is not None else os.environ.get("SVSERVER_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.upload = upload
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"<Server {self.url}>"

    def close(self) -> None:
        """Close the connection pool; the Server cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._http.is_closed:
            raise ClientClosedError(f"Server {self.url} was closed; create a new Server")
        url = f"{self.url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnreachableError(
                f"{method} {url} timed out ({type(exc).__name__}); the server may be busy or "
                "down, retry later",
                url=url,
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"Cannot reach svserver at {self.url}: {exc}", url=url
            ) from exc
        return self._answer(method, url, response)

    @staticmethod
    def _answer(method: str, url: str, response: httpx.Response) -> Any:
        if response.status_code >= 500:
            body, message = _error_of(response)  # e.g. 507: svserver's disk is full
            said = f": {message}" if isinstance(body, dict) else ""  # not a proxy's page
            raise ServerFailedError(
                f"{method} {url} failed with {response.status_code} on the server{said}; "
                "retry later",
                status_code=response.status_code,
                url=url,
            )
        if response.status_code >= 400:
            body, message = _error_of(response)
            raise ServerRefusedError(
                f"svserver refused {method} {url} ({response.status_code}): {message}",
                status_code=response.status_code,
                detail=body,
                url=url,
            )
        return response.json() if response.content else None

    # -- submission -------------------------------------------------------------------

    def decodestreams(self, streams: StreamOrStreams, *, upload: bool | None = None) -> None:
        """Submit streams for decoding (one request; idempotent by stream id).

        Each stream is bound to this server and refreshed from its answer. If the
        server refuses some, the accepted ones are still submitted and one
        ServerRefusedError lists the others (``detail`` maps id to reason).
        """
        items = _listify(streams)
        upload = self.upload if upload is None else upload
        specs = {s.id: _spec(s, as_upload=bool(upload) and s.fromfile()) for s in items}
        if upload:
            for s in items:
                if s.fromfile():
                    self._upload(s)
        rejected = self._submit(items, list(specs.values()))
        if upload is None:
            again = [s for s in items if rejected.get(s.id, {}).get("code") == "path_not_found"]
            for s in again:
                self._upload(s)
                del rejected[s.id]
            if again:
                rejected.update(self._submit(again, [_spec(s, as_upload=True) for s in again]))
        if rejected:
            lines = "; ".join(
                f"{next(s.sourcename() for s in items if s.id == i)}: {r['message']}"
                for i, r in rejected.items()
            )
            first = next(iter(rejected.values()))
            raise ServerRefusedError(
                f"svserver refused {len(rejected)} of {len(items)} streams: {lines}",
                status_code=int(first.get("status", 400)),
                detail=rejected,
                url=f"{self.url}/v1/streams",
            )

    def _submit(self, items: list[Stream], specs: list[dict[str, Any]]) -> dict[str, Any]:
        body = self._request("POST", "/v1/streams", json={"streams": specs})
        by_id = {s.id: s for s in items}
        for rec in body["streams"]:
            stream = by_id[rec["id"]]
            stream._bind(self)
            stream._apply(rec)
        return {r["id"]: r for r in body.get("rejected", [])}

    def _upload(self, stream: Stream) -> None:
        path = stream.source
        assert isinstance(path, str)
        try:
            with open(path, "rb") as f:
                self._request(
                    "PUT",
                    f"/v1/uploads/{stream.id}",
                    content=f,
                    headers={"Content-Type": "application/octet-stream"},
                )
        except ServerRefusedError as exc:
            # The stream already exists on the server (a resend): its bytes are there.
            if not (
                isinstance(exc.detail, dict) and exc.detail.get("error", {}).get("code") == "exists"
            ):
                raise

    # -- queries ------------------------------------------------------------------------

    def getstreams(self, *metadatas: Mapping[str, object]) -> list[Stream]:
        """Streams on the server (not deleted); with metadata dicts, those matching any."""
        body = self._request("POST", "/v1/streams/query", json={"match": list(metadatas)})
        return [Stream._from_record(rec, self) for rec in body["streams"]]

    def getstreamsbyid(self, ids: Sequence[str]) -> tuple[list[Stream], list[str]]:
        """Streams by id, in one request: (those the server knows, the unknown ids).

        For callers that keep ids rather than Stream objects (the daemon's
        journal); deleted streams come back with status DELETED.
        """
        if not ids:
            return [], []
        body = self._request("POST", "/v1/streams/refresh", json={"ids": list(ids)})
        streams = [Stream._from_record(rec, self) for rec in body["streams"]]
        return streams, list(body.get("missing", []))

    def refreshstreams(self, streams: StreamOrStreams) -> None:
        """Refresh the streams' state from the server, in one request."""
        items = _listify(streams)
        if not items:
            return
        self._require_bound(items)
        body = self._request("POST", "/v1/streams/refresh", json={"ids": [s.id for s in items]})
        self._apply_all(items, body["streams"])
        if body.get("missing"):
            raise ServerRefusedError(
                f"svserver has no streams {', '.join(body['missing'])}",
                status_code=404,
                detail=body["missing"],
            )

    def joinstartstreams(
        self, streams: StreamOrStreams, *, timeout: float | None = None, poll: float = 0.2
    ) -> None:
        """Wait until every stream has left QUEUED (refreshing them), or ``timeout`` passes."""
        items = _listify(streams)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refreshstreams(items)
            if all(s.status is not None and not s.isqueued() for s in items):
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(poll)

    def _require_bound(self, items: list[Stream]) -> None:
        for s in items:
            if s._server is None:
                s._require_server()
            elif s._server is not self:
                raise StreamStateError(
                    f"Stream {s.sourcename()} was submitted to {s._server.url}, not {self.url}",
                    stream_id=s.id,
                )

    @staticmethod
    def _apply_all(items: list[Stream], records: list[AnyRecord]) -> None:
        by_id = {r["id"]: r for r in records}
        for s in items:
            if s.id in by_id:
                s._apply(by_id[s.id])

    def _bulk(self, action: str, streams: StreamOrStreams, **extra: Any) -> bool:
        items = _listify(streams)
        if not items:
            return True
        self._require_bound(items)
        body = self._request(
            "POST", f"/v1/streams/{action}", json={"ids": [s.id for s in items], **extra}
        )
        self._apply_all(items, body["streams"])
        return all(body["results"].get(s.id, False) for s in items)

    def pausestreams(self, streams: StreamOrStreams) -> bool:
        """Pause decoding; True if every stream is now PAUSED."""
        return self._bulk("pause", streams)

    def resumestreams(
        self, streams: StreamOrStreams, fromtime: datetime | int | None = None
    ) -> bool:
        """Resume decoding: from the pause (None), skipping utterances that end before a
        datetime (naive = local time), or skipping to now (-1). True if all resumed."""
        if fromtime is None or fromtime == -1:
            when: Any = fromtime
        elif isinstance(fromtime, datetime):
            when = (fromtime if fromtime.tzinfo else fromtime.astimezone()).isoformat()
        else:
            raise InvalidInputError(f"fromtime must be a datetime, -1 or None, not {fromtime!r}")
        return self._bulk("resume", streams, fromtime=when)

    def closestreams(self, streams: StreamOrStreams) -> bool:
        """Abort decoding (CLOSED; results so far are kept)."""
        return self._bulk("close", streams)

    def deletestreams(self, streams: StreamOrStreams) -> bool:
        """Close the streams and remove every artifact of theirs from the server."""
        return self._bulk("delete", streams)

    # -- results ------------------------------------------------------------------------

    def utterances(self, stream: Stream) -> list[Utterance]:
        """The stream's committed utterances, in time order."""
        self._require_bound([stream])
        body = self._request("GET", f"/v1/streams/{stream.id}/utterances")
        return [Utterance.from_dict(u) for u in body["utterances"]]

    def listen(self, stream: Stream) -> Iterator[Utterance]:
        """Iterate over the stream's utterances as they are decoded, until it finishes."""
        self._require_bound([stream])
        path = f"/v1/streams/{stream.id}/listen"
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(None)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._answer("GET", f"{self.url}{path}", response)
                for line in response.iter_lines():
                    if line.strip():
                        yield Utterance.from_dict(json.loads(line))
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"Lost svserver at {self.url} while listening: {exc}", url=self.url
            ) from exc

    # -- server -------------------------------------------------------------------------

    def getparams(self, *params: str) -> dict[str, Any]:
        """The server's values for the named parameters (all of them with none named)."""
        query = [("name", p) for p in params]
        result: dict[str, Any] = self._request("GET", "/v1/params", params=query)["params"]
        return result

    def setparams(self, **params: Any) -> dict[str, Any]:
        """Set server parameters; returns every parameter's value afterwards."""
        result: dict[str, Any] = self._request("PUT", "/v1/params", json=params)["params"]
        return result

    def status(self) -> dict[str, Any]:
        """Counts of streams by state, decode rate, workers busy."""
        result: dict[str, Any] = self._request("GET", "/v1/status")
        return result

    def sysinfo(self) -> dict[str, Any]:
        """Version, host, platform, cores, engine and model, uptime."""
        result: dict[str, Any] = self._request("GET", "/v1/sysinfo")
        return result

    def healthy(self) -> bool:
        """True when the server answers ``/healthz`` (it is up and ready)."""
        try:
            self._request("GET", "/healthz")
        except (ServerUnavailableError, ServerRefusedError):
            return False
        return True


def _spec(stream: Stream, *, as_upload: bool) -> dict[str, Any]:
    """The JSON submission of one stream."""
    fmt = stream.format
    source: dict[str, Any]
    if not isinstance(stream.source, str):
        host, port = stream.source
        source = {"type": "socket", "host": host, "port": port}
    else:
        path = stream.source
        assert isinstance(path, str)
        source = {"type": "upload" if as_upload else "file", "path": path}
        if as_upload:
            with contextlib.suppress(OSError):
                source["mtime"] = os.stat(path).st_mtime
    return {
        "id": stream.id,
        "source": source,
        "filetype": stream.getfiletype(),
        "format": {
            "encoding": fmt.encoding.value,
            "sampwidth": fmt.sampwidth,
            "samprate": fmt.samprate,
            "channels": fmt.channels,
            "endian": fmt.endian.value,
        },
        "tags": stream.tags,
    }


def _error_of(response: httpx.Response) -> tuple[Any, str]:
    """An error answer's body and its message (svserver's JSON error, else the text)."""
    try:
        body = response.json()
        return body, body.get("error", {}).get("message") or response.text
    except (ValueError, AttributeError):
        return response.text, response.text
