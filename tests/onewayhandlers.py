"""
A handlers module with a one-way message type, for the tests that stream
them to a real daemon.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher

received = [0]


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.handler("READING", oneWay=True)
    def reading(message: dict[str, Any], context: Any) -> None:
        received[-1] += 1
