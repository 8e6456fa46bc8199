"""
What a dispatcher knows of each message type and each push it declares,
for describing the service (L{jsonproto.tools.schema}) and for building
the messages it pushes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from jsonproto.dispatch import typed

_FieldsT = TypeVar("_FieldsT")


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
    declared with L{jsonproto.dispatch.dispatcher.Dispatcher.declarePush}: on the wire,
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
