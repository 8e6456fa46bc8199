"""
Routing decoded messages to handlers by their C{type}, and turning what a
handler returns (or raises) into a reply.

One L{Dispatcher} serves every framing and every listener of a service; it
knows nothing of bytes or connections beyond the small context a handler is
given.
"""

from __future__ import annotations

import inspect
from time import perf_counter
from typing import Any, Awaitable, Callable, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsonproto.core import envelope
from jsonproto.dispatch.latency import HandlerLatency
from jsonproto.errors import INTERNAL_ERROR, NUMBER_OUT_OF_RANGE, RequestError

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
_HookT = TypeVar("_HookT", bound=Callable[..., Any])

log = Logger()


def _withId(reply: Reply, message: Message) -> Reply:
    if "id" in message:
        reply["id"] = message["id"]
    return reply


errorReply = envelope.errorReply


def _dropped(result: Any) -> None:
    """
    A one-way handler's result: nobody is sent it.
    """
    return None


def _okReply(result: Any, message: Message) -> Reply:
    if not isinstance(result, dict):
        raise TypeError(f"handler returned {type(result).__name__}, not a dict")
    reply: Reply = {"status": "OK"}
    reply.update(result)
    return _withId(reply, message)


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
        self._oneWay: dict[str, Handler] = {}
        self.latency = HandlerLatency()
        self.openHooks: list[Callable[[Any], Any]] = []
        # The channels' broker, when the service has channels
        # (jsonproto.channels.messages.register).
        self.channels: Any = None
        self.closeHooks: list[Callable[[Any, str], Any]] = []
        # One-way messages refused, logged at most once a second per type.
        self._refusalsLogged: dict[str, float] = {}
        self._refusalsQuiet: dict[str, int] = {}

    @property
    def counts(self) -> dict[str, int]:
        """
        Messages dispatched, by type; types nobody handles count as
        C{"(unknown)"} and messages with no usable type as C{"(invalid)"},
        so the labels stay as few as the registered types.  A new dict at
        each call.
        """
        return self.latency.counts

    def register(self, messageType: str, handler: Handler, *, oneWay: bool = False) -> None:
        """
        Answer messages whose C{type} is C{messageType} with C{handler}.

        @param oneWay: Messages of this type get no reply: the handler's
            result is dropped, and its errors are logged and counted
            instead of sent (see docs/protocol.md).  A client that only
            sends them, and never reads, is never held up for them.
        @raise ValueError: If the type already has a handler: replacing one
            silently would hide a clash between two modules.
        """
        if not isinstance(messageType, str) or not messageType:
            raise ValueError(f"a message type is a non-empty string, not {messageType!r}")
        if messageType in self._handlers or messageType in self._oneWay:
            raise ValueError(f"message type {messageType!r} already has a handler")
        (self._oneWay if oneWay else self._handlers)[messageType] = handler

    def handler(self, messageType: str, *, oneWay: bool = False) -> Callable[[_HandlerT], _HandlerT]:
        """
        Decorator form of L{register}; returns the function unchanged.
        """

        def decorate(function: _HandlerT) -> _HandlerT:
            self.register(messageType, function, oneWay=oneWay)
            return function

        return decorate

    @property
    def messageTypes(self) -> frozenset[str]:
        """
        The types this dispatcher answers, one-way ones included.
        """
        return frozenset(self._handlers) | frozenset(self._oneWay)

    def onOpen(self, hook: _HookT) -> _HookT:
        """
        Call C{hook(context)} when a connection to any of the listeners
        this dispatcher answers opens, before its first message is
        answered (messages wait while it runs).  A decorator; see
        L{jsonproto.server.lifecycle} for what it may return.
        """
        self.openHooks.append(hook)
        return hook

    def onClose(self, hook: _HookT) -> _HookT:
        """
        Call C{hook(context, reason)} when a connection has closed, C{reason}
        saying why in words (the log's).  A decorator.  The service's stop
        waits for close hooks still running.
        """
        self.closeHooks.append(hook)
        return hook

    @property
    def oneWayHandlers(self) -> dict[str, Handler]:
        """
        The handlers of one-way message types, by type.  Add to it with
        L{register}, not directly.
        """
        return self._oneWay

    @property
    def handlers(self) -> dict[str, Handler]:
        """
        The handlers by message type, as the pipeline looks them up.  Add
        to it with L{register}, not directly.
        """
        return self._handlers

    def dispatch(self, message: Any, context: Any) -> Reply | Deferred[Reply]:
        """
        Answer one decoded message, as a connection's pipeline does
        (L{jsonproto.core.envelope.answer}).

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
        return envelope.answer(self, message, context)  # type: ignore[no-any-return]

    def returned(self, result: Any, message: Message, messageType: str, started: float) -> Reply | Deferred[Reply]:
        """
        Finish a call whose handler returned something other than a plain
        C{dict}: a L{Deferred}, an awaitable, a dict subclass, or a mistake.

        Called by the pipeline (L{jsonproto.core.envelope.answer}), which
        finishes the common case, a plain C{dict}, itself.

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

    def returnedOneWay(self, result: Any, message: Message, messageType: str, started: float) -> Reply | Deferred[Any] | None:
        """
        Finish the call of a one-way handler: nothing to send when it
        returned (a dict or L{None}, both dropped); for an awaitable, a
        L{Deferred} that fires with L{None} when it is done, or with the
        error reply to log; for anything else, the error reply to log.
        """
        latency = self.latency
        if result is None or isinstance(result, dict):
            if started:
                latency.observe(messageType, perf_counter() - started)
            return None
        try:
            if inspect.isawaitable(result) and not isinstance(result, Deferred):
                result = ensureDeferred(result)
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
