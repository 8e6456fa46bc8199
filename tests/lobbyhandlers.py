"""
A chat lobby, as a handlers module: members JOIN with a name, what one SAYs
is pushed to the others, WHO lists who is there, and one who leaves is
announced and forgotten.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    def members(context: Any) -> list[str]:
        return sorted(c.state["name"] for c in context.connections if "name" in c.state)

    def others(context: Any, message: dict[str, Any]) -> None:
        for other in context.connections:
            if other.id != context.id and "name" in other.state:
                other.send(message)

    @dispatcher.handler("JOIN")
    def join(message: dict[str, Any], context: Any) -> dict[str, Any]:
        context.state["name"] = message["name"]
        others(context, {"type": "JOINED", "name": message["name"]})
        return {"members": members(context)}

    @dispatcher.handler("SAY")
    def say(message: dict[str, Any], context: Any) -> dict[str, Any]:
        others(context, {"type": "SAID", "name": context.state["name"], "text": message["text"]})
        return {}

    @dispatcher.handler("WHO")
    def who(message: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"members": members(context)}

    @dispatcher.onClose
    def left(context: Any, reason: str) -> None:
        if "name" in context.state:
            others(context, {"type": "LEFT", "name": context.state["name"]})
