"""
One connection's message pipeline, without I/O: the specification of how
jsonproto answers a connection.

Bytes the peer sent go in (L{Pipeline.receive}); framed replies come out
(L{Pipeline.takeOutput}), in the order of the requests, whatever order
their handlers finish in.  In between, every rule a message is held to:

    bytes -> frames -> strict JSON -> the envelope (an object, a string
    C{type}, a valid C{id}) -> the handler -> the reply -> encoded, framed

with the limits a connection answers to (message size, requests in flight,
the error budget, the work done in one turn, the shared budget for
unfinished messages) and the counters it keeps (L{Traffic}, and the
dispatcher's counts by type).

Nothing here knows of Twisted, sockets or timers.  The protocol adapter
(L{jsonproto.server.protocol}) feeds the pipeline, writes what it produces,
waits for replies still being computed (L{Pipeline.complete}), and acts on
what L{Pipeline.run} returns: L{IDLE}, L{FLUSH}, L{YIELD}, L{BLOCKED} or
L{CLOSE}.

Where a C compiler was at hand at install, this module is also compiled by
Cython, as it is (C{pipeline.pxd} gives it C types): the compiled core is
this source, and L{jsonproto.core.compiled} says which one a process runs.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from jsonproto.core.budget import BufferBudget
from jsonproto.core import jsonrpc
from jsonproto.core.envelope import Straight, _answer, answerStraight, checkPush, errorReply, readStraight
from jsonproto.core.traffic import Traffic
from jsonproto.dispatch.latency import UNKNOWN
from jsonproto.errors import (
    MESSAGE_TOO_LONG,
    UNKNOWN_TYPE,
    SERVER_BUSY,
    SERVER_SIDE_CODES,
    SHUTTING_DOWN,
    TOO_MANY_ERRORS,
    RequestError,
)
from jsonproto.limits import Limits
from jsonproto.wire.codec import decodeOrRefuse, encode
from jsonproto.wire.framing import ABANDONED, TOO_LONG, Decoder, encodeInt32

IDLE = 0
"""
L{Pipeline.run}: every complete message is handled; wait for more bytes.
"""

FLUSH = 1
"""
L{Pipeline.run}: the output has grown past L{BATCH_BYTES}: write it, then
run again (unless writing it paused the connection).
"""

YIELD = 2
"""
L{Pipeline.run}: this turn's share of work (C{Limits.turnBudget}) is spent:
let the other connections have theirs, and run again on the next turn.
"""

BLOCKED = 3
"""
L{Pipeline.run}: C{Limits.maxPending} requests are being answered: run again
once L{Pipeline.complete} has brought the count under the limit.
"""

CLOSE = 4
"""
L{Pipeline.run}: the connection must close, for L{Pipeline.closeReason},
once the replies it is owed are written.
"""

ENVELOPES = ("jsonproto", "jsonrpc")
"""
What a message looks like: jsonproto's own envelope, or JSON-RPC 2.0.
"""

BATCH_BYTES = 64 * 1024
"""
Replies are gathered into one write up to this many bytes; past it they go
out at once, so that a full transport can pause the connection before the
rest of a read is handled.
"""

TIME_CHECK_EVERY = 8
"""
Messages between two looks at the clock for L{YIELD}: a look costs about as
much as a small message.
"""

# C integers in the compiled module.
_BATCH_BYTES = BATCH_BYTES
_TIME_CHECK_EVERY = TIME_CHECK_EVERY


class Owed:
    """
    A reply owed to a request whose handler has not finished: its place in
    the order of replies.  C{frame} is L{None} until L{Pipeline.complete}.
    A one-way message's handler still running has one too, with no place
    in the order (C{oneWay}): what it finishes with is dropped.
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


def _decoded(message: Any, frame: bytes | None) -> Any:
    """
    C{message}, or, where it was read straight into a type and not
    decoded (L{None}), its C{frame} decoded.
    """
    if message is not None:
        return message
    assert frame is not None
    return decodeOrRefuse(frame)


class Pipeline:
    """
    One connection's messages, from bytes in to framed replies out.

    @ivar traffic: The connection's counts of messages and bytes.
    @ivar refusing: Set while the service drains: messages read from now on
        are answered C{"Shutting down"}.
    @ivar closeReason: Why the connection must close, once L{run} has
        returned L{CLOSE}; L{None} until then.
    @ivar closeKind: That reason's category (a metrics label).
    """

    def __init__(
        self,
        decoder: Decoder,
        lengthPrefixed: bool,
        dispatcher: Any,
        limits: Limits,
        context: Any,
        traffic: Traffic,
        *,
        now: Callable[[], float],
        awaitReply: Callable[[Owed, Any, Any], None],
        errorCounts: dict[str, int] | None = None,
        budget: BufferBudget | None = None,
        host: str | None = None,
        logMessage: Callable[[str, bytes], None] | None = None,
        envelope: str = "jsonproto",
    ) -> None:
        """
        @param decoder: Cuts the byte stream into messages (the framing).
        @param lengthPrefixed: Whether replies are framed with a 4-byte
            length (else a newline after each).
        @param dispatcher: Answers messages (L{answer} says what of it is
            used).
        @param context: Every handler's second argument.
        @param now: The current time in seconds (the reactor's): for the
            error budget's decay, and to measure a turn's work against
            C{Limits.turnBudget}.
        @param awaitReply: Called with the place (L{Owed}), the handler's
            pending result and the message, whenever a reply must be waited
            for; the caller later hands the reply to L{complete}.
        @param errorCounts: Error replies by code, shared by the service.
        @param budget: The service's budget for unfinished messages.
        @param host: The client's address, which the budget counts by.
        @param logMessage: Called with C{"sent"} or C{"was sent"} and each
            message in and out, when messages are logged.
        @param envelope: C{"jsonproto"}, or C{"jsonrpc"} for JSON-RPC 2.0
            (L{jsonproto.core.jsonrpc}).
        """
        if envelope not in ENVELOPES:
            raise ValueError(f"envelope must be one of {', '.join(ENVELOPES)}, not {envelope!r}")
        self._rpc = envelope == "jsonrpc"
        # Messages to typed handlers are first offered to readStraight: with
        # the dispatcher's typed handlers as registered by now (one added
        # later is answered the ordinary way, at the ordinary cost).
        self._typedFirst = not self._rpc and bool(getattr(dispatcher, "decodesTyped", False))
        self.traffic = traffic
        self.refusing = False
        self.closeReason: str | None = None
        self.closeKind: str | None = None
        self._decoder = decoder
        self._lengthPrefixed = lengthPrefixed
        self._closesOnTooLong = lengthPrefixed
        self._dispatcher = dispatcher
        self._handlers = dispatcher.handlers
        self._oneWay = dispatcher.oneWayHandlers
        self._latency = dispatcher.latency
        self._context = context
        self._maxMessageSize = limits.maxMessageSize
        self._maxPending = limits.maxPending
        self._maxErrors = limits.maxErrors
        self._errorDecay = limits.errorDecay
        self._turnBudget = limits.turnBudget
        self._now = now
        self._awaitReply = awaitReply
        self._errorCounts = errorCounts if errorCounts is not None else {}
        self._budget = budget
        self.host = host
        self._held = 0
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

    # Bytes in

    def receive(self, data: bytes) -> None:
        """
        Take the bytes of one read.  Nothing is answered until L{run}.

        The bytes an unfinished message holds are charged to the budget; a
        message that would overdraw it is abandoned, and answered
        C{"Server busy"} in its place.
        """
        self.traffic.bytesIn += len(data)
        decoder = self._decoder
        decoder.feed(data)
        if self._budget is not None:
            held = decoder.partialBytes
            if held != self._held:
                self._charge(held)

    def _charge(self, held: int) -> None:
        budget = self._budget
        assert budget is not None
        grown = held - self._held
        if grown <= 0:
            budget.give(self.host, -grown)
            self._held = held
        elif budget.take(self.host, grown):
            self._held = held
        else:
            # Nothing of it stays: give back what the message held so far.
            budget.give(self.host, self._held)
            self._held = 0
            self._decoder.abandon()

    def release(self) -> None:
        """
        The connection has ended: give back the budget its unfinished
        message held.
        """
        if self._budget is not None and self._held:
            self._budget.give(self.host, self._held)
        self._held = 0

    @property
    def bufferedBytes(self) -> int:
        """
        Bytes received and not yet answered: an unfinished message, and
        complete ones waiting their turn.
        """
        return self._decoder.bufferedBytes

    @property
    def midMessage(self) -> bool:
        """
        Whether part of a message has arrived and the rest has not.
        """
        return self._decoder.midMessage

    @property
    def busy(self) -> bool:
        """
        Whether work is under way: messages received and not yet answered,
        or replies owed.  A close waits for it; an idle timeout spares it.
        """
        return bool(self._owed) or self._detached > 0 or (not self._stopped and self._decoder.hasFrames)

    @property
    def owes(self) -> bool:
        """
        Whether replies are owed that are not in the output yet: requests
        still being answered, or replies waiting behind them.
        """
        return bool(self._owed)

    @property
    def owed(self) -> int:
        """
        Replies owed that are not in the output yet: requests being answered
        now, and replies waiting behind them.  L{run} answers nothing more
        while C{Limits.maxPending} are.
        """
        return self._owedCount()

    def _owedCount(self) -> int:
        return len(self._owed) if self._owed is not None else 0

    # Answering

    def run(self) -> int:
        """
        Answer the complete messages received, in order, until there are
        none left or the connection must wait.

        @return: L{IDLE}, L{FLUSH}, L{YIELD}, L{BLOCKED} or L{CLOSE}.
        """
        if self._stopped:
            return CLOSE
        decoder = self._decoder
        traffic = self.traffic
        handled = 0
        turnStarted = 0.0
        while True:
            if self._owedCount() + self._detached >= self._maxPending:
                return BLOCKED
            if self._outBytes >= _BATCH_BYTES:
                return FLUSH
            frame = decoder.nextFrame()
            if frame is None:
                return IDLE
            traffic.messagesIn += 1
            if type(frame) is bytes:
                self._answerFrame(frame)
            else:
                self._refuseFrame(frame)
            if self._stopped:
                return CLOSE
            handled += 1
            if handled % _TIME_CHECK_EVERY == 0 and self._turnBudget:
                if turnStarted == 0.0:
                    turnStarted = self._now()
                elif self._now() - turnStarted >= self._turnBudget:
                    return YIELD

    def _answerFrame(self, frame: bytes) -> None:
        if self._logMessage is not None:
            self._logMessage("sent", frame)
        if self._typedFirst and not self.refusing:
            straight = readStraight(self._handlers, self._oneWay, frame)
            if straight is not None:
                if straight.oneWay:
                    self._callOneWay(straight.handler.function, straight.value, straight.messageType, None, frame, False)
                    return
                result = answerStraight(straight, self._latency, self._dispatcher, frame, self._context)
                if type(result) is dict:
                    self._emit(result, None)
                else:
                    self._wait(result, decodeOrRefuse(frame))
                return
        message = decodeOrRefuse(frame)
        if type(message) is RequestError:
            self._emit(message.reply(), None)
            return
        if self.refusing:
            self._emit(errorReply(SHUTTING_DOWN, message), message)
            return
        if self._rpc:
            if type(message) is list:
                self._answerBatch(message)
            else:
                self._answerRPC(message, None)
            return
        if self._oneWay and type(message) is dict:
            handler = self._oneWay.get(message.get("type"))
            if handler is not None:
                self._answerOneWay(handler, message)
                return
        result = _answer(self._handlers, self._latency, self._dispatcher, message, self._context)
        if type(result) is dict:
            self._emit(result, message)
        else:
            self._wait(result, message)

    def _answerRPC(self, value: Any, group: Owed | None) -> Any:
        """
        Answer one JSON-RPC request: into the output (or its batch, when
        C{group} is one), or nothing for a notification.

        @return: The reply, if it is ready and belongs to a batch; L{None}
            for a notification; else what the caller waits for.
        """
        message, rpcId, notification = jsonrpc.request(value)
        if notification:
            if "status" in message:
                self._drop(message, value)
                return None
            handler = self._handlers.get(message["type"]) or self._oneWay.get(message["type"])
            if handler is None:
                self._latency.count(UNKNOWN)
                self._drop(UNKNOWN_TYPE.reply(), message)
            else:
                self._answerOneWay(handler, message)
            return None
        if "status" in message:
            result: Any = message
            if rpcId is not None:
                result["id"] = rpcId
        elif self._oneWay and message["type"] in self._oneWay:
            # The specification wants every request answered: a one-way
            # method gets an empty result, or the error it was refused with.
            result = self._answerOneWay(self._oneWay[message["type"]], message, True)
            if result is None:
                result = {"status": "OK"}
            result["id"] = rpcId
        else:
            result = _answer(self._handlers, self._latency, self._dispatcher, message, self._context)
        if group is not None:
            return result
        if type(result) is dict:
            self._emit(result, message)
        else:
            self._wait(result, message)
        return None

    def _answerBatch(self, batch: list[Any]) -> None:
        """
        Answer a JSON-RPC batch with one array of responses, in the order
        of its requests (notifications, which get none, left out), once all
        are ready; an empty batch is one Invalid Request.
        """
        if not batch:
            self._emit(jsonrpc.INVALID_RPC.reply("an empty batch"), None)
            return
        group = Owed()
        group.replies = []
        waiting = []
        for value in batch:
            result = self._answerRPC(value, group)
            if result is None:
                continue
            if type(result) is not dict:
                waiting.append((len(group.replies), result, value))
            group.replies.append(result)
        if not group.replies:
            return
        if not waiting:
            group.frame = self._frameBatch(group.replies)
            self._place(group)
            return
        group.missing = len(waiting)
        self._owing().append(group)
        for index, pending, message in waiting:
            member = Owed()
            member.group = group
            member.index = index
            self._detached += 1
            self._awaitReply(member, pending, message)

    def _answerOneWay(self, handler: Any, message: dict[str, Any], answered: bool = False) -> Any:
        """
        Call a one-way message's handler, and send nothing: what it returns
        is dropped, and an error is logged and counted instead of sent.

        @param answered: Whether the caller answers the message all the
            same (a JSON-RPC call with an C{id}): then an error known at once
            (the message refused, the handler raising) is returned for it to
            send, rather than dropped.
        @return: That error reply, or L{None}.
        """
        return self._callOneWay(handler, message, message["type"], message, None, answered)

    def _callOneWay(
        self, call: Any, argument: Any, messageType: str, message: Any, frame: bytes | None, answered: bool
    ) -> Any:
        """
        L{_answerOneWay}, calling C{call} with C{argument}: the decoded
        C{message}, or a value read straight into the handler's type
        (L{readStraight}) from C{frame}, with C{message} L{None}; the
        message is then decoded only if an error or an outcome still to
        come needs it.
        """
        started = self._latency.countCall(messageType)
        try:
            result = call(argument, self._context)
        except Exception as e:
            message = _decoded(message, frame)
            refused = self._dispatcher.raised(e, message, messageType, started)
            if answered:
                return refused
            self._drop(refused, message)
            return None
        if result is not None and type(result) is not dict:
            message = _decoded(message, frame)
        # (A plain outcome, None or a dict, needs no message.)
        outcome = self._dispatcher.returnedOneWay(result, message, messageType, started)
        if outcome is None:
            return None
        message = _decoded(message, frame)
        if type(outcome) is dict:
            if answered and outcome.get("status") == "ERROR":
                return outcome
            self._drop(outcome, message)
            return None
        owed = Owed()
        owed.oneWay = True
        owed.message = message
        self._detached += 1
        self._awaitReply(owed, outcome, message)
        return None

    def _drop(self, reply: Any, message: Any) -> None:
        """
        The reply to a one-way message, which nobody is sent: an error is
        logged, counted, and charged to the error budget like one sent.
        """
        if type(reply) is not dict or reply.get("status") != "ERROR":
            return
        self._dispatcher.oneWayRefused(reply, message)
        code = reply.get("code")
        self._errorReplied(code if type(code) is str else "none")

    def _refuseFrame(self, frame: Any) -> None:
        """
        Answer a message the decoder could not hand out whole: too long, or
        abandoned for the budget.  Over the length-prefixed framing the
        stream has lost its frame boundaries, so the connection ends.
        """
        if frame is TOO_LONG:
            self._emit(MESSAGE_TOO_LONG.reply(), None)
            if self._closesOnTooLong and not self._stopped:
                self._stop(
                    f"message longer than {self._maxMessageSize} bytes; the stream cannot be resynchronised",
                    "message_too_long",
                )
        else:
            assert frame is ABANDONED
            self._emit(SERVER_BUSY.reply("the server's memory for unfinished messages is spent"), None)
            if self._closesOnTooLong and not self._stopped:
                self._stop("a message could not be held: the buffer budget is spent", "buffer_budget")

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
        group = owed.group
        if group is not None:
            # One request of a batch: the batch's frame once it is whole.
            self._detached -= 1
            assert group.replies is not None
            group.replies[owed.index] = reply
            group.missing -= 1
            if group.missing:
                return
            group.frame = self._frameBatch(group.replies)
            self._errorCode = None
        else:
            owed.frame = self._frame(reply)
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

    def _frameBatch(self, replies: list[Any]) -> bytes:
        """
        The framed JSON-RPC array answering a batch, counted as one message
        out; each error among its replies is counted and charged.
        """
        payload = encode([jsonrpc.response(reply, reply.get("id")) for reply in replies])
        self.traffic.messagesOut += 1
        if self._logMessage is not None:
            self._logMessage("was sent", payload)
        for reply in replies:
            if reply.get("status") == "ERROR":
                code = reply.get("code")
                self._errorReplied(code if type(code) is str else "none")
        return encodeInt32(payload) if self._lengthPrefixed else payload + b"\n"

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
            payload = encode(jsonrpc.response(reply, reply.get("id")) if self._rpc else reply)
        except RequestError as e:
            # A handler's reply JSON cannot carry (NaN, a set): the server's
            # mistake, logged by the dispatcher.
            reply = self._dispatcher.unencodable(reply, e)
            payload = encode(jsonrpc.response(reply, reply.get("id")) if self._rpc else reply)
        self.traffic.messagesOut += 1
        if self._logMessage is not None:
            self._logMessage("was sent", payload)
        if reply.get("status") == "ERROR":
            code = reply.get("code")
            self._errorCode = code if type(code) is str else "none"
        else:
            self._errorCode = None
        if self._lengthPrefixed:
            return encodeInt32(payload)
        return payload + b"\n"

    def push(self, message: dict[str, Any]) -> None:
        """
        Frame a message the server sends of its own accord, into the output
        now: it may overtake replies still being computed.

        @raise ValueError: If it carries C{status}, which would make clients
            take it for a reply.
        @raise RequestError: If JSON cannot carry it.
        """
        checkPush(message)
        payload = encode(message)
        self.traffic.messagesOut += 1
        if self._logMessage is not None:
            self._logMessage("was sent", payload)
        frame = encodeInt32(payload) if self._lengthPrefixed else payload + b"\n"
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
