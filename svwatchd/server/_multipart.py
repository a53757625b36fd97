"""A ``multipart/form-data`` body read as it arrives: small fields kept, one file streamed on.

Starlette's own form parser spools a file part into a temporary file (in
memory up to 1 MiB, then in the system's temp directory) before the route
sees it. svserver's uploads belong in its data directory, bounded by
``max_upload_bytes`` and counted as they arrive, so :class:`StreamedForm`
hands the file part's bytes on as they come (to
:meth:`~svwatchd.server._uploads.Uploads.receive`, which writes them to
``uploads/``) and keeps only the other fields, each at most
:data:`MAX_FIELD_BYTES`. Nothing holds the whole body in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from svwatchd.errors import InvalidInputError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["MAX_FIELDS", "MAX_FIELD_BYTES", "FormError", "FormFile", "StreamedForm"]

MAX_FIELD_BYTES = 64 * 1024
"""Longest value of a field that is not the file (a prompt is a few hundred bytes)."""

MAX_FIELDS = 100
"""Most fields besides the file one form may carry."""


class FormError(InvalidInputError):
    """A form field (``field``; None for the body as a whole) is missing or wrong; ``code``
    is the machine-readable reason. Answered 400 like every :class:`InvalidInputError`."""

    def __init__(self, message: str, *, field: str | None, code: str = "bad_request") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class FormFile:
    """The file part's name and what its client said it is."""

    filename: str
    content_type: str | None


class StreamedForm:
    """One multipart body: iterate :meth:`file_bytes` to read it all.

    ``on_field(name, value)`` is called as each field ends (it may raise to refuse the
    request before the rest arrives); :attr:`fields` holds them in order, repeated names
    included (``timestamp_granularities[]``). The part named ``file_field`` is the file;
    a second one is refused.
    """

    def __init__(
        self,
        content_type: str,
        body: AsyncIterable[bytes],
        *,
        file_field: str,
        on_field: Callable[[str, str], None],
    ) -> None:
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise FormError(
                f"the body must be multipart/form-data with a boundary, not {content_type!r}",
                field=None,
            )
        self._body = body
        self._file_field = file_field
        self._on_field = on_field
        self.fields: list[tuple[str, str]] = []
        self.file: FormFile | None = None
        self._pending: list[bytes] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._part_type: str | None = None
        self._name = ""
        self._in_file = False
        self._value = bytearray()
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        self._parser = MultipartParser(boundary, callbacks)

    async def file_bytes(self) -> AsyncIterator[bytes]:
        """Read the whole body; yield the file part's bytes as they arrive."""
        try:
            async for chunk in self._body:
                self._parser.write(chunk)
                if self._pending:
                    yield b"".join(self._pending)
                    self._pending.clear()
            self._parser.finalize()
        except MultipartParseError as exc:
            raise FormError(f"the multipart body is malformed: {exc}", field=None) from None
        if self._pending:
            yield b"".join(self._pending)
            self._pending.clear()

    # -- the parser's callbacks -----------------------------------------------------------

    def _part_begin(self) -> None:
        self._disposition = b""
        self._part_type = None
        self._value = bytearray()
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.lower()
        if name == b"content-disposition":
            self._disposition = self._header_value
        elif name == b"content-type":
            self._part_type = self._header_value.decode("latin-1")
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise FormError("a form part has no name in its Content-Disposition", field=None)
        self._name = _text(options[b"name"], "a field name")
        if self._name != self._file_field:
            if len(self.fields) >= MAX_FIELDS:
                raise FormError(f"the form has more than {MAX_FIELDS} fields", field=None)
            return
        if self.file is not None:
            raise FormError(
                f"the form has two {self._file_field!r} parts; send one file per request",
                field=self._file_field,
            )
        filename = options.get(b"filename")
        self.file = FormFile(
            _text(filename, "the file name") if filename else "upload", self._part_type
        )
        self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise FormError(
                f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                field=self._name,
            )

    def _part_end(self) -> None:
        if self._in_file:
            return
        value = _text(bytes(self._value), f"form field {self._name!r}", field=self._name)
        self.fields.append((self._name, value))
        self._on_field(self._name, value)


def _text(data: bytes, what: str, field: str | None = None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(f"{what} is not UTF-8 text", field=field) from None
