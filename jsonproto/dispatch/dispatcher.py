"""
Routing decoded messages to handlers by their C{type}, and turning what a
handler returns (or raises) into a reply.

One L{Dispatcher} serves every framing and every listener of a service; it
knows nothing of bytes or connections beyond the small context a handler is
given.
"""

from __future__ import annotations

import inspect
from bisect import bisect_left
from time import perf_counter
from typing import Any, Awaitable, Callable, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsonproto.core.counters import Tally
from jsonproto.errors import (
    INTERNAL_ERROR,
    ErrorCode,
    INVALID_ID,
    INVALID_TYPE,
    NOT_AN_OBJECT,
    UNKNOWN_TYPE,
    RequestError,
)

Message = dict[str, Any]
Reply = dict[str, Any]
HandlerResult = Union[Reply, "Deferred[Reply]", Awaitable[Reply]]
Handler = Callable[[Message, Any], HandlerResult]
"""
A handler takes the decoded message and the connection's context (see
L{jsonproto.server.connection.ConnectionInfo}) and returns the reply's fields: a
dict, a L{Deferred} firing with one, or (being a coroutine function) an
awaitable of one.  C{"status": "OK"} is put first unless the handler sets a
status of its own.
"""

_HandlerT = TypeVar("_HandlerT", bound=Handler)

log = Logger()


def _withId(reply: Reply, message: Message) -> Reply:
    if "id" in message:
        reply["id"] = message["id"]
    return reply


def _validId(messageId: Any) -> bool:
    return messageId is None or (
        isinstance(messageId, (str, int, float)) and not isinstance(messageId, bool)
    )


def errorReply(error: ErrorCode, message: Any) -> Reply:
    """
    The reply telling the sender of C{message} about C{error}, with the
    message's id when it has a valid one.
    """
    reply = error.reply()
    if isinstance(message, dict) and "id" in message and _validId(message["id"]):
        reply["id"] = message["id"]
    return reply


def _okReply(result: Any, message: Message) -> Reply:
    if not isinstance(result, dict):
        raise TypeError(f"handler returned {type(result).__name__}, not a dict")
    reply: Reply = {"status": "OK"}
    reply.update(result)
    return _withId(reply, message)


UNKNOWN = "(unknown)"
INVALID = "(invalid)"

LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)
"""
Upper bounds, in seconds, of the handler latency histogram's buckets.
"""


class HandlerLatency:
    """
    Messages counted by type, and how long their handlers took, in a
    histogram per type.

    Counting is exact.  Timing every call would cost more than a fast
    handler itself, so synchronous handlers are timed one call in
    L{SAMPLE}; handlers that return a Deferred or are coroutines are timed
    on every call, from their return to their reply.
    """

    SAMPLE = 64

    __slots__ = ("_tallies", "_calls", "errors", "buckets", "sums")

    def __init__(self) -> None:
        # Messages by type, and handler calls, as Tallies the C fast path
        # adds to in place (jsonproto.core.counters).  A type's Tally, once made,
        # is never replaced: the fast path keeps the last one it used.
        self._tallies: dict[str, Tally] = {}
        self._calls = Tally()
        # Requests of each type answered with an error (counted on the error
        # path only; "(unknown)" and "(invalid)" ones all are).
        self.errors: dict[str, int] = {}
        # Per type: bucket counts (the last for +Inf), and the sum.
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    @property
    def counts(self) -> dict[str, int]:
        """
        Messages counted so far, by type: a new dict at each call.
        """
        return {label: tally.n for label, tally in self._tallies.items()}

    @property
    def calls(self) -> int:
        """
        Handler calls so far, which choose the ones timed.
        """
        return self._calls.n

    def count(self, label: str) -> None:
        tally = self._tallies.get(label)
        if tally is None:
            tally = self._tallies[label] = Tally()
        tally.n += 1

    def countCall(self, messageType: str) -> float:
        """
        Count a message of a registered type and the call of its handler.

        @return: The call's start (L{perf_counter}) if it is one to time,
            else 0.0.
        """
        self.count(messageType)
        calls = self._calls
        calls.n += 1
        return perf_counter() if calls.n % self.SAMPLE == 0 else 0.0

    def countError(self, messageType: Any) -> None:
        label = messageType if isinstance(messageType, str) else INVALID
        self.errors[label] = self.errors.get(label, 0) + 1

    def observe(self, messageType: str, seconds: float) -> None:
        buckets = self.buckets.get(messageType)
        if buckets is None:
            buckets = self.buckets[messageType] = [0] * (len(LATENCY_BUCKETS) + 1)
            self.sums[messageType] = 0.0
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sums[messageType] += seconds

    def observeLater(self, result: Any, messageType: str, started: float) -> Any:
        """
        A Deferred callback: observe, and pass the result on.
        """
        self.observe(messageType, perf_counter() - started)
        return result


class Dispatcher:
    """
    A registry of message types and the handlers that answer them.

    Register with L{register}, or with L{handler} as a decorator::

        dispatcher = Dispatcher()

        @dispatcher.handler("PING")
        def ping(message, context):
            return {"pong": True}
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self.latency = HandlerLatency()

    @property
    def counts(self) -> dict[str, int]:
        """
        Messages dispatched, by type; types nobody handles count as
        C{"(unknown)"} and messages with no usable type as C{"(invalid)"},
        so the labels stay as few as the registered types.  A new dict at
        each call: the counts go on in C (L{jsonproto.core.counters}).
        """
        return self.latency.counts

    def register(self, messageType: str, handler: Handler) -> None:
        """
        Answer messages whose C{type} is C{messageType} with C{handler}.

        @raise ValueError: If the type already has a handler: replacing one
            silently would hide a clash between two modules.
        """
        if not isinstance(messageType, str) or not messageType:
            raise ValueError(f"a message type is a non-empty string, not {messageType!r}")
        if messageType in self._handlers:
            raise ValueError(f"message type {messageType!r} already has a handler")
        self._handlers[messageType] = handler

    def handler(self, messageType: str) -> Callable[[_HandlerT], _HandlerT]:
        """
        Decorator form of L{register}; returns the function unchanged.
        """

        def decorate(function: _HandlerT) -> _HandlerT:
            self.register(messageType, function)
            return function

        return decorate

    @property
    def messageTypes(self) -> frozenset[str]:
        """
        The types this dispatcher answers.
        """
        return frozenset(self._handlers)

    def dispatch(self, message: Any, context: Any) -> Reply | Deferred[Reply]:
        """
        Answer one decoded message.

        Never raises, and fails only when cancelled: every problem becomes
        an error reply.  A handler's L{RequestError} is sent as it is; any
        other exception is logged with its traceback and the client is told
        only C{"Internal error"}.  Cancelling the returned L{Deferred}
        cancels the handler's and fails with L{CancelledError}, for the
        canceller to answer.

        @param message: Whatever the codec decoded.
        @param context: Passed to the handler as its second argument.
        @return: The reply, or a L{Deferred} that fires with it when the
            handler is asynchronous.
        """
        latency = self.latency
        if not isinstance(message, dict):
            latency.count(INVALID)
            return NOT_AN_OBJECT.reply()
        if not _validId(message.get("id")):
            latency.count(INVALID)
            return INVALID_ID.reply()
        messageType = message.get("type")
        if not isinstance(messageType, str):
            latency.count(INVALID)
            return _withId(INVALID_TYPE.reply(), message)
        handler = self._handlers.get(messageType)
        if handler is None:
            latency.count(UNKNOWN)
            return _withId(UNKNOWN_TYPE.reply(), message)
        started = latency.countCall(messageType)
        try:
            result = handler(message, context)
        except Exception as e:
            return self.raised(e, message, messageType, started)
        if type(result) is dict:
            return self.returnedDict(result, message, messageType, started)
        return self.returned(result, message, messageType, started)

    def returnedDict(self, result: dict[str, Any], message: Message, messageType: str, started: float) -> Reply:
        """
        Finish a call whose handler returned a plain C{dict}, the common
        case, without the checks in L{returned}: the C{OK} reply.

        Public for L{jsonproto.core.fastpath}, which calls handlers itself.

        @param started: When the handler was called, or C{0.0} when this call
            is not one of the sampled ones.
        """
        if started:
            self.latency.observe(messageType, perf_counter() - started)
        reply: Reply = {"status": "OK"}
        reply.update(result)
        return _withId(reply, message)

    def returned(self, result: Any, message: Message, messageType: str, started: float) -> Reply | Deferred[Reply]:
        """
        Finish a call whose handler returned something other than a plain
        C{dict}: a L{Deferred}, an awaitable, a dict subclass, or a mistake.

        Public for L{jsonproto.core.fastpath}, which calls handlers itself and
        hands over only these rarer results.

        @param started: When the handler was called, or C{0.0} when this call
            is not one of the sampled ones.
        """
        latency = self.latency
        try:
            if inspect.isawaitable(result) and not isinstance(result, Deferred):
                result = ensureDeferred(result)
            if isinstance(result, Deferred):
                return result.addBoth(latency.observeLater, messageType, started or perf_counter()).addCallback(
                    _okReply, message
                ).addErrback(self._failed, message)
            if started:
                latency.observe(messageType, perf_counter() - started)
            return _okReply(result, message)
        except Exception as e:
            return self.raised(e, message, messageType, started)

    def raised(self, error: Exception, message: Message, messageType: str, started: float) -> Reply:
        """
        Finish a call whose handler raised C{error}: a L{RequestError} is the
        client's to see, anything else is logged and becomes C{"Internal
        error"}.
        """
        if isinstance(error, RequestError):
            if started:
                self.latency.observe(messageType, perf_counter() - started)
            self.latency.countError(messageType)
            return _withId(error.reply(), message)
        failure = Failure(error, type(error), error.__traceback__)
        if failure.check(CancelledError):
            # Raised by the handler itself, not a cancellation of ours: a bug.
            self.latency.countError(messageType)
            return self._internalError(failure, message)
        reply = self._failed(failure, message)
        assert isinstance(reply, dict)
        return reply

    def _failed(self, failure: Failure, message: Message) -> Reply | Failure:
        if failure.check(CancelledError):
            # Whoever cancelled (a request timeout) says what to reply.
            return failure
        self.latency.countError(message.get("type"))
        if failure.check(RequestError):
            return _withId(failure.value.reply(), message)
        return self._internalError(failure, message)

    def _internalError(self, failure: Failure, message: Message) -> Reply:
        """
        A handler's bug: log it, and tell the client only C{"Internal
        error"}.
        """
        log.failure("handler for message type {messageType!r} failed", failure, messageType=message.get("type"))
        return _withId(INTERNAL_ERROR.reply(), message)
