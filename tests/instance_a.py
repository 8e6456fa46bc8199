"""
Names this daemon instance "a", for the load-balancer tests.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.handler("WHO")
    def who(message: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"instance": "a", "peer": context.peer}
