"""
The seed's two message types, GREETING and SUM, with the input checks the
seed left out.

This module is also the model of a handlers module for C{--handlers}: a
module-level C{register(dispatcher)} that adds its types.
"""

from __future__ import annotations

import math
from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher, Message, Reply
from jsonproto.errors import INVALID_FIELD, NUMBER_OUT_OF_RANGE, RequestError


def greeting(message: Message, context: Any) -> Reply:
    """
    C{{"type":"GREETING","name":"Alice"}} -> C{{"status":"OK","reply":"Hello, Alice!"}}.

    The name must be a string: the seed would answer C{"Hello, undefined!"}.
    """
    name = message.get("name")
    if not isinstance(name, str):
        raise RequestError(INVALID_FIELD, "name must be a string")
    return {"reply": f"Hello, {name}!"}


def _number(message: Message, field: str) -> int | float:
    value = message.get(field)
    kind = type(value)
    if kind is int or kind is float:
        return value
    # bool is an int subclass in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(INVALID_FIELD, f"{field} must be a number")
    return value


def sum_(message: Message, context: Any) -> Reply:
    """
    C{{"type":"SUM","a":10,"b":20}} -> C{{"status":"OK","result":30}}.

    Both operands must be numbers (the seed concatenates strings and adds
    booleans); integers stay integers; a sum past the largest double is an
    error rather than C{Infinity}, which JSON cannot carry.
    """
    a = message.get("a")
    b = message.get("b")
    if type(a) is int and type(b) is int:
        # The common case: exact, and no bool (a subclass) gets here.
        return {"result": a + b}
    result = _number(message, "a") + _number(message, "b")
    if isinstance(result, float) and not math.isfinite(result):
        raise RequestError(NUMBER_OUT_OF_RANGE)
    return {"result": result}


def register(dispatcher: Dispatcher) -> None:
    """
    Add GREETING and SUM to C{dispatcher}.
    """
    dispatcher.register("GREETING", greeting)
    dispatcher.register("SUM", sum_)


def defaultDispatcher() -> Dispatcher:
    """
    A new dispatcher answering the seed's message types.
    """
    dispatcher = Dispatcher()
    register(dispatcher)
    return dispatcher
