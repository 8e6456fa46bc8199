"""
Telling replies from pushes and handing each reply to its request: the rule
both clients follow, kept apart from their I/O.

A message from the server is a reply if and only if it carries C{status}.
The server answers requests one for one in the order they came, so the
next reply answers the oldest request still waiting, unless it carries an
C{id} that names a request.  A request the caller gave up on (timed out,
cancelled) keeps its place until its late reply arrives, which is then
dropped: it can never be taken for the reply to a later request.

Two replies answer no request: C{too_many_errors}, sent after the reply to
the bad message that exhausted the error budget, and C{server_busy} or
C{too_many_connections}, sent on connecting to a server that will not take
the connection.  The server closes the connection after each, so the
clients treat them, and any reply that arrives when no request is waiting,
as the reason the connection ends.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any

from jsonproto.client.common import ProtocolError

CLOSING_CODES = frozenset({"too_many_errors", "too_many_connections"})
"""
Error codes the server sends only as its last message on a connection.
"""


class Route(enum.Enum):
    """
    What a message from the server is, for the client that received it.
    """

    PUSH = "push"
    """
    Not a reply: a message the server pushed (it has no C{status}).
    """
    REPLY = "reply"
    """
    The reply to a request still waiting for it.
    """
    LATE = "late"
    """
    The reply to a request given up on: drop it.
    """
    CLOSING = "closing"
    """
    The server's last word before it closes the connection.
    """


class Pending:
    """
    A request sent and not yet answered.

    @ivar hasId: Whether the request carried an C{id}.
    @ivar id: Its C{id}, if it had one.
    @ivar abandoned: The caller gave up waiting: its reply, when it comes,
        is dropped.
    @ivar reply: The reply, once it has come.
    """

    __slots__ = ("hasId", "id", "abandoned", "reply")

    def __init__(self, message: dict[str, Any]) -> None:
        self.hasId = "id" in message
        self.id = message.get("id")
        self.abandoned = False
        self.reply: dict[str, Any] | None = None


class ReplyMatcher:
    """
    The requests of one connection still waiting for replies, in the order
    they were sent.
    """

    def __init__(self) -> None:
        self._waiting: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, pending: Pending) -> None:
        """
        A request has been sent: its reply will come after those of the
        requests sent before it.
        """
        self._waiting.append(pending)

    def drain(self) -> list[Pending]:
        """
        Every request still waiting, in order, now that none will be
        answered (the connection has ended).
        """
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting

    def route(self, message: Any) -> tuple[Route, Pending | None]:
        """
        Say what C{message} is and, for a reply, which request it answers
        (that request leaves the waiting list, its C{reply} set).

        @raise ProtocolError: The reply carries an C{id} no waiting request
            has: the server answered out of turn, and no reply after it
            can be trusted to match.
        """
        if not isinstance(message, dict) or "status" not in message:
            return Route.PUSH, None
        if not self._waiting or (message.get("code") in CLOSING_CODES and "id" not in message):
            return Route.CLOSING, None
        pending = self._take(message)
        pending.reply = message
        return (Route.LATE if pending.abandoned else Route.REPLY), pending

    def _take(self, reply: dict[str, Any]) -> Pending:
        if "id" not in reply:
            return self._waiting.popleft()
        for pending in self._waiting:
            if pending.hasId and _sameId(pending.id, reply["id"]):
                self._waiting.remove(pending)
                return pending
        raise ProtocolError(f"the server sent a reply with id {reply['id']!r}, which no request waiting for a reply has")


def _sameId(sent: Any, received: Any) -> bool:
    """
    Whether a reply's C{id} is the request's: JSON has one number type, so
    C{1} and C{1.0} are one id, but C{true} is not C{1}.
    """
    if isinstance(sent, bool) or isinstance(received, bool):
        return sent is received
    if isinstance(sent, (int, float)) and isinstance(received, (int, float)):
        return sent == received
    return type(sent) is type(received) and sent == received


def describeClosing(message: dict[str, Any]) -> str:
    """
    The server's last message, for the error that says why the connection
    ended: C{Too many errors (more than 100 bad messages, with 10 forgiven a second)}.
    """
    text = str(message.get("message") or message.get("code") or message.get("status"))
    detail = message.get("detail")
    return f"{text} ({detail})" if detail else text
