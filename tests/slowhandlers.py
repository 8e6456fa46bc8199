"""
A handlers module with a slow message type, for tests that need requests
genuinely in flight in a real daemon.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.handler("SLOW")
    def slow(message: dict[str, Any], context: Any) -> Any:
        seconds = float(message.get("seconds", 0.5))
        return deferLater(reactor, seconds, lambda: {"slept": seconds})
