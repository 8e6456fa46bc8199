"""
Message types the client tests need from a server: pushes, replies of any
size, and a reply that waits on a clock.  As a C{--handlers} module for a
daemon, or with L{addTypes} for an in-process server on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import deferLater

from jsonproto.dispatch.dispatcher import Dispatcher


def addTypes(dispatcher: Dispatcher, clock: Any = None) -> None:
    """
    Add C{LATER}, C{BIG}, C{PUSH} and C{PUSH_LATER} to C{dispatcher}.

    @param clock: What C{LATER} and C{PUSH_LATER} wait on; the reactor
        (imported only when a handler runs) unless given.
    """

    def after(seconds: float) -> Any:
        if clock is None:
            from twisted.internet import reactor

            return deferLater(reactor, seconds, lambda: None)
        return deferLater(clock, seconds, lambda: None)

    @dispatcher.handler("LATER")
    def later(message: dict[str, Any], context: Any) -> Any:
        seconds = float(message.get("seconds", 1))
        return after(seconds).addCallback(lambda _: {"slept": seconds})

    @dispatcher.handler("BIG")
    def big(message: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"data": "x" * int(message["bytes"])}

    @dispatcher.handler("PUSH")
    def push(message: dict[str, Any], context: Any) -> dict[str, Any]:
        # Pushes first, then the reply: they reach the client before it.
        count = int(message.get("count", 1))
        for n in range(count):
            context.send({"type": "STATE", "state": "playing", "n": n})
        return {"pushed": count}

    @dispatcher.handler("PUSH_LATER")
    def pushLater(message: dict[str, Any], context: Any) -> dict[str, Any]:
        seconds = float(message.get("seconds", 1))
        after(seconds).addCallback(lambda _: context.send({"type": "STATE", "state": "later"}))
        return {"scheduled": seconds}

    @dispatcher.handler("PUSH_STATUS")
    def pushStatus(message: dict[str, Any], context: Any) -> dict[str, Any]:
        context.send({"type": "STATE", "status": "playing"})
        return {"pushed": 1}


def register(dispatcher: Dispatcher) -> None:
    addTypes(dispatcher)
