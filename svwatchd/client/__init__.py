"""The svwatchd client: Streams, the Server that decodes them, and the results.

    from svwatchd.client import Server, Stream

    server = Server("localhost")
    stream = Stream("call.wav", customer="acme")
    server.decodestreams(stream)

The vendor's three modules are here by name: ``svwatchd.client.stream``,
``svwatchd.client.server`` and ``svwatchd.client.speechdata``.
"""

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream, createdirstreams, createstreams
from svwatchd.model.enums import DecodeStatus, Encoding, Endian
from svwatchd.model.speechdata import Utterance, Word

__all__ = [
    "DecodeStatus",
    "Encoding",
    "Endian",
    "Server",
    "Stream",
    "Utterance",
    "Word",
    "createdirstreams",
    "createstreams",
]
