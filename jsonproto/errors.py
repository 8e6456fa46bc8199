"""
The errors a client can be told about, each with a stable machine-readable code.

Every error reply on the wire is built from one L{ErrorCode}: the human
message (the seed's wording where the seed had one, so its clients see the
same text) and a C{code} that programs can match without parsing English.
Handlers raise L{RequestError} to send one of these, or one of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    """
    One kind of error reply.

    @ivar code: The stable identifier sent as C{"code"}; never changes once
        released, so clients may branch on it.
    @ivar message: The human sentence sent as C{"message"}.
    """

    code: str
    message: str

    def reply(self, detail: str | None = None) -> dict[str, Any]:
        """
        The reply object for this error, C{status} first as the seed's replies
        have it.

        @param detail: What exactly was wrong, for a person reading the reply;
            sent as C{"detail"}.  The C{message} stays the same for every
            error of a kind, so clients matching on it keep working.
        """
        reply: dict[str, Any] = {"status": "ERROR", "message": self.message, "code": self.code}
        if detail is not None:
            reply["detail"] = detail
        return reply


# The seed's four replies keep the seed's messages exactly.
INVALID_JSON = ErrorCode("invalid_json", "Invalid JSON")
UNKNOWN_TYPE = ErrorCode("unknown_type", "Unknown type")

# Input that parses but cannot be a request.
NOT_AN_OBJECT = ErrorCode("not_an_object", "Message must be a JSON object")
INVALID_TYPE = ErrorCode("invalid_type", "Message needs a string type")
INVALID_ID = ErrorCode("invalid_id", "The id must be a string, a number or null")
NUMBER_OUT_OF_RANGE = ErrorCode("number_out_of_range", "Number out of range")
NESTING_TOO_DEEP = ErrorCode("nesting_too_deep", "Nesting too deep")
INVALID_FIELD = ErrorCode("invalid_field", "Invalid field")

# Limits a client ran into.
MESSAGE_TOO_LONG = ErrorCode("message_too_long", "Message too long")
TOO_MANY_ERRORS = ErrorCode("too_many_errors", "Too many errors")
TOO_MANY_CONNECTIONS = ErrorCode("too_many_connections", "Too many connections from your address")

# The server's side: not the client's fault, and not counted against it.
SERVER_BUSY = ErrorCode("server_busy", "Server busy")
SHUTTING_DOWN = ErrorCode("shutting_down", "Shutting down")
REQUEST_TIMED_OUT = ErrorCode("request_timed_out", "Request timed out")
INTERNAL_ERROR = ErrorCode("internal_error", "Internal error")

SERVER_SIDE_CODES = frozenset(
    e.code for e in (SERVER_BUSY, SHUTTING_DOWN, REQUEST_TIMED_OUT, INTERNAL_ERROR)
)
"""
Error codes that say nothing about the client's messages; a run of them
does not use up the client's error budget.
"""


class RequestError(Exception):
    """
    Raised by a handler (or by the codec) to answer one request with an error
    reply; the connection goes on.

    @ivar error: What kind of error it is.
    @ivar detail: What exactly was wrong, or L{None}.
    """

    def __init__(self, error: ErrorCode, detail: str | None = None) -> None:
        self.error = error
        self.detail = detail
        super().__init__(error.message if detail is None else f"{error.message}: {detail}")

    def reply(self) -> dict[str, Any]:
        """
        The error reply object, C{status} first.
        """
        return self.error.reply(self.detail)
