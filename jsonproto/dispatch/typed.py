"""
Typed messages: a handler that declares its message's fields as a Python
type gets the message checked against it, and a value of that type, instead
of a dict it must check by hand.

    class Reading(msgspec.Struct):
        device: str
        celsius: float
        tags: dict[str, str] = {}

    def reading(message: Reading, context) -> Ack: ...

A message type is a C{msgspec.Struct}, a dataclass or a C{TypedDict}; msgspec
checks all three, with the same rules: the types of JSON (C{true} is never a
number, C{1.0} is not an integer), required and optional fields, nested
objects and lists, enums and literals, and the bounds C{msgspec.Meta} gives
(C{ge}, C{max_length}, C{pattern}...).  A C{msgspec.Struct} is the quickest
of the three to check and to build, by a wide margin (the figures are in
C{docs/handlers.md}, "Typed messages"), so it is the one to choose.

The envelope's C{type} and C{id} belong to the dispatcher, not to a
message type: neither may be a field of one.

What goes wrong is said in the reply's C{detail}, a JSON path and what was
expected there (L{jsonproto.dispatch.explain}), with the code
C{invalid_field}.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable

import msgspec
from msgspec import ValidationError, convert, to_builtins
from msgspec import inspect as msgspecInspect
from typing_extensions import is_typeddict

from jsonproto.dispatch.explain import explain
from jsonproto.errors import INVALID_FIELD, RequestError

ENVELOPE = frozenset({"type", "id"})
"""
The members of every request that belong to the protocol, not to its type.
"""


def isMessageType(candidate: Any) -> bool:
    """
    Whether C{candidate} is a type a message can be declared with: a
    C{msgspec.Struct} subclass, a dataclass or a C{TypedDict}.
    """
    return isinstance(candidate, type) and (
        issubclass(candidate, msgspec.Struct)
        or dataclasses.is_dataclass(candidate)
        or is_typeddict(candidate)
    )


def isTypedValue(value: Any) -> bool:
    """
    Whether C{value} is an instance of a message type (a C{TypedDict} is a
    plain C{dict} at run time, so it is not one): what L{replyFields} takes.
    """
    return isinstance(value, msgspec.Struct) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def replyFields(value: Any) -> dict[str, Any]:
    """
    The reply's fields from a typed reply: its fields in their declared
    order, nested values as JSON has them (enums by value, nested structs as
    objects).

    @raise TypeError: If C{value} is not a C{msgspec.Struct} or a
        dataclass instance.
    """
    if not isTypedValue(value):
        raise TypeError(
            f"handler returned {type(value).__name__}, not a dict, a msgspec.Struct or a dataclass"
        )
    return to_builtins(value)


class _NotGiven:
    """
    The default of C{request=} and C{reply=}: take the type from the
    handler's annotations.
    """

    def __repr__(self) -> str:
        return "FROM_ANNOTATIONS"


FROM_ANNOTATIONS: Any = _NotGiven()
"""
C{register(..., request=FROM_ANNOTATIONS)}: the message type is the
annotation of the handler's first parameter, if it is a message type; the
reply type likewise from its return annotation.
"""

_AWAITED = {"Awaitable", "Coroutine", "Deferred"}


def _annotations(function: Callable[..., Any]) -> dict[str, Any]:
    """
    C{function}'s annotations, resolved (C{from __future__ import
    annotations} makes them strings).

    @raise ValueError: If one cannot be resolved, naming the handler and
        saying how to declare its type instead.
    """
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception as e:
        name = getattr(function, "__qualname__", repr(function))
        raise ValueError(
            f"the annotations of handler {name} cannot be resolved ({type(e).__name__}: {e}): "
            "define its message types at module level, or give them as request= and reply= "
            "(request=None for an untyped handler)"
        ) from None


def _firstParameter(function: Callable[..., Any]) -> str | None:
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        return None
    return parameters[0].name


def _mayBeTyped(function: Callable[..., Any]) -> bool:
    """
    Whether C{function} has annotations worth resolving: most handlers have
    none, and a lambda or a builtin none that could be read.
    """
    return bool(getattr(function, "__annotations__", None))


def requestTypeOf(function: Callable[..., Any]) -> type | None:
    """
    The message type of C{function}'s first parameter's annotation, or
    L{None} if it has none that is a message type (C{dict}, C{Any} and the
    like leave the handler untyped).
    """
    if not _mayBeTyped(function):
        return None
    name = _firstParameter(function)
    if name is None or name not in function.__annotations__:
        return None
    annotation = _annotations(function).get(name)
    return _stripAnnotated(annotation) if isMessageType(_stripAnnotated(annotation)) else None


def replyTypeOf(function: Callable[..., Any]) -> type | None:
    """
    The message type of C{function}'s return annotation (C{-> Ack}, and
    C{Deferred[Ack]} or C{Awaitable[Ack]} for one that waits), or L{None}.
    """
    if not _mayBeTyped(function) or "return" not in function.__annotations__:
        return None
    annotation = _stripAnnotated(_annotations(function).get("return"))
    origin = typing.get_origin(annotation)
    if origin is not None and getattr(origin, "__name__", "") in _AWAITED:
        arguments = typing.get_args(annotation)
        annotation = _stripAnnotated(arguments[-1]) if arguments else None
    return annotation if isMessageType(annotation) else None


def _stripAnnotated(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def fieldNames(declared: type) -> frozenset[str]:
    """
    The members a message type has on the wire (a field's C{encode_name},
    which C{rename=} may have changed).
    """
    return frozenset(field.encode_name for field in msgspecInspect.type_info(declared).fields)  # type: ignore[attr-defined]


def checkMessageType(messageType: str, declared: type, role: str) -> None:
    """
    Refuse, at registration, a message type msgspec cannot check, or whose
    fields claim the envelope's members (C{type} and C{id} of a request,
    C{status} of a reply).

    @param role: C{"request"}, C{"reply"} or C{"push"}, for the error.
    @raise ValueError: If so, saying why.
    """
    try:
        names = fieldNames(declared)
    except Exception as e:
        raise ValueError(f"{messageType!r}: {declared.__qualname__} cannot be a {role} type: {e}") from None
    if role == "push":
        return
    clash = sorted(names & ({"status"} if role == "reply" else ENVELOPE))
    if clash:
        what = "the reply's status" if role == "reply" else "the envelope's: every request has them"
        raise ValueError(
            f"{messageType!r}: {declared.__qualname__} has a field named {' and '.join(map(repr, clash))}, "
            f"which is {what}; name the field something else"
        )


class TypedRequest:
    """
    A typed handler as the dispatcher holds it: called like any handler,
    with the decoded message, it checks and converts the message to its
    type and calls the user's function with the value; a message that does
    not fit is answered C{invalid_field} without calling it.

    @ivar function: The user's handler, which takes a C{requestType}.
    @ivar decode: Decodes a message's bytes straight into C{requestType}
        (msgspec's JSON decoder for it), or L{None} for a type that refuses
        unknown fields, which would refuse the envelope's.  The pipeline
        takes this way for a message that fits
        (L{jsonproto.core.envelope.readStraight}): one pass over the bytes in
        place of decoding to a dict and converting that; any message it
        does not take goes the way of every other.
    """

    __slots__ = ("function", "requestType", "decode", "_strips")

    def __init__(self, function: Callable[[Any, Any], Any], requestType: type) -> None:
        self.function = function
        self.requestType = requestType
        info = msgspecInspect.type_info(requestType)
        self._strips = bool(getattr(info, "forbid_unknown_fields", False))
        self.decode: Callable[[bytes], Any] | None = (
            None if self._strips else msgspec.json.Decoder(requestType).decode
        )

    def __call__(self, message: dict[str, Any], context: Any) -> Any:
        try:
            if self._strips:
                # A type that refuses unknown fields would refuse the envelope.
                value: Any = convert({k: v for k, v in message.items() if k not in ENVELOPE}, self.requestType)
            else:
                value = convert(message, self.requestType)
        except ValidationError as e:
            raise RequestError(INVALID_FIELD, explain(e, self.requestType)) from None
        return self.function(value, context)

    def __repr__(self) -> str:
        return f"<typed handler {getattr(self.function, '__qualname__', self.function)!r} of {self.requestType.__qualname__}>"


def typedHandler(function: Callable[[Any, Any], Any], requestType: type) -> TypedRequest:
    """
    Wrap C{function}, which takes a C{requestType}, into a handler the
    pipeline can call with the decoded message (L{TypedRequest}).
    """
    return TypedRequest(function, requestType)
