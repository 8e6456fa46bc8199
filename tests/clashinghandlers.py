"""
A handlers module that tries to take a type already taken, for the tests.
"""

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("SUM", lambda message, context: {"result": "mine"})
