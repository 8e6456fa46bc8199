"""
The rarer outcomes of a handler's call, made replies: a L{Deferred} or an
awaitable to wait for, a typed value, an exception (the client's to see, or
a bug to log), a reply JSON cannot carry, and a one-way message that gets
no reply (its refusals logged, at most once a second a type).

The pipeline finishes the common case, a handler returning a plain C{dict},
itself (L{jsonproto.core.envelope.answer}); for the rest it calls these,
through its dispatcher (L{jsonproto.dispatch.dispatcher.Dispatcher}).
"""

from __future__ import annotations

import inspect
from time import perf_counter
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsonproto.dispatch import awaiting, typed
from jsonproto.dispatch.latency import HandlerLatency
from jsonproto.errors import INTERNAL_ERROR, NUMBER_OUT_OF_RANGE, RequestError

Message = dict[str, Any]
Reply = dict[str, Any]

# The dispatcher's namespace, as it always was in the log: what operators
# filter on does not move with the code.
log = Logger(namespace="jsonproto.dispatch.dispatcher")


def withId(reply: Reply, message: Message) -> Reply:
    """
    C{reply}, with the request's C{id} if it had one.
    """
    if "id" in message:
        reply["id"] = message["id"]
    return reply


def _dropped(result: Any) -> None:
    """
    A one-way handler's result: nobody is sent it.
    """
    return None


def okReply(result: Any, message: Message) -> Reply:
    """
    The reply to C{message} from what its handler returned: a C{dict}, or
    a typed value (L{jsonproto.dispatch.typed.replyFields}).
    """
    if not isinstance(result, dict):
        result = typed.replyFields(result)
    reply: Reply = {"status": "OK"}
    reply.update(result)
    return withId(reply, message)


class Outcomes:
    """
    Finishing the calls of one dispatcher's handlers.

    @param latency: The dispatcher's counts and timings, which each
        outcome is counted in.
    """

    def __init__(self, latency: HandlerLatency) -> None:
        self._latency = latency
        # One-way messages refused, logged at most once a second per type.
        self._refusalsLogged: dict[str, float] = {}
        self._refusalsQuiet: dict[str, int] = {}

    def returned(self, result: Any, message: Message, messageType: str, started: float) -> Reply | Deferred[Reply]:
        """
        Finish a call whose handler returned something other than a plain
        C{dict}: a L{Deferred}, an awaitable, a dict subclass, or a mistake.

        Called by the pipeline (L{jsonproto.core.envelope.answer}), which
        finishes the common case, a plain C{dict}, itself.

        @param started: When the handler was called, or C{0.0} when this call
            is not one of the sampled ones.
        """
        latency = self._latency
        try:
            if inspect.isawaitable(result) and not isinstance(result, Deferred):
                result = awaiting.toDeferred(result)
            if isinstance(result, Deferred):
                return result.addBoth(latency.observeLater, messageType, started or perf_counter()).addCallback(
                    okReply, message
                ).addErrback(self._failed, message)  # type: ignore[call-overload]  # a reply, or the failure passed on
            if started:
                latency.observe(messageType, perf_counter() - started)
            return okReply(result, message)
        except Exception as e:
            return self.raised(e, message, messageType, started)

    def returnedOneWay(self, result: Any, message: Message, messageType: str, started: float) -> Reply | Deferred[Any] | None:
        """
        Finish the call of a one-way handler: nothing to send when it
        returned (a dict or L{None}, both dropped); for an awaitable, a
        L{Deferred} that fires with L{None} when it is done, or with the
        error reply to log; for anything else, the error reply to log.
        """
        latency = self._latency
        if result is None or isinstance(result, dict):
            if started:
                latency.observe(messageType, perf_counter() - started)
            return None
        try:
            if inspect.isawaitable(result) and not isinstance(result, Deferred):
                result = awaiting.toDeferred(result)
            if isinstance(result, Deferred):
                return result.addBoth(latency.observeLater, messageType, started or perf_counter()).addCallback(
                    _dropped
                ).addErrback(self._failed, message)
            raise TypeError(f"one-way handler returned {type(result).__name__}, not a dict or None")
        except Exception as e:
            return self.raised(e, message, messageType, started)

    def oneWayRefused(self, reply: Reply, message: Message) -> None:
        """
        A one-way message was refused with C{reply}, which nobody is sent:
        log it, at most once a second for each type, with how many were
        refused in between.
        """
        messageType = message.get("type")
        label = messageType if isinstance(messageType, str) else "(invalid)"
        now = perf_counter()
        if now - self._refusalsLogged.get(label, -2.0) < 1.0:
            self._refusalsQuiet[label] = self._refusalsQuiet.get(label, 0) + 1
            return
        self._refusalsLogged[label] = now
        quiet = self._refusalsQuiet.pop(label, 0)
        log.info(
            "one-way {messageType!r} message refused: {code}: {detail}{more}",
            messageType=label,
            code=reply.get("code"),
            detail=reply.get("detail") or reply.get("message"),
            more=f" (and {quiet} more refused since the last line)" if quiet else "",
        )

    def raised(self, error: Exception, message: Message, messageType: str, started: float) -> Reply:
        """
        Finish a call whose handler raised C{error}: a L{RequestError} is the
        client's to see, anything else is logged and becomes C{"Internal
        error"}.
        """
        if isinstance(error, RequestError):
            if started:
                self._latency.observe(messageType, perf_counter() - started)
            self._latency.countError(messageType)
            return withId(error.reply(), message)
        failure = Failure(error, type(error), error.__traceback__)
        if failure.check(CancelledError):
            # Raised by the handler itself, not a cancellation of ours: a bug.
            self._latency.countError(messageType)
            return self._internalError(failure, message)
        reply = self._failed(failure, message)
        assert isinstance(reply, dict)
        return reply

    def _failed(self, failure: Failure, message: Message) -> Reply | Failure:
        if failure.check(CancelledError):
            # Whoever cancelled (a request timeout) says what to reply.
            return failure
        self._latency.countError(message.get("type"))
        error = failure.value
        if isinstance(error, RequestError):
            return withId(error.reply(), message)
        return self._internalError(failure, message)

    def _internalError(self, failure: Failure, message: Message) -> Reply:
        """
        A handler's bug: log it, and tell the client only C{"Internal
        error"}.  A handler that used asyncio without the asyncio reactor
        is told how to run it.
        """
        if awaiting.needsAsyncioReactor(failure):
            log.failure(
                "handler for message type {messageType!r} awaited asyncio, which needs the asyncio reactor: "
                "run twistd -r asyncio jsonproto ...",
                failure,
                messageType=message.get("type"),
            )
        else:
            log.failure("handler for message type {messageType!r} failed", failure, messageType=message.get("type"))
        return withId(INTERNAL_ERROR.reply(), message)

    def unencodable(self, reply: Reply, error: RequestError) -> Reply:
        """
        A reply JSON cannot carry (NaN, infinity, a set, a lone surrogate):
        the server's mistake, not the client's.  Log it, and tell the client
        only C{"Internal error"}, with the request's id.
        """
        what = "it holds a number JSON cannot carry (NaN or infinity)" if error.error is NUMBER_OUT_OF_RANGE else str(error)
        log.error("a handler's reply cannot be sent: {what}", what=what)
        fallback = INTERNAL_ERROR.reply()
        if "id" in reply:
            fallback["id"] = reply["id"]
        return fallback
