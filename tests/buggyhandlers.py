"""
A handlers module whose register() has a bug of its own (an attribute of
None), which has nothing to do with channels, for the tests.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher

SETTINGS: Any = None


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("ECHO", lambda message, context: {"echo": SETTINGS.get("prefix")})
    SETTINGS.get("prefix")
