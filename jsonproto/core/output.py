"""
A pipeline's way out: replies framed in the order of their requests,
whatever order their handlers finish in, and the error budget every error
reply is charged to.

L{PipelineOutput} is the base of L{jsonproto.core.pipeline.Pipeline}, which
decides what each message is answered; this half keeps the places of the
replies owed (L{Owed}), frames each reply as it becomes ready, moves the
ready ones to the output in order (L{PipelineOutput.takeOutput}), and stops
the connection when its client has spent its error budget.  Both envelopes
share it; JSON-RPC's framing of a reply is
L{jsonproto.core.rpcpipeline.RPCPipeline}'s.

Compiled with the rest of the core (C{output.pxd}, L{jsonproto.core.compiled}):
a subclass in another compiled module calls these methods as cheaply as its
own.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from jsonproto.core.envelope import checkPush
from jsonproto.core.traffic import Traffic
from jsonproto.errors import SERVER_SIDE_CODES, TOO_MANY_ERRORS, RequestError
from jsonproto.limits import Limits
from jsonproto.wire.codec import encode
from jsonproto.wire.framing import encodeInt32


class Owed:
    """
    A reply owed to a request whose handler has not finished: its place in
    the order of replies.  C{frame} is L{None} until
    L{PipelineOutput.complete}.  A one-way message's handler still running
    has one too, with no place in the order (C{oneWay}): what it finishes
    with is dropped.
    """

    __slots__ = ("frame", "oneWay", "message", "group", "index", "replies", "missing")

    def __init__(self) -> None:
        self.frame: bytes | None = None
        self.oneWay = False
        # A one-way message, for the log if its handler fails.
        self.message: Any = None
        # A JSON-RPC batch's place holds its replies as they come
        # (C{replies}, C{missing} still to come); each request of it still
        # being answered has an Owed of its own, whose C{group} is the
        # batch's and C{index} its place in it.
        self.group: Owed | None = None
        self.index = 0
        self.replies: list[Any] | None = None
        self.missing = 0


def errorCodeOf(reply: dict[str, Any]) -> str | None:
    """
    The code an error reply is counted and charged under: its C{code}, or
    C{"none"} if it has none that is a string; L{None} for a reply that is
    no error.
    """
    if reply.get("status") != "ERROR":
        return None
    code = reply.get("code")
    return code if type(code) is str else "none"


class PipelineOutput:
    """
    The replies of one connection, from a handler's result to framed bytes
    out, in order.

    @ivar traffic: The connection's counts of messages and bytes.
    @ivar closeReason: Why the connection must close; L{None} until then.
    @ivar closeKind: That reason's category (a metrics label).
    """

    def __init__(
        self, lengthPrefixed: bool, dispatcher: Any, limits: Limits, traffic: Traffic, now: Callable[[], float],
        awaitReply: Callable[[Owed, Any, Any], None], errorCounts: dict[str, int] | None,
        logMessage: Callable[[str, bytes], None] | None,
    ) -> None:
        """
        The parameters are L{jsonproto.core.pipeline.Pipeline}'s of the
        same names.
        """
        self.traffic = traffic
        self.closeReason: str | None = None
        self.closeKind: str | None = None
        self._lengthPrefixed = lengthPrefixed
        self._dispatcher = dispatcher
        self._maxErrors = limits.maxErrors
        self._errorDecay = limits.errorDecay
        self._now = now
        self._awaitReply = awaitReply
        self._errorCounts = errorCounts if errorCounts is not None else {}
        self._logMessage = logMessage
        self._out: list[bytes] = []
        self._outBytes = 0
        # Replies owed, in order (L{Owed}); None while there are none: an
        # empty deque costs 760 bytes, nearly a quarter of an idle
        # connection's memory.
        self._owed: deque[Owed] | None = None
        # One-way handlers still running.
        self._detached = 0
        self._errorCost = 0.0
        self._errorTime = 0.0
        self._errorCode: str | None = None
        self._stopped = False

    # Waiting for replies

    def _wait(self, pending: Any, message: Any) -> None:
        """
        Keep the reply's place until its handler finishes.
        """
        owed = Owed()
        self._owing().append(owed)
        self._awaitReply(owed, pending, message)

    def complete(self, owed: Owed, reply: dict[str, Any] | None) -> None:
        """
        A reply that was waited for is ready: frame it in its place, and
        move every reply now ready at the head of the order to the output.
        (A one-way message's outcome is dropped: see L{_drop}.)
        """
        if owed.oneWay:
            self._detached -= 1
            self._drop(reply, owed.message)
            return
        assert reply is not None
        owed.frame = self._frame(reply)
        self._advance()

    def _advance(self) -> None:
        """
        Move the replies ready at the head of the order to the output, and
        charge the error just framed, if it was one.
        """
        queue = self._owed
        while queue and queue[0].frame is not None:
            frame = queue.popleft().frame
            assert frame is not None
            self._out.append(frame)
            self._outBytes += len(frame)
        if not queue:
            self._owed = None
        if self._errorCode is not None:
            self._errorReplied(self._errorCode)

    def _owing(self) -> deque[Owed]:
        """
        The replies owed, made when the first is.
        """
        if self._owed is None:
            self._owed = deque()
        return self._owed

    def _drop(self, reply: Any, message: Any) -> None:
        """
        The reply to a one-way message, which nobody is sent: an error is
        logged, counted, and charged to the error budget like one sent.
        """
        if type(reply) is not dict:
            return
        code = errorCodeOf(reply)
        if code is None:
            return
        self._dispatcher.oneWayRefused(reply, message)
        self._errorReplied(code)

    # Bytes out

    def _place(self, owed: Owed) -> None:
        """
        Put a framed reply into the output, or behind the replies owed.
        """
        frame = owed.frame
        assert frame is not None
        if self._owed:
            self._owed.append(owed)
        else:
            self._out.append(frame)
            self._outBytes += len(frame)

    def _emit(self, reply: dict[str, Any], message: Any) -> None:
        """
        Encode and frame a reply, into the output or behind replies owed.
        """
        frame = self._frame(reply)
        if self._owed:
            owed = Owed()
            owed.frame = frame
            self._owed.append(owed)
        else:
            self._out.append(frame)
            self._outBytes += len(frame)
        if self._errorCode is not None:
            self._errorReplied(self._errorCode)

    def _frame(self, reply: dict[str, Any]) -> bytes:
        """
        The framed bytes of one reply, counted as a message out; notes the
        reply's error code, if it is an error reply, in C{_errorCode}.
        """
        try:
            encoded = self._encoded(reply)
        except RequestError as e:
            # A handler's reply JSON cannot carry (NaN, a set): the server's
            # mistake, logged by the dispatcher.
            reply = self._dispatcher.unencodable(reply, e)
            encoded = self._encoded(reply)
        self._errorCode = errorCodeOf(reply)
        return self._framed(encoded)

    def _noteError(self, reply: dict[str, Any]) -> int:
        """
        Note the error code of the reply being framed in C{_errorCode}
        (L{None} if it is no error), to be charged once it is placed: for
        a subclass's L{_frame}.
        """
        self._errorCode = errorCodeOf(reply)
        return 0

    def _encoded(self, value: Any) -> bytes:
        """
        C{value} encoded for this connection's framing: over the line
        framing, with its newline, which the codec writes in the same pass.

        @raise RequestError: As L{encode}.
        """
        return encode(value, not self._lengthPrefixed)

    def _framed(self, encoded: bytes) -> bytes:
        """
        A message L{_encoded}, framed and counted as a message out.
        """
        self.traffic.messagesOut += 1
        if self._lengthPrefixed:
            if self._logMessage is not None:
                self._logMessage("was sent", encoded)
            return encodeInt32(encoded)
        if self._logMessage is not None:
            self._logMessage("was sent", encoded[:-1])
        return encoded

    def push(self, message: dict[str, Any]) -> None:
        """
        Frame a message the server sends of its own accord, into the output
        now: it may overtake replies still being computed.

        @raise ValueError: If it carries C{status}, which would make clients
            take it for a reply.
        @raise RequestError: If JSON cannot carry it.
        """
        checkPush(message)
        frame = self._framed(self._encoded(message))
        self._out.append(frame)
        self._outBytes += len(frame)

    def takeOutput(self) -> bytes:
        """
        The framed replies ready to write, in order, as one string (empty if
        none); they are counted as sent.
        """
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._outBytes = 0
        self.traffic.bytesOut += len(data)
        return data

    # The error budget

    def _errorReplied(self, code: str) -> None:
        """
        Count an error reply by its code and charge the client's error
        budget with it, unless the error is the server's own.  Past the
        budget, the connection ends, after telling the client why.
        """
        counts = self._errorCounts
        counts[code] = counts.get(code, 0) + 1
        if not self._maxErrors or code in SERVER_SIDE_CODES or self._stopped:
            return
        now = self._now()
        cost = self._errorCost - (now - self._errorTime) * self._errorDecay
        self._errorCost = (cost if cost > 0.0 else 0.0) + 1.0
        self._errorTime = now
        if self._errorCost > self._maxErrors:
            why = f"more than {self._maxErrors} bad messages, with {self._errorDecay:g} forgiven a second"
            self._stop(why, "too_many_errors")
            self._emit(TOO_MANY_ERRORS.reply(why), None)

    def halt(self) -> None:
        """
        Answer nothing more (the connection is closing for a reason of its
        own); the replies already owed are still produced.
        """
        self._stopped = True

    def _stop(self, reason: str, kind: str) -> None:
        """
        Answer nothing more: the connection closes once its replies are out.
        """
        self._stopped = True
        self.closeReason = reason
        self.closeKind = kind
