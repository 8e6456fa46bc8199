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
dispatcher's counts by type).  This module takes a message as far as its
handler's result; the way out, from the result to framed bytes in order,
and the error budget, are its base's (L{jsonproto.core.output}), and
JSON-RPC 2.0's envelope is a subclass's (L{jsonproto.core.rpcpipeline}).

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

from typing import Any, Callable

from jsonproto.core.budget import BufferBudget
from jsonproto.core.envelope import Straight, _answer, answerStraight, errorReply, readStraight
from jsonproto.core.output import Owed, PipelineOutput
from jsonproto.core.traffic import Traffic
from jsonproto.errors import MESSAGE_TOO_LONG, SERVER_BUSY, SHUTTING_DOWN, RequestError
from jsonproto.limits import Limits
from jsonproto.wire.codec import decodeOrRefuse
from jsonproto.wire.framing import ABANDONED, TOO_LONG, Decoder

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
What a message looks like: jsonproto's own envelope (L{Pipeline}), or
JSON-RPC 2.0 (L{jsonproto.core.rpcpipeline.RPCPipeline}).
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


def _decoded(message: Any, frame: bytes | None) -> Any:
    """
    C{message}, or, where it was read straight into a type and not
    decoded (L{None}), its C{frame} decoded.
    """
    if message is not None:
        return message
    assert frame is not None
    return decodeOrRefuse(frame)


class Pipeline(PipelineOutput):
    """
    One connection's messages, from bytes in to framed replies out, in
    jsonproto's envelope (L{jsonproto.core.envelope}); what becomes of a
    reply is L{PipelineOutput}'s.

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
        """
        PipelineOutput.__init__(self, lengthPrefixed, dispatcher, limits, traffic, now, awaitReply, errorCounts, logMessage)
        # Messages to typed handlers are first offered to readStraight: with
        # the dispatcher's typed handlers as registered by now (one added
        # later is answered the ordinary way, at the ordinary cost).
        self._typedFirst = bool(getattr(dispatcher, "decodesTyped", False))
        self._straight = Straight()
        self.refusing = False
        self._decoder = decoder
        self._closesOnTooLong = lengthPrefixed
        self._handlers = dispatcher.handlers
        self._oneWay = dispatcher.oneWayHandlers
        self._latency = dispatcher.latency
        self._context = context
        self._maxMessageSize = limits.maxMessageSize
        self._maxPending = limits.maxPending
        self._turnBudget = limits.turnBudget
        self._budget = budget
        self.host = host
        self._held = 0

    # Bytes in

    def receive(self, data: bytes) -> bool:
        """
        Take the bytes of one read.  Nothing is answered until L{run}.

        The bytes an unfinished message holds are charged to the budget; a
        message that would overdraw it is abandoned, and answered
        C{"Server busy"} in its place.

        @return: Whether part of a message has arrived and the rest has not
            (L{midMessage}, which L{run} does not change): the adapter times
            such a message on every read, and asking here saves it a call.
        """
        self.traffic.bytesIn += len(data)
        decoder = self._decoder
        decoder.feed(data)
        if self._budget is not None:
            held = decoder.partialBytes
            if held != self._held:
                self._charge(held)
        return decoder.midMessage

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
    def holdsMessages(self) -> bool:
        """
        Whether whole messages have been received and not yet answered:
        the adapter stops reading while they are, so during a drain these
        are messages read before a given moment.
        """
        return not self._stopped and self._decoder.hasFrames

    @property
    def busy(self) -> bool:
        """
        Whether work is under way: messages received and not yet answered,
        or replies owed.  A close waits for it; an idle timeout spares it.
        """
        return bool(self._owed) or self._detached > 0 or self.holdsMessages

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
            straight = self._straight
            if readStraight(self._handlers, self._oneWay, frame, straight):
                if straight.oneWay:
                    value = straight.value
                    straight.value = None
                    self._callOneWay(straight.handler.function, value, straight.messageType, None, frame, False)
                    return
                result = answerStraight(straight, self._latency, self._dispatcher, frame, self._context)
                straight.value = None
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
