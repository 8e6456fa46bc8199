"""
The channels of a daemon as a Twisted service: started with it (an engine
that connects somewhere, Redis, connects then), and stopped with it, its
timers cancelled.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred

from jsonproto.channels.broker import Broker


class ChannelsService(Service):
    """
    Starts and stops a broker's engine with the daemon.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def startService(self) -> None:
        super().startService()
        start = getattr(self.broker.engine, "start", None)
        if start is not None:
            start()

    def stopService(self) -> Any:
        super().stopService()
        self.broker.stop()
        stop = getattr(self.broker.engine, "stop", None)
        return maybeDeferred(stop) if stop is not None else None
