"""
The methods of the JSON-RPC 2.0 specification's own examples, as a
handlers module, for the tests that run those examples.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.errors import INVALID_FIELD, RequestError

updates: list[Any] = []


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.handler("subtract")
    def subtract(message: dict[str, Any], context: Any) -> dict[str, Any]:
        minuend, subtrahend = message.get("minuend"), message.get("subtrahend")
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (minuend, subtrahend)):
            raise RequestError(INVALID_FIELD, "minuend and subtrahend must be numbers")
        return {"result": minuend - subtrahend}

    @dispatcher.handler("get_data")
    def getData(message: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"result": ["hello", 5]}

    @dispatcher.handler("update")
    def update(message: dict[str, Any], context: Any) -> dict[str, Any]:
        updates.append(message)
        return {}

    @dispatcher.handler("notify_hello", oneWay=True)
    def notifyHello(message: dict[str, Any], context: Any) -> None:
        updates.append(message)
