"""
A handlers module with every kind of type a service describes: typed and
untyped, answered and one-way, and declared pushes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.tools.validationcost import Reading


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
