"""svserver's database schema: its tables, their version and the forward migrations.

``SCHEMA_VERSION`` and ``MIGRATIONS`` change together: a new schema is a new
forward migration; ``svwatchd._sqlite.migrate`` applies the missing ones on
open and refuses a database written by a newer svserver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqlValue"]

SqlValue: TypeAlias = str | int | float | None
"""A value SQLite stores or returns."""

SCHEMA_VERSION = 5

_STREAMS = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- file | upload | socket
    source TEXT NOT NULL,            -- path as the client named it, or host:port
    path TEXT,                       -- the file the server reads (file, upload)
    host TEXT, port INTEGER,
    filetype TEXT,                   -- WAV | RAW | NULL (socket)
    encoding TEXT NOT NULL, sampwidth INTEGER NOT NULL, samprate INTEGER NOT NULL,
    channels INTEGER NOT NULL, endian TEXT NOT NULL,
    tags TEXT NOT NULL,              -- JSON object
    spec TEXT NOT NULL,              -- canonical JSON of the submission, for idempotency
    status TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    queued REAL NOT NULL,
    started REAL, ended REAL,
    anchor REAL,                     -- wall-clock time (epoch s) of the audio's t=0, if known
    skip_before REAL,                -- resume(fromtime): drop utterances ending before this
    resume_status TEXT,              -- where a PAUSED stream goes on resume
    sourceseconds REAL,
    received_bytes INTEGER NOT NULL DEFAULT 0,  -- socket: bytes spooled
    decoded_bytes INTEGER NOT NULL DEFAULT 0,   -- socket: spooled bytes already decoded
    decoded_seconds REAL NOT NULL DEFAULT 0,
    decode_wall REAL NOT NULL DEFAULT 0,
    queue_wait REAL,
    utterance_count INTEGER NOT NULL DEFAULT 0,  -- committed, not skipped
    word_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS streams_status ON streams(status, seq);
CREATE TABLE IF NOT EXISTS utterances (
    stream_id TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start REAL NOT NULL, end REAL NOT NULL,
    wall_end REAL,                   -- wall-clock time the utterance ended, if known
    text TEXT NOT NULL, confidence REAL NOT NULL, words TEXT NOT NULL,
    skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, idx)
);
CREATE TABLE IF NOT EXISTS params (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_QUEUED_SOCKETS = """
CREATE INDEX IF NOT EXISTS streams_queued_sockets ON streams(seq)
WHERE status='QUEUED' AND kind='socket';
"""

# A column's comment goes before its ALTER: SQLite copies the rest of an ADD COLUMN
# into the table's CREATE text, and a trailing comment would swallow its ")".
_CHANNELS_AND_TRACKS = """
-- split_channels: the channel an utterance came from, and that channel's label
ALTER TABLE utterances ADD COLUMN channel INTEGER;
ALTER TABLE utterances ADD COLUMN speaker TEXT;
-- the language the engine heard, when it said
ALTER TABLE utterances ADD COLUMN language TEXT;
-- a container's audio track decoded, and its language tag
ALTER TABLE streams ADD COLUMN track INTEGER;
ALTER TABLE streams ADD COLUMN track_language TEXT;
-- split_channels: channels decoded apart, and channels that repeated another
ALTER TABLE streams ADD COLUMN channels_decoded INTEGER;
ALTER TABLE streams ADD COLUMN channels_repeated INTEGER
"""

_LANGUAGES = """
-- the language the engine heard the stream in (given or detected), and a detection's probability
ALTER TABLE streams ADD COLUMN heard_language TEXT;
ALTER TABLE streams ADD COLUMN language_probability REAL
"""

_MISMATCH = """
-- an English-only model's check heard another language: which, and how sure it was
ALTER TABLE streams ADD COLUMN language_mismatch TEXT;
ALTER TABLE streams ADD COLUMN mismatch_probability REAL
"""

MIGRATIONS: Mapping[int, str] = {
    1: _STREAMS,
    2: _QUEUED_SOCKETS,  # the scheduler finds queued sockets without reading a file backlog
    3: _CHANNELS_AND_TRACKS,  # containers' tracks, channels decoded apart
    4: _LANGUAGES,  # the language heard
    5: _MISMATCH,  # foreign speech under an English-only model
}
"""``MIGRATIONS[v]`` takes a database from version v-1 to v."""
