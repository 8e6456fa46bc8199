"""
The seed's two message types, GREETING and SUM, as typed handlers: their
fields are declared, and the dispatcher checks them (the seed checked none).

This module is also the model of a handlers module for C{--handlers}: a
module-level C{register(dispatcher)} that adds its types.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

import msgspec

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.errors import NUMBER_OUT_OF_RANGE, RequestError


class Greeting(msgspec.Struct, gc=False):
    """
    Ask to be greeted by name.
    """

    name: str


class GreetingReply(TypedDict):
    """
    The greeting.
    """

    reply: str


class Sum(msgspec.Struct, gc=False):
    """
    Add two numbers. Integers of any size stay exact; true is not a number.
    """

    a: int | float
    b: int | float


class SumReply(TypedDict):
    """
    The sum: an integer if both numbers were integers.
    """

    result: int | float


# gc=False: a value of strings and numbers holds no cycle for the garbage
# collector to track, and is quicker to make.  The docstrings above are the descriptions in the service's AsyncAPI
# document (jsonproto schema): plain text, no markup.  The replies are
# TypedDicts, dicts at run time: the quickest reply there is.


def greeting(message: Greeting, context: Any) -> GreetingReply:
    """
    C{{"type":"GREETING","name":"Alice"}} -> C{{"status":"OK","reply":"Hello, Alice!"}}.

    The seed would answer C{"Hello, undefined!"} without a name.
    """
    return {"reply": f"Hello, {message.name}!"}


def sum_(message: Sum, context: Any) -> SumReply:
    """
    C{{"type":"SUM","a":10,"b":20}} -> C{{"status":"OK","result":30}}.

    The seed concatenates strings and adds booleans; a sum past the largest
    double is an error rather than C{Infinity}, which JSON cannot carry.
    """
    try:
        result = message.a + message.b
    except OverflowError:  # an integer past any double, plus a float
        raise RequestError(NUMBER_OUT_OF_RANGE) from None
    if type(result) is float and not math.isfinite(result):
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
