"""
What both clients share: the framings, checking a request, and the errors
they raise.
"""

from __future__ import annotations

from typing import Any, Callable

from jsonproto.wire import codec, framing

FRAMINGS = {
    "line": (framing.LineDecoder, framing.encodeLine),
    "int32": (framing.Int32Decoder, framing.encodeInt32),
}


class RequestTimedOut(Exception):
    """
    No reply came within the request's timeout.
    """


class ProtocolError(Exception):
    """
    The server sent something that is not a jsonproto message.
    """


def checkRequest(message: Any) -> bytes:
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("a request is a dict with a string 'type'")
    messageId = message.get("id")
    if isinstance(messageId, (bool, list, dict)):
        raise ValueError("a request's id must be a string, a number or None")
    return codec.encode(message)


def decoderFor(framingName: str, maxMessageSize: int) -> tuple[framing.Decoder, Callable[[bytes], bytes]]:
    if framingName not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framingName!r}")
    decoderType, frame = FRAMINGS[framingName]
    return decoderType(maxMessageSize), frame
