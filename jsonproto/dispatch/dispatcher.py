"""
Routing decoded messages to handlers by their C{type}: the registry of
message types, their handlers, the pushes a service declares and its open
and close hooks.  What a handler returns (or raises) is made a reply by
L{jsonproto.dispatch.outcomes}.

One L{Dispatcher} serves every framing and every listener of a service; it
knows nothing of bytes or connections beyond the small context a handler is
given.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar, Union

from twisted.internet.defer import Deferred

from jsonproto.core import envelope
from jsonproto.dispatch import typed
# Declaration, PushType, Message and Reply are imported from here too, as
# they always were (the schema's writer, the thread pool, handlers modules).
from jsonproto.dispatch.declarations import Declaration, PushType
from jsonproto.dispatch.latency import HandlerLatency
from jsonproto.dispatch.outcomes import Message, Outcomes, Reply

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

errorReply = envelope.errorReply


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
        # What the pipeline calls to finish the rarer outcomes of a call (a
        # handler that raised, or returned other than a dict; a one-way
        # message; a reply JSON cannot carry): bound here, so that the
        # pipeline's call costs no more than a method's.
        outcomes = Outcomes(self.latency)
        self.returned = outcomes.returned
        self.returnedOneWay = outcomes.returnedOneWay
        self.oneWayRefused = outcomes.oneWayRefused
        self.raised = outcomes.raised
        self.unencodable = outcomes.unencodable
        self.openHooks: list[Callable[[Any], Any]] = []
        # The channels' broker, when the service has channels
        # (jsonproto.channels.messages.register).
        self.channels: Any = None
        self.closeHooks: list[Callable[[Any, str], Any]] = []

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
        bytes (L{typed.TypedRequest.decode}): the pipeline offers messages
        to them first.
        """
        return any(
            type(call) is typed.TypedRequest and call.decode is not None
            for handlers in (self._handlers, self._oneWayHandlers)
            for call in handlers.values()
        )

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
