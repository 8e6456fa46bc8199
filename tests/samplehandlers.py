"""
A handlers module as a user writes one, for the --handlers tests.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.handler("UPPER")
    def upper(message: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"text": str(message.get("text", "")).upper()}
