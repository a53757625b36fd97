"""A long file decoded piece by piece, on every free worker, committed in order.

A recording longer than :data:`~svwatchd.server._pieces.LONG_FILE_SECONDS`
is streamed from its position (:func:`svwatchd._decode.iter_audio`: the
memory of a block, whatever the file's length), cut into pieces at quiet
moments (:mod:`~svwatchd.server._pieces`), and its pieces go to the workers:
one on the job's own slot, more on slots that are free (borrowed and given
back piece by piece, so new jobs are not kept waiting behind a long file).

Each piece's utterances are committed in file order together with the
position they reach (``decoded_seconds``), in one transaction: a stop or a
``kill -9`` loses at most the pieces in flight, and the next start goes on
from the last piece committed, without duplicating or losing utterances.
A pause takes effect between pieces (those in flight are still committed); a
close or a delete stops the job at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from svwatchd._audio import probe_wav
from svwatchd._decode import choose_track, iter_audio
from svwatchd._media import Track
from svwatchd.errors import AudioDecodeError
from svwatchd.model.enums import DecodeStatus
from svwatchd.model.metadata import channel_labels
from svwatchd.model.speechdata import Utterance
from svwatchd.server._clips import Clip, Loaded, label, split_clips, splits
from svwatchd.server._engines.base import Ask, Heard
from svwatchd.server._executor import Executor
from svwatchd.server._hearing import hearing_of, hold
from svwatchd.server._lifecycle import Lifecycle, Progress
from svwatchd.server._pieces import PIECE_SECONDS, Piece, cut_pieces
from svwatchd.server._slots import Slots
from svwatchd.server._store import Store, StreamRow

__all__ = ["PIECES_AHEAD_PER_SLOT", "LongFiles"]

log = structlog.get_logger("svserver.longfile")


PIECES_AHEAD_PER_SLOT = 6
"""Pieces a long file may have decoding or decoded and waiting for an earlier one to commit,
per decoding slot. Whisper's temperature fallback makes some pieces several times slower
than the rest (measured: 6.5 s against 1-2 s); with 2 pieces per slot the other workers
stood idle behind such a piece. A decoded piece waits without its audio (its utterances
only), and a kill -9 decodes again at most these pieces."""


@dataclass
class _InFlight:
    start: float  # the piece's place in the file, seconds
    end: float
    loaded: Loaded  # without samples: they went to the executor
    waiter: asyncio.Future[list[Heard]] | None  # None: nothing in it to decode
    began: float

    @property
    def done(self) -> bool:
        """Its result is in (or there was nothing to decode)."""
        return self.waiter is None or self.waiter.done()


def _running(flying: deque[_InFlight]) -> int:
    """Pieces a worker is decoding (or has queued) now."""
    return sum(1 for f in flying if not f.done)


class _Reader:
    """The file's pieces read one ahead in a thread, so a free worker never waits for the
    file to be read and resampled (the memory of one piece more)."""

    def __init__(self, source: str, pieces: Iterator[Piece]) -> None:
        self._source = source
        self._pieces = pieces
        self._ahead: asyncio.Task[Piece | None] | None = None

    async def next(self) -> Piece | None:
        """The next piece, or None at the end; the one after starts being read at once."""
        ahead = self._ahead or asyncio.ensure_future(self._read())
        piece = await ahead
        self._ahead = asyncio.ensure_future(self._read()) if piece is not None else None
        return piece

    async def close(self) -> None:
        """Wait for a read in progress (its thread cannot be stopped; the file stays ours)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None or ahead.done():
            return
        try:
            await asyncio.shield(ahead)
        except asyncio.CancelledError:
            if not ahead.cancelled():
                raise  # the job itself is cancelled again: do not hold it
        except Exception:  # the job is ending: a read error of a piece nobody will use
            pass

    async def _read(self) -> Piece | None:
        return await asyncio.to_thread(_next, self._source, self._pieces)


class LongFiles:
    """Runs long-file jobs (the scheduler starts one per long file, on a slot of its own)."""

    def __init__(
        self,
        *,
        store: Store,
        lifecycle: Lifecycle,
        slots: Slots,
        executor: Executor,
        sample_rate: int = 16000,
        piece_seconds: float = PIECE_SECONDS,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._slots = slots
        self._executor = executor
        self._rate = sample_rate
        self._piece_seconds = piece_seconds

    async def decode(self, row: StreamRow) -> float:
        """Decode ``row``'s file from where it was left; returns the audio seconds decoded.

        Raises ``AudioDecodeError`` for a file that cannot be read (the scheduler fails
        the stream); committed pieces stay. Store failures pass through.
        """
        assert row.path is not None
        fmt = probe_wav(row.path).format if row.filetype == "WAV" else row.format
        chosen = choose_track(row.path, fmt, row.track, row.language)
        track = chosen.track if chosen is not None else None
        split = splits(row, fmt)
        labels = channel_labels(row.tags, fmt.channels)
        begin = row.decoded_seconds
        blocks = iter_audio(
            row.path,
            fmt,
            target_rate=self._rate,
            start=begin,
            split=split,
            chosen=chosen,
        )
        pieces = cut_pieces(blocks, start=begin, rate=self._rate, piece_seconds=self._piece_seconds)
        task = asyncio.current_task()
        assert task is not None
        reader = _Reader(row.source, pieces)
        flying: deque[_InFlight] = deque()  # in file order; committed from the left
        more, paused, position = True, False, begin
        ask = row.ask  # after each commit, in the language detected so far, if any
        try:
            while True:
                # every slot that can be had gets a piece (the job's own, then free ones);
                # pieces done but waiting for an earlier one to commit are bounded too
                while (
                    more
                    and len(flying) < PIECES_AHEAD_PER_SLOT * self._slots.total
                    and (_running(flying) == 0 or self._slots.borrow(task))
                ):
                    piece = await reader.next()
                    if piece is None:
                        more = False
                        break
                    flying.append(self._submit(row, ask, piece, split, labels, track))
                self._give_back(task, _running(flying))
                if not flying:
                    break
                if not flying[0].done:  # a piece behind the first may end first: its slot
                    await asyncio.wait(  # goes to the next piece at once
                        [f.waiter for f in flying if f.waiter is not None and not f.done],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    self._give_back(task, _running(flying))
                while flying and flying[0].done:
                    done = flying.popleft()
                    results = done.waiter.result() if done.waiter is not None else []
                    utts = [u.shifted(done.start) for u in label(done.loaded, results)]
                    if not self._commit(row, done, utts, results):
                        return position - begin  # closed or deleted meanwhile: the abort wins
                    position = done.end
                current = self._store.one(row.id)
                ask = current.ask if current is not None else ask
                if more and (current is None or current.status is not DecodeStatus.ACTIVE):
                    more, paused = False, True  # paused: what is in flight is kept, no more
        finally:
            for inflight in flying:
                if inflight.waiter is not None:
                    inflight.waiter.cancel()  # the job ends: nobody waits for these any more
            await reader.close()
        if paused:
            return position - begin  # resumed later: a new job goes on from ``position``
        progress = Progress(sourceseconds=position)
        if self._lifecycle.commit(row.id, [], progress, final=True):
            log.info("decode.done", stream_id=row.id, source=row.source, seconds=position)
        return position - begin

    def _give_back(self, task: asyncio.Task[None], running: int) -> None:
        """Return the borrowed slots no running piece needs (the job's own slot stays)."""
        while self._slots.borrowed(task) > max(0, running - 1):
            self._slots.give_back(task)

    def _submit(
        self,
        row: StreamRow,
        ask: Ask,
        piece: Piece,
        split: bool,
        labels: list[str],
        track: Track | None,
    ) -> _InFlight:
        seconds = piece.end - piece.start
        if split:
            parts, repeated = split_clips(piece.channels, labels)
            loaded = Loaded(parts, seconds, track, len(parts), repeated)
        else:
            loaded = Loaded([Clip(piece.channels[0])], seconds, track)
        waiter = None
        if loaded.clips:
            samples = [c.samples for c in loaded.clips]
            future = self._executor.submit(samples, [ask] * len(samples))
            waiter = asyncio.wrap_future(future)
            fields = {"stream_id": row.id, "start": round(piece.start, 3)}
            waiter.add_done_callback(lambda _: log.debug("piece.decoded", **fields))
        log.debug(
            "piece.started", stream_id=row.id, start=round(piece.start, 3), end=round(piece.end, 3)
        )
        return _InFlight(piece.start, piece.end, loaded.without_samples(), waiter, time.monotonic())

    def _commit(
        self, row: StreamRow, done: _InFlight, utts: list[Utterance], heard: list[Heard]
    ) -> bool:
        hearing = hearing_of(heard, row)
        if hearing.held is not None:  # the stream stops here; pieces committed stay
            hold(self._lifecycle, row, hearing)
            return False
        anchor = row.anchor
        pairs = [(u, None if anchor is None else anchor + u.end) for u in utts]
        progress = Progress(
            decoded_seconds=done.end,
            decode_wall=time.monotonic() - done.began,
            track=done.loaded.track.number if done.loaded.track is not None else None,
            track_language=done.loaded.track.language if done.loaded.track is not None else None,
            channels_decoded=done.loaded.channels_decoded,
            channels_repeated=done.loaded.channels_repeated,
            language=hearing.language,  # the first piece with words decides
            language_probability=hearing.probability,
            mismatch=hearing.mismatch,
        )
        return self._lifecycle.commit(row.id, pairs, progress, final=False)


def _next(source: str, pieces: Iterator[Piece]) -> Piece | None:
    """The next piece (read and resampled in a worker thread), or None at the end; a file
    that cannot be read any more is an :class:`AudioDecodeError` naming it."""
    try:
        return next(pieces, None)
    except OSError as exc:
        raise AudioDecodeError(source, f"cannot read it: {exc.strerror or exc}") from None
