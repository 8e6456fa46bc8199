"""
The jsonproto envelope: what makes a decoded value a request (an object, a
string C{type}, a valid C{id}), how its handler is called, and what its
reply looks like (C{status} first, the request's C{id} echoed).

A part of the pipeline (L{jsonproto.core.pipeline}), compiled with it;
L{jsonproto.dispatch.dispatcher.Dispatcher.dispatch} answers through it
too, so there is one set of rules.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec
from msgspec import UNSET, MsgspecError, UnsetType

from jsonproto.dispatch.latency import INVALID, UNKNOWN, HandlerLatency
from jsonproto.dispatch.typed import TypedRequest
from jsonproto.errors import INVALID_ID, INVALID_TYPE, NOT_AN_OBJECT, UNKNOWN_TYPE, ErrorCode
from jsonproto.wire.codec import decodeOrRefuse, mayHoldBigInteger


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
    return _okReply(result, "id" in request, messageId)


def _okReply(result: dict[str, Any], hasId: bool, messageId: Any) -> dict[str, Any]:
    """
    The reply to a request whose handler returned the fields C{result}:
    C{status} first, the request's C{id} last, if it had one.
    """
    reply: dict[str, Any] = {"status": "OK"}
    reply.update(result)
    if hasId:
        reply["id"] = messageId
    return reply


# Typed requests, decoded straight from their bytes.


class _Envelope(msgspec.Struct, gc=False):
    """
    The envelope's rules (L{_answer}'s) as a msgspec type, for a request
    read without decoding the rest of it: an object whose C{type} is a
    string and whose C{id}, if it has one, is null, a string or a number.
    A message this refuses may still be a request (its answer is then the
    ordinary way's); what it accepts, L{_answer} accepts alike.
    """

    type: str
    id: Union[str, int, float, None, UnsetType] = UNSET


_readEnvelope = msgspec.json.Decoder(_Envelope).decode


STRAIGHT_BYTES = 1024
"""
The longest message decoded straight into its type.  Reading the envelope
first reads a message twice: the pass saved costs more than the second
read only for short messages.  (Nesting is bounded with them: such a
message nests at most half as deep as it is long, well within what msgspec
allows, which counts nesting against Python's recursion limit.)
"""


def _heldToCodecRules(frame: bytes) -> bool:
    """
    Whether msgspec, decoding C{frame}, holds it to every rule of the codec
    (L{jsonproto.wire.codec}).  It does, but for three: it reads integers
    of any length (the codec refuses one past the largest double), and in
    the members a type has no field for, which it skips, it checks neither
    UTF-8 (an ASCII message is valid) nor nesting (bounded by
    L{STRAIGHT_BYTES}).  A message that might break one of them goes the
    ordinary way.
    """
    if mayHoldBigInteger(frame):
        return False
    if not frame.isascii():
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


class Straight:
    """
    A message read straight into its handler's type (L{readStraight}).
    Its holder clears C{value} once the handler has it, so that an idle
    connection does not keep its last message's value alive (its id, a
    short string or a number, stays until the next one).

    @ivar messageType: Its C{type}.
    @ivar hasId: Whether it has an C{id}; C{messageId} is that id.
    @ivar handler: Its type's handler, a L{TypedRequest}.
    @ivar value: The message as a value of the handler's type.
    @ivar oneWay: Whether its type is one-way.
    """

    __slots__ = ("messageType", "hasId", "messageId", "handler", "value", "oneWay")

    messageType: str
    hasId: bool
    messageId: Any
    handler: TypedRequest
    value: Any
    oneWay: bool


def readStraight(handlers: dict[str, Any], oneWayHandlers: dict[str, Any], frame: bytes, straight: Straight) -> bool:
    """
    Read a message to a typed handler (a request's, or a one-way type's)
    from its bytes straight into the handler's type
    (L{TypedRequest.decode}), when it is one and fits: one pass over the
    bytes, where the ordinary way decodes them to a dict and converts that.

    @param straight: Where the message read goes, its fields overwritten:
        one L{Straight} serves a connection's every message, rather than a
        new one made and freed for each.
    @return: Whether it was read; if not, it is not a typed handler's, or
        does not fit its type, or is not a request at all, and must be
        answered the ordinary way, which says what is wrong.
    """
    if len(frame) > STRAIGHT_BYTES:
        return False
    try:
        envelope = _readEnvelope(frame)
    except (MsgspecError, RecursionError):
        return False
    messageType: str = envelope.type
    oneWay = False
    handler = handlers.get(messageType)
    if handler is None and oneWayHandlers:
        handler = oneWayHandlers.get(messageType)
        oneWay = True
    if type(handler) is not TypedRequest:
        return False
    typedRequest: TypedRequest = handler
    if typedRequest.decode is None or not _heldToCodecRules(frame):
        return False
    try:
        value = typedRequest.decode(frame)
    except (MsgspecError, RecursionError):
        return False
    messageId = envelope.id
    straight.messageType = messageType
    straight.hasId = messageId is not UNSET
    straight.messageId = messageId
    straight.handler = typedRequest
    straight.value = value
    straight.oneWay = oneWay
    return True


def answerStraight(straight: Straight, latency: HandlerLatency, dispatcher: Any, frame: bytes, context: Any) -> Any:
    """
    Answer a request read straight into its type (L{readStraight}; from
    C{frame}): the reply L{answer} gives the same message, counted alike.

    @return: The reply, or what the caller waits on (as L{answer}).
    """
    # Read before the handler runs: what it does may read another message
    # into the same Straight.
    messageType = straight.messageType
    hasId = straight.hasId
    messageId = straight.messageId
    started = latency.countCall(messageType)
    try:
        result = straight.handler.function(straight.value, context)
    except Exception as e:
        return dispatcher.raised(e, decodeOrRefuse(frame), messageType, started)
    if type(result) is not dict:
        return dispatcher.returned(result, decodeOrRefuse(frame), messageType, started)
    if started:
        latency.finished(messageType, started)
    return _okReply(result, hasId, messageId)


def _withId(reply: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    if "id" in message:
        reply["id"] = message["id"]
    return reply


