"""The svwatchd client: Streams, the Server that decodes them, and the results.

from svwatchd.client import Server, Stream

server = Server("localhost")
stream = Stream("call.wav", customer="acme")
server.decodestreams(stream)
"""

from svwatchd.client.speechdata import Utterance, Word
from svwatchd.client.stream import Stream, createdirstreams, createstreams
from svwatchd.enums import DecodeStatus, Encoding, Endian

__all__ = [
    "DecodeStatus",
    "Encoding",
    "Endian",
    "Stream",
    "Utterance",
    "Word",
    "createdirstreams",
    "createstreams",
]
