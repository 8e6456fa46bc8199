"""
Routing decoded messages to handlers by their C{type}, and turning what a
handler returns (or raises) into a reply.

One L{Dispatcher} serves every framing and every listener of a service; it
knows nothing of bytes or connections beyond the small context a handler is
given.
"""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

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
L{jsonproto.connection.ConnectionInfo}) and returns the reply's fields: a
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
        if not isinstance(message, dict):
            return NOT_AN_OBJECT.reply()
        if not _validId(message.get("id")):
            return INVALID_ID.reply()
        messageType = message.get("type")
        if not isinstance(messageType, str):
            return _withId(INVALID_TYPE.reply(), message)
        handler = self._handlers.get(messageType)
        if handler is None:
            return _withId(UNKNOWN_TYPE.reply(), message)
        try:
            result = handler(message, context)
            if type(result) is dict:
                # The common case, without the checks below.
                reply: Reply = {"status": "OK"}
                reply.update(result)
                if "id" in message:
                    reply["id"] = message["id"]
                return reply
            if inspect.isawaitable(result) and not isinstance(result, Deferred):
                result = ensureDeferred(result)
            if isinstance(result, Deferred):
                return result.addCallback(_okReply, message).addErrback(self._failed, message)
            return _okReply(result, message)
        except RequestError as e:
            return _withId(e.reply(), message)
        except Exception:
            return self._failed(Failure(), message)

    def _failed(self, failure: Failure, message: Message) -> Reply | Failure:
        if failure.check(CancelledError):
            # Whoever cancelled (a request timeout) says what to reply.
            return failure
        if failure.check(RequestError):
            return _withId(failure.value.reply(), message)
        log.failure(
            "handler for message type {messageType!r} failed",
            failure,
            messageType=message.get("type"),
        )
        return _withId(INTERNAL_ERROR.reply(), message)
