"""
The daemon as a Twisted service: its listeners, and the connections they
share, stopped in the right order.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from jsonproto.connection import ConnectionRegistry


class JSONProtoService(MultiService):
    """
    The listeners (child services) of one daemon and their shared
    L{ConnectionRegistry}.

    Stopping it stops listening first, so no connection arrives during the
    drain, then closes every connection after the replies it is owed.
    twistd waits for that before the process exits.

    @ivar connections: The active connections of every listener.
    """

    def __init__(self, connections: ConnectionRegistry) -> None:
        super().__init__()
        self.connections = connections

    def stopService(self) -> Deferred[Any]:
        stopped: Deferred[Any] = super().stopService()
        return stopped.addCallback(
            lambda _: self.connections.closeAll("the server is shutting down")
        )
