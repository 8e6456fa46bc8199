"""
What both clients share: the framings, checking a request, reading a
message from the server, and the errors they raise.
"""

from __future__ import annotations

from typing import Any, Callable

from jsonproto.errors import RequestError
from jsonproto.wire import codec, framing

FRAMINGS: dict[str, tuple[type[framing.Decoder], Callable[[bytes], bytes]]] = {
    "line": (framing.LineDecoder, framing.encodeLine),
    "int32": (framing.Int32Decoder, framing.encodeInt32),
}


class RequestTimedOut(Exception):
    """
    No reply came within the request's timeout.
    """


class ProtocolError(Exception):
    """
    The server sent something that is not a jsonproto message, or a reply
    that cannot be matched to a request.  The connection cannot go on.
    """


class ReplyTooLong(ProtocolError):
    """
    The server sent a message longer than the client's C{maxReplySize}.

    @ivar limit: That size, in bytes.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the server sent a message longer than {limit:,} bytes, this client's maximum reply size"
        )
        self.limit = limit


def checkRequest(message: Any) -> bytes:
    """
    The request encoded, once it is one the server can answer with its
    C{id}.

    @raise ValueError: It is not a dict with a string C{type}, or its
        C{id} is not a string, a number or L{None}.
    """
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("a request is a dict with a string 'type'")
    messageId = message.get("id")
    if isinstance(messageId, (bool, list, dict)):
        raise ValueError("a request's id must be a string, a number or None")
    return codec.encode(message)


def decoderFor(framingName: str, maxReplySize: int) -> tuple[framing.Decoder, Callable[[bytes], bytes]]:
    """
    A decoder for replies of at most C{maxReplySize} bytes, and the
    function that frames a request, for the framing named.

    @raise ValueError: No such framing, or a size that is not a positive
        integer.
    """
    if framingName not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framingName!r}")
    if isinstance(maxReplySize, bool) or not isinstance(maxReplySize, int) or maxReplySize < 1:
        raise ValueError(f"maxReplySize must be a positive number of bytes, not {maxReplySize!r}")
    decoderType, frame = FRAMINGS[framingName]
    return decoderType(maxReplySize), frame


def readMessage(frame: framing.Frame, decoder: framing.Decoder) -> Any:
    """
    One message from the server, decoded.

    @raise ReplyTooLong: It was longer than C{decoder} takes.
    @raise ProtocolError: It is not JSON.
    """
    if not isinstance(frame, bytes):  # TOO_LONG: a client never abandons a frame
        raise ReplyTooLong(decoder.maxLength)
    try:
        return codec.decode(frame)
    except RequestError as e:
        raise ProtocolError(f"the server sent a message that is not JSON ({e})") from None
