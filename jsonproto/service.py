"""
The daemon as a Twisted service: its listeners, and the connections they
share, stopped in the right order.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory

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


class CannotListen(Exception):
    """
    A listener could not start.  The message is short on purpose: a
    daemonising twistd shows only the first hundred characters of
    C{"module.Class: message"}.
    """


class ListenerService(StreamServerEndpointService):
    """
    Listens on one endpoint description, as C{strports.service} builds, but
    a failure to listen ends the start with a one-line reason naming the
    endpoint (C{tcp:3001: Address already in use}).

    @ivar description: The endpoint string it was made from.
    """

    # As strports.service sets it: fail privilegedStartService, and with it
    # twistd's start, instead of logging and serving nothing.
    _raiseSynchronously = True

    def __init__(self, reactor: Any, description: str, factory: IProtocolFactory) -> None:
        super().__init__(endpoints.serverFromString(reactor, description), factory)
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise CannotListen(f"{self.description}: {reason}") from e
