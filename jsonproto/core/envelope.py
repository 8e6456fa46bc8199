"""
The jsonproto envelope: what makes a decoded value a request (an object, a
string C{type}, a valid C{id}), how its handler is called, and what its
reply looks like (C{status} first, the request's C{id} echoed).

A part of the pipeline (L{jsonproto.core.pipeline}), compiled with it;
L{jsonproto.dispatch.dispatcher.Dispatcher.dispatch} answers through it
too, so there is one set of rules.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.latency import INVALID, UNKNOWN, HandlerLatency
from jsonproto.errors import INVALID_ID, INVALID_TYPE, NOT_AN_OBJECT, UNKNOWN_TYPE, ErrorCode


def _validId(messageId: Any) -> bool:
    kind = type(messageId)
    return messageId is None or kind is str or kind is int or kind is float or (
        isinstance(messageId, (str, int, float)) and not isinstance(messageId, bool)
    )


def checkPush(message: Any) -> None:
    """
    Refuse a message the server would push with a C{status}.

    A message from the server is a reply if and only if it carries
    C{status}: that is how clients tell the two apart, so a push with one
    would be taken for the reply to a request, and every reply after it
    would go to the wrong one.

    @raise ValueError: If C{message} has a C{status} key.
    """
    if type(message) is dict and "status" in message:
        raise ValueError(
            "a pushed message must not have a 'status' key: clients take every message "
            "with a status for a reply (name the field something else, such as 'state')"
        )


def errorReply(error: ErrorCode, message: Any, detail: str | None = None) -> dict[str, Any]:
    """
    The reply telling the sender of C{message} about C{error}, with the
    message's id when it has a valid one.
    """
    reply = error.reply(detail)
    if type(message) is dict and "id" in message and _validId(message["id"]):
        reply["id"] = message["id"]
    return reply


def answer(dispatcher: Any, message: Any, context: Any) -> Any:
    """
    Answer one decoded message: check its envelope, call its type's handler,
    build the reply.

    Never raises: every problem is an error reply (a handler's bug is logged
    by the dispatcher and answered C{"Internal error"}).

    @param dispatcher: The L{jsonproto.dispatch.dispatcher.Dispatcher}, for
        its handlers, its counts and its rarer outcomes.
    @return: The reply, or, for a handler still computing it, what the
        dispatcher made of its result (a Twisted C{Deferred}) for the caller
        to wait on.
    """
    return _answer(dispatcher.handlers, dispatcher.latency, dispatcher, message, context)


def _answer(handlers: dict[str, Any], latency: HandlerLatency, dispatcher: Any, message: Any, context: Any) -> Any:
    """
    L{answer}, with the dispatcher's handlers and counts already looked up
    (a pipeline looks them up once).
    """
    if type(message) is not dict:
        latency.count(INVALID)
        return NOT_AN_OBJECT.reply()
    # Known to be a dict from here (compiled, its lookups are the dict's
    # own, not method calls).
    request: dict[str, Any] = message
    messageId = request.get("id")
    if messageId is not None and not _validId(messageId):
        latency.count(INVALID)
        return INVALID_ID.reply()
    messageType = request.get("type")
    if type(messageType) is not str:
        latency.count(INVALID)
        return _withId(INVALID_TYPE.reply(), request)
    handler = handlers.get(messageType)
    if handler is None:
        latency.count(UNKNOWN)
        return _withId(UNKNOWN_TYPE.reply(), request)
    started = latency.countCall(messageType)
    try:
        result = handler(request, context)
    except Exception as e:
        return dispatcher.raised(e, request, messageType, started)
    if type(result) is not dict:
        return dispatcher.returned(result, request, messageType, started)
    if started:
        latency.finished(messageType, started)
    reply: dict[str, Any] = {"status": "OK"}
    reply.update(result)
    if "id" in request:
        reply["id"] = messageId
    return reply


def _withId(reply: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    if "id" in message:
        reply["id"] = message["id"]
    return reply


