"""
Routing decoded messages to handlers by their C{type}, and turning what a
handler returns (or raises) into a reply.

One L{Dispatcher} serves every framing and every listener of a service; it
knows nothing of bytes or connections beyond the small context a handler is
given.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Awaitable, Callable, Generic, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsonproto.core import envelope
from jsonproto.dispatch import awaiting, typed
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

_HandlerT = TypeVar("_HandlerT", bound=Callable[..., Any])
_FieldsT = TypeVar("_FieldsT")
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
        result = typed.replyFields(result)
    reply: Reply = {"status": "OK"}
    reply.update(result)
    return _withId(reply, message)


@dataclass(frozen=True)
class Declaration:
    """
    What a dispatcher knows of one message type, for describing it
    (L{jsonproto.tools.schema}).

    @ivar messageType: The C{type} of its requests.
    @ivar handler: The function registered, as it was given.
    @ivar request: The type its messages are checked against, or L{None}
        for an untyped handler (any object with this C{type}).
    @ivar reply: The type of its replies' fields, or L{None} if not
        declared.
    @ivar oneWay: Whether the type is one-way: its messages get no reply.
    """

    messageType: str
    handler: Callable[..., Any]
    request: type | None
    reply: type | None
    oneWay: bool


@dataclass(frozen=True)
class PushType(Generic[_FieldsT]):
    """
    A message the service pushes to its clients of its own accord, as
    declared with L{Dispatcher.declarePush}: on the wire,
    C{{"type": name, ...fields}}.

    @ivar name: Its C{type}.
    @ivar fields: The type of its other members, or L{None} if not declared.
    """

    name: str
    fields: type[_FieldsT] | None

    def message(self, value: _FieldsT | dict[str, Any] | None = None) -> dict[str, Any]:
        """
        The message to push, for C{context.send}: C{{"type": name}}, then
        the fields of C{value} (a value of L{fields}, or a dict).

        @raise TypeError: If C{value} is not of the declared type.
        """
        if self.fields is not None and value is not None and not isinstance(value, (self.fields, dict)):
            raise TypeError(f"push {self.name!r} takes a {self.fields.__qualname__}, not a {type(value).__name__}")
        message: dict[str, Any] = {"type": self.name}
        if value is not None:
            message.update(value if isinstance(value, dict) else typed.replyFields(value))
        return message


class Dispatcher:
    """
    A registry of message types and the handlers that answer them.

    Register with L{register}, or with L{handler} as a decorator::

        dispatcher = Dispatcher()

        @dispatcher.handler("PING")
        def ping(message, context):
            return {"pong": True}

    A handler whose first parameter is annotated with a message type (a
    C{msgspec.Struct}, a dataclass or a C{TypedDict}) is typed: its
    messages are checked against the type before it is called, and it gets
    a value of that type (L{jsonproto.dispatch.typed})::

        class Sum(msgspec.Struct):
            a: int | float
            b: int | float

        @dispatcher.handler("SUM")
        def sum_(message: Sum, context) -> Result:
            return Result(message.a + message.b)
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._oneWayHandlers: dict[str, Handler] = {}
        self._declarations: dict[str, Declaration] = {}
        self._pushes: dict[str, PushType[Any]] = {}
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

    @property
    def decodesTyped(self) -> bool:
        """
        Whether a typed handler can take its messages straight from their
        bytes (L{typed.TypedRequest.decode}): the pipeline offers requests
        to them first.
        """
        return any(type(call) is typed.TypedRequest and call.decode is not None for call in self._handlers.values())

    def register(
        self,
        messageType: str,
        handler: Callable[..., Any],
        *,
        request: type | None = typed.FROM_ANNOTATIONS,
        reply: type | None = typed.FROM_ANNOTATIONS,
        oneWay: bool = False,
    ) -> None:
        """
        Answer messages whose C{type} is C{messageType} with C{handler}.

        @param request: The type the messages are checked against and
            converted to (a C{msgspec.Struct}, a dataclass or a
            C{TypedDict}), or L{None} for none: C{handler} gets the decoded
            dict.  By default, the annotation of C{handler}'s first
            parameter, if it is such a type; a handler without one is
            untyped, and costs nothing more than before.
        @param reply: The type of the reply's fields, for describing the
            service; by default C{handler}'s return annotation, if it is
            such a type (C{Awaitable[...]} and C{Deferred[...]} looked
            through).  Nothing checks replies: a handler may return a
            C{dict}, or a C{msgspec.Struct} or dataclass whose fields become
            the reply's.
        @param oneWay: Whether the type is one-way: its messages get no
            reply.  One-way handlers are kept apart, in L{oneWayHandlers}.

        @raise ValueError: If the type already has a handler (replacing one
            silently would hide a clash between two modules), if a message
            type has a field C{type} or C{id} (the envelope's), or if an
            annotation cannot be resolved.
        """
        if not isinstance(messageType, str) or not messageType:
            raise ValueError(f"a message type is a non-empty string, not {messageType!r}")
        if messageType in self._declarations:
            raise ValueError(f"message type {messageType!r} already has a handler")
        if request is typed.FROM_ANNOTATIONS:
            request = typed.requestTypeOf(handler)
        elif request is not None and not typed.isMessageType(request):
            raise ValueError(f"{messageType!r}: request= takes a msgspec.Struct, a dataclass or a TypedDict, not {request!r}")
        if reply is typed.FROM_ANNOTATIONS:
            reply = None if oneWay else typed.replyTypeOf(handler)
        elif reply is not None:
            if oneWay:
                raise ValueError(f"{messageType!r} is one-way: its messages get no reply, so it has no reply type")
            if not typed.isMessageType(reply):
                raise ValueError(f"{messageType!r}: reply= takes a msgspec.Struct, a dataclass or a TypedDict, not {reply!r}")
        if request is not None:
            typed.checkMessageType(messageType, request, "request")
        if reply is not None:
            typed.checkMessageType(messageType, reply, "reply")
        call = handler if request is None else typed.typedHandler(handler, request)
        (self._oneWayHandlers if oneWay else self._handlers)[messageType] = call
        self._declarations[messageType] = Declaration(messageType, handler, request, reply, oneWay)

    def handler(
        self,
        messageType: str,
        *,
        request: type | None = typed.FROM_ANNOTATIONS,
        reply: type | None = typed.FROM_ANNOTATIONS,
        oneWay: bool = False,
    ) -> Callable[[_HandlerT], _HandlerT]:
        """
        Decorator form of L{register}; returns the function unchanged.
        """

        def decorate(function: _HandlerT) -> _HandlerT:
            self.register(messageType, function, request=request, reply=reply, oneWay=oneWay)
            return function

        return decorate

    def declarePush(self, name: str, fields: type[_FieldsT] | None = None) -> PushType[_FieldsT]:
        """
        Declare a message this service pushes to its clients (with
        C{context.send}), so that its description lists it: on the wire
        C{{"type": name, ...}}, with the fields of C{fields} if given.
        Nothing is checked when one is sent.

        @param fields: A C{msgspec.Struct}, a dataclass or a C{TypedDict},
            with no C{type} or C{status} field; or L{None} if undeclared.
        @return: The declaration, whose L{PushType.message} builds the
            message to send.
        @raise ValueError: If C{name} is declared already, or C{fields} is
            not a message type or has a C{type} or C{status} field.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a push's type is a non-empty string, not {name!r}")
        if name in self._pushes:
            raise ValueError(f"push {name!r} is declared already")
        if fields is not None:
            if not typed.isMessageType(fields):
                raise ValueError(f"push {name!r}: fields takes a msgspec.Struct, a dataclass or a TypedDict, not {fields!r}")
            typed.checkMessageType(name, fields, "push")
            clash = typed.fieldNames(fields) & {"type", "status"}
            if clash:
                raise ValueError(
                    f"push {name!r}: {fields.__qualname__} has a field named {' and '.join(map(repr, sorted(clash)))}; "
                    "a push's type is its name, and a message with a status would be taken for a reply"
                )
        push: PushType[_FieldsT] = PushType(name, fields)
        self._pushes[name] = push
        return push

    @property
    def messageTypes(self) -> frozenset[str]:
        """
        The types this dispatcher handles, one-way types included.
        """
        return frozenset(self._declarations)

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
    def handlers(self) -> dict[str, Handler]:
        """
        The handlers of the types that are answered, by message type, as the
        pipeline looks them up: a typed handler is here wrapped in its
        check.  Add to it with L{register}, not directly.
        """
        return self._handlers

    @property
    def oneWayHandlers(self) -> dict[str, Handler]:
        """
        The handlers of one-way types (C{register(..., oneWay=True)}), by
        message type, like L{handlers}; no type is in both.
        """
        return self._oneWayHandlers

    @property
    def declarations(self) -> list[Declaration]:
        """
        Every registered type's declaration, in the order registered.
        """
        return list(self._declarations.values())

    @property
    def pushes(self) -> list[PushType[Any]]:
        """
        The pushes declared with L{declarePush}, in the order declared.
        """
        return list(self._pushes.values())

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
        return envelope.answer(self, message, context)

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
                result = awaiting.toDeferred(result)
            if isinstance(result, Deferred):
                return result.addBoth(latency.observeLater, messageType, started or perf_counter()).addCallback(
                    _okReply, message
                ).addErrback(self._failed, message)  # type: ignore[call-overload]  # a reply, or the failure passed on
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
        error = failure.value
        if isinstance(error, RequestError):
            return _withId(error.reply(), message)
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
