"""The ``speechdata`` module of the client library: recognition results and their writers.

The results are the shared model (``svwatchd.model.speechdata``, which svserver
and the daemon use too); this module is where a client program finds them.
"""

from svwatchd.model.speechdata import (
    MAX_CUE_SECONDS,
    MAX_LINE_CHARS,
    Cue,
    Utterance,
    Word,
    format_timestamp,
    from_json,
    make_cues,
    render,
    srt_timestamp,
    to_json,
    to_srt,
    to_text,
    to_vtt,
    vtt_timestamp,
    wrap_cue_text,
)

__all__ = [
    "MAX_CUE_SECONDS",
    "MAX_LINE_CHARS",
    "Cue",
    "Utterance",
    "Word",
    "format_timestamp",
    "from_json",
    "make_cues",
    "render",
    "srt_timestamp",
    "to_json",
    "to_srt",
    "to_text",
    "to_vtt",
    "vtt_timestamp",
    "wrap_cue_text",
]
