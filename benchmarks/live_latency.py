"""Live latency: how long after a speaker stops does the utterance reach a listener?

What is measured: a real svserver (Whisper, one worker per core, 1 thread each,
``--allow-socket 127.0.0.1``) decodes a TCP socket stream that a loopback
feeder in this process sends at real-time pace (16 kHz SPCM, 20 ms chunks, each
sent no earlier than the moment its last sample would have been spoken). The
feed is 0.5 s of digital silence, then the LibriVox ``sense_and_sensibility``
and card clips (001-005.wav) interleaved in a loop (100 clips, 10 with
``--quick``), each followed by 0.8-1.5 s of digital silence (random), then 2 s
of silence. A listener thread iterates ``stream.listen()`` and stamps each
utterance's arrival.

Utterances are matched to clips by their start/end times (seconds from the
stream's start): an utterance belongs to the clips it overlaps. Its latency
is its arrival time minus the wall time at which its speech ended in the
feed, taken as the moment the feeder sent its clip's last sample (the clips
are cut tight: speech runs to within 0.05-0.2 s of their ends). Printed:
p50/p95/max over all matched utterances (targets p50 <= 1.0 s, p95 <= 2.0 s),
and a "strict" variant in which an utterance that is not its clip's last (the
server split the clip) is counted from the moment the sample at its own end
time was sent, so text held back until the rest of the clip was decoded counts
in full. Also: clips that got no utterance, utterances that match no clip,
the aggregate word error rate of the live transcript, and the server's decode
time per utterance (``--verbose`` lists every utterance).

Then a separate stream of digital silence (60 s, 10 s with ``--quick``) must
yield no utterance; the count is printed. Before the measured feed the server
decodes one short live stream (one card clip), not measured, so one-off
start-up costs (the segmenter's VAD model loading in the server) are excluded.

A full run takes several minutes by construction (real-time feed).
Run: ``python -m benchmarks.live_latency [--quick]``
"""

from __future__ import annotations

import argparse
import bisect
import math
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np

from benchmarks._common import CARDS, RATE, SENSE, cores, load_clip, loadavg, reference
from svwatchd.client import Stream
from svwatchd.client.server import Server
from svwatchd.model.speechdata import Utterance
from tests.normalise import normalise
from tests.svserver import SvServer

BYTES_PER_SECOND = RATE * 2
CHUNK_SECONDS = 0.02
RAW = {"samprate": RATE, "encoding": "SPCM", "sampwidth": 2}
TARGET_P50 = 1.0
TARGET_P95 = 2.0


@dataclass
class Clip:
    """One clip in the feed: its stream times and when its last sample went out."""

    name: str
    start: float
    end: float
    wall_end: float = math.nan


@dataclass
class Piece:
    """A stretch of the feed: a clip's PCM (``clip`` set) or silence."""

    pcm: bytes
    clip: Clip | None = None


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples as 16-bit little-endian PCM."""
    return bytes(np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def silence(seconds: float) -> bytes:
    return b"\0" * (int(seconds * RATE) * 2)


class Feeder:
    """A loopback TCP source sending its pieces at real-time pace, logging send times."""

    def __init__(self, pieces: list[Piece]) -> None:
        self.pieces = pieces
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.offsets: list[float] = []  # stream seconds at the end of each chunk sent ...
        self.walls: list[float] = []  # ... and the monotonic time it was sent
        self.max_lag = 0.0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self.thread.start()
        return self

    @property
    def clips(self) -> list[Clip]:
        return [p.clip for p in self.pieces if p.clip is not None]

    def _serve(self) -> None:
        try:
            self._listener.settimeout(60)
            conn, _ = self._listener.accept()
            with conn:
                chunk = int(CHUNK_SECONDS * RATE) * 2
                sent = 0
                began = time.monotonic()
                for piece in self.pieces:
                    for i in range(0, len(piece.pcm), chunk):
                        data = piece.pcm[i : i + chunk]
                        due = began + (sent + len(data)) / BYTES_PER_SECOND
                        delay = due - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        conn.sendall(data)
                        now = time.monotonic()
                        self.max_lag = max(self.max_lag, now - due)
                        sent += len(data)
                        self.offsets.append(sent / BYTES_PER_SECOND)
                        self.walls.append(now)
                    if piece.clip is not None:
                        piece.clip.wall_end = self.walls[-1]
        except BaseException as exc:
            self.error = exc
        finally:
            self._listener.close()

    def wall_at(self, seconds: float) -> float:
        """When the sample at ``seconds`` (stream time) was sent."""
        i = min(bisect.bisect_left(self.offsets, seconds), len(self.walls) - 1)
        return self.walls[i]


def build_feed(count: int, rng: np.random.Generator) -> list[Piece]:
    """0.5 s silence, ``count`` clips (sense and card interleaved, looped) with 0.8-1.5 s
    of silence after each, then 2 s of silence."""
    order = [name for pair in zip(SENSE, CARDS, strict=True) for name in pair]

    def nth(k: int, _position: float) -> tuple[str, float] | None:
        return (order[k % len(order)], float(rng.uniform(0.8, 1.5))) if k < count else None

    return _feed(nth)


def build_continuous(seconds: float, rng: np.random.Generator) -> list[Piece]:
    """Continuous read speech: the sense clips (LibriVox) one after another in a shuffled
    cycle, each followed by a short pause of 0.1-0.4 s (with the clips' own edges, 0.15-0.6 s
    between sentences, often shorter than the 0.5 s a segment waits for), until
    ``seconds`` of feed; 0.5 s of silence before, 2 s after."""
    order: list[str] = []

    def nth(_k: int, position: float) -> tuple[str, float] | None:
        if position >= seconds:
            return None
        if not order:
            order.extend(str(n) for n in rng.permutation(SENSE))
        return order.pop(), float(rng.uniform(0.1, 0.4))

    return _feed(nth)


def _feed(nth: Callable[[int, float], tuple[str, float] | None]) -> list[Piece]:
    """0.5 s of silence, then clip after clip, each followed by its pause in silence, while
    ``nth(k, position)`` (the k-th clip, the stream time reached) names one and its pause;
    then 2 s of silence. Each clip's place in the stream is recorded."""
    audio: dict[str, bytes] = {}
    pieces = [Piece(silence(0.5))]
    position = 0.5
    k = 0
    while (chosen := nth(k, position)) is not None:
        name, pause = chosen
        if name not in audio:
            audio[name] = pcm16(load_clip(name))
        pcm = audio[name]
        length = len(pcm) / BYTES_PER_SECOND
        pieces.append(Piece(pcm, Clip(name, position, position + length)))
        position += length
        gap = silence(pause)
        pieces.append(Piece(gap))
        position += len(gap) / BYTES_PER_SECOND
        k += 1
    pieces.append(Piece(silence(2.0)))
    return pieces


def run_stream(
    server: Server, pieces: list[Piece]
) -> tuple[Feeder, list[tuple[float, Utterance]], Stream]:
    """Feed one socket stream to the server; return the feeder, (arrival, utterance)s and
    the finished stream."""
    feeder = Feeder(pieces).start()
    stream = Stream(("127.0.0.1", feeder.port), bench="live", **RAW)
    arrivals: list[tuple[float, Utterance]] = []
    errors: list[BaseException] = []

    def listen() -> None:
        try:
            for utt in stream.listen():
                arrivals.append((time.monotonic(), utt))
        except BaseException as exc:
            errors.append(exc)

    server.decodestreams(stream)
    listener = threading.Thread(target=listen, name="listener", daemon=True)
    listener.start()
    feeder.thread.join()
    if feeder.error is not None:
        raise RuntimeError(f"the feeder failed: {feeder.error!r}")
    listener.join(120)
    if listener.is_alive():
        raise RuntimeError("the listener did not finish within 120 s of the feed's end")
    if errors:
        raise RuntimeError(f"the listener failed: {errors[0]!r}")
    stream.refresh()
    if not stream.isdone() or stream.iserror():
        raise RuntimeError(f"stream ended {stream.status}: {stream.error}")
    return feeder, arrivals, stream


@dataclass
class Match:
    """Utterances matched to clips, and two latencies for each matched utterance."""

    latencies: list[float] = field(default_factory=list)  # to its clip's last sample
    strict: list[float] = field(default_factory=list)  # to its own speech end
    unmatched: list[Utterance] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    spanning: int = 0
    texts: dict[int, list[str]] = field(default_factory=dict)


def overlap(u: Utterance, clip: Clip) -> float:
    return min(u.end, clip.end) - max(u.start, clip.start)


def match(feeder: Feeder, arrivals: list[tuple[float, Utterance]]) -> Match:
    """Assign utterances to clips by stream time and compute each one's latencies.

    ``latencies``: arrival minus the moment the clip's last sample was sent (for
    an utterance spanning clips, the last one's). ``strict``: the same for the
    last utterance of a clip; for an earlier one (Whisper or the segmenter split
    the clip), arrival minus the moment the sample at the utterance's own end
    time was sent, so text that waited for the rest of the clip counts in full.
    """
    clips = feeder.clips
    out = Match()
    owners: list[list[int]] = []
    for _, u in arrivals:
        hit = [k for k, c in enumerate(clips) if overlap(u, c) > 0.0]
        if not hit:  # a word's time may sit a little outside the clip: take the nearest
            near = min(range(len(clips)), key=lambda k: -overlap(u, clips[k]))
            hit = [near] if overlap(u, clips[near]) > -0.3 else []
        owners.append(hit)
    last_of_clip: dict[int, int] = {}
    for i, hit in enumerate(owners):
        for k in hit:
            last_of_clip[k] = i  # arrivals come in stream order
    for i, ((arrived, u), hit) in enumerate(zip(arrivals, owners, strict=True)):
        if not hit:
            out.unmatched.append(u)
            continue
        if len(hit) > 1:
            out.spanning += 1
        best = max(hit, key=lambda k: overlap(u, clips[k]))
        out.texts.setdefault(best, []).append(u.text)
        clip = clips[hit[-1]]
        latency = arrived - clip.wall_end
        strict = latency
        if last_of_clip[hit[-1]] != i:
            strict = arrived - feeder.wall_at(min(u.end, clip.end))
        out.latencies.append(latency)
        out.strict.append(strict)
        out.lines.append(
            f"  {u.start:7.2f}-{u.end:7.2f} s, clip {hit[-1]} {clip.name[-8:]} "
            f"({clip.start:.2f}-{clip.end:.2f} s): latency {latency:.2f} s "
            f"(strict {strict:.2f} s)  {u.text!r}"
        )
    return out


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p95 (infinite when there is nothing to measure)."""
    if not values:
        return math.inf, math.inf
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def stats(values: list[float]) -> str:
    if not values:
        return "no values"
    a = np.asarray(values)
    return (
        f"p50 {np.percentile(a, 50):.2f} s, p95 {np.percentile(a, 95):.2f} s, "
        f"max {a.max():.2f} s, min {a.min():.2f} s"
    )


def report(server: Server, pieces: list[Piece], label: str, *, verbose: bool) -> None:
    """Feed ``pieces`` as one socket stream and print what the listener got, and when.

    The latency is counted from the moment the speech an utterance belongs to
    ended (its clip's last sample; for an utterance spanning clips, the last
    one's), the strict variant beside it (see :func:`match`).
    """
    feed_seconds = sum(len(p.pcm) for p in pieces) / BYTES_PER_SECOND
    feeder, arrivals, stream = run_stream(server, pieces)
    result = match(feeder, arrivals)
    clips = feeder.clips
    refs = [reference(c.name) for c in clips]
    missed = sum(1 for k in range(len(clips)) if k not in result.texts)
    st = stream.stats()
    segments = max(1, len(arrivals))
    print(
        f"[{label}] feed: {len(clips)} clips, {feed_seconds:.1f} s at real time in "
        f"{CHUNK_SECONDS * 1000:.0f} ms chunks; feeder at most "
        f"{feeder.max_lag * 1000:.1f} ms behind schedule; load {loadavg()}"
    )
    print(
        f"[{label}] server: {st.get('audio_seconds_received', 0):.1f} s received, decode time "
        f"{st.get('decode_seconds') or 0:.2f} s in all "
        f"(~{(st.get('decode_seconds') or 0) / segments:.2f} s per utterance)"
    )
    whole = float(jiwer.wer(" ".join(refs), " ".join(normalise(u.text) for _, u in arrivals)))
    print(
        f"[{label}] utterances: {len(arrivals)} received, {len(result.latencies)} matched to "
        f"clips, {len(result.unmatched)} outside any clip, {result.spanning} spanning 2+ clips; "
        f"clips without an utterance: {missed} of {len(clips)}; WER {whole:.3f} (whole feed)"
    )
    if verbose:
        print("\n".join(result.lines))
    for u in result.unmatched:
        print(f"  unmatched utterance {u.start:.2f}-{u.end:.2f} s: {u.text!r}")
    p50, p95 = percentiles(result.latencies)
    print(
        f"RESULT [{label}] latency (arrival - when the speech it belongs to ended: its clip's "
        f"last sample), {len(result.latencies)} utterances: {stats(result.latencies)}; "
        f"p50 <= {TARGET_P50} s: {'met' if p50 <= TARGET_P50 else 'MISSED'}, "
        f"p95 <= {TARGET_P95} s: {'met' if p95 <= TARGET_P95 else 'MISSED'}"
    )
    print(
        f"[{label}] strict latency (an utterance that is not its clip's last counted from "
        f"its own end time): {stats(result.strict)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 clips, 20 s, 10 s of silence")
    parser.add_argument(
        "--feed", choices=["both", "separated", "continuous"], default="both", help="which feeds"
    )
    parser.add_argument("--seed", type=int, default=20241)
    parser.add_argument("--verbose", action="store_true", help="print every utterance")
    parser.add_argument("--keep", action="store_true", help="keep svserver's data dir and log")
    args = parser.parse_args(argv)
    count, seconds, quiet = (10, 20.0, 10.0) if args.quick else (100, 90.0, 60.0)
    n = cores()
    print(f"live_latency: quick={args.quick} cores={n} load average at start: {loadavg()}")
    rng = np.random.default_rng(args.seed)
    feeds = []
    if args.feed in ("both", "continuous"):
        feeds.append(("continuous", build_continuous(seconds, rng)))
    if args.feed in ("both", "separated"):
        feeds.append(("separated", build_feed(count, rng)))
    base = Path(tempfile.mkdtemp(prefix="svbench-live-"))
    srv = SvServer(base / "data", engine="whisper", args=["--allow-socket", "127.0.0.1"], workers=n)
    try:
        began = time.monotonic()
        srv.start(timeout=300)
        print(f"svserver ready in {time.monotonic() - began:.1f} s ({n} workers x 1 thread)")
        with Server(srv.url, timeout=60) as server:
            warm = [Piece(silence(0.3)), Piece(pcm16(load_clip("005.wav"))), Piece(silence(1.5))]
            run_stream(server, warm)
            for label, pieces in feeds:
                report(server, pieces, label, verbose=args.verbose)
            _, heard, _ = run_stream(server, [Piece(silence(quiet))])
            for _, u in heard:
                print(f"  utterance on silence {u.start:.2f}-{u.end:.2f} s: {u.text!r}")
            print(
                f"RESULT silence: {quiet:.0f} s of digital silence as a separate stream -> "
                f"{len(heard)} utterances (target 0: {'met' if not heard else 'MISSED'})"
            )
    finally:
        srv.stop()
        if args.keep:
            print(f"kept: {base} (svserver's log: {srv.log})")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(f"live_latency: load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
