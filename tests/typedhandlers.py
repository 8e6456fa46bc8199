"""
A handlers module with every kind of type a service describes: typed and
untyped, answered and one-way, and declared pushes.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from jsonproto.dispatch.dispatcher import Dispatcher


class Unit(enum.Enum):
    CELSIUS = "C"
    FAHRENHEIT = "F"


class Tags(msgspec.Struct):
    """Where a device is."""

    site: str
    floor: Annotated[int, Meta(ge=0, le=200)] = 0


class Reading(msgspec.Struct):
    """One measurement from one device."""

    device: Annotated[str, Meta(min_length=1, max_length=64)]
    celsius: float
    tags: Tags
    samples: Annotated[list[float], Meta(max_length=64)] = []
    unit: Unit = Unit.CELSIUS


class Ack(msgspec.Struct):
    device: str
    stored: int


class Say(msgspec.Struct):
    room: str
    text: str


class Said(msgspec.Struct):
    room: str
    text: str
    sender: str


def register(dispatcher: Dispatcher) -> None:
    stored = []

    def reading(message: Reading, context: Any) -> Ack:
        stored.append(message)
        return Ack(message.device, len(stored))

    dispatcher.register("READING", reading)
    dispatcher.register("ECHO", lambda message, context: {"message": message})
    dispatcher.register("LOG", lambda message, context: None, request=Reading, oneWay=True)
    dispatcher.register("chat:say", lambda message, context: {}, request=Say)
    dispatcher.declarePush("SAID", Said)
    dispatcher.declarePush("BYE")
