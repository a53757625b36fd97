"""The shared domain model: what client, server and daemon all mean by a stream.

The layering is ``client -> model <- server, daemon``: nothing here imports
from the client, the server or the daemon, and nothing here needs numpy or a
decoder, so the daemon's config parsing and the client's validation stay light.

- :mod:`~svwatchd.model.contract`: the limits and patterns of the stream contract.
- :mod:`~svwatchd.model.enums`: ``DecodeStatus``, ``Encoding``, ``Endian``.
- :mod:`~svwatchd.model.format`: ``AudioFormat``.
- :mod:`~svwatchd.model.metadata`: format fields and tags, parsed and matched.
- :mod:`~svwatchd.model.select`: ``FileSelector``, which files in a folder count.
- :mod:`~svwatchd.model.speechdata`: ``Utterance``, ``Word`` and the writers.
"""
