"""
The daemon as a Twisted service: its listeners, and the connections they
share, stopped in the right order and in bounded time.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.logger import Logger

from jsonproto.connection import ConnectionRegistry

log = Logger()

DEFAULT_SHUTDOWN_TIMEOUT = 10.0


class JSONProtoService(MultiService):
    """
    The listeners (child services) of one daemon and their shared
    L{ConnectionRegistry}.

    Stopping it stops listening first, so that no connection arrives during
    the drain, then drains every connection: what clients have already
    sent is answered, then each connection closes.  Whatever is still open
    after C{shutdownTimeout} seconds is aborted.  twistd waits for all of
    it before the process exits.

    @ivar connections: The active connections of every listener.
    @ivar shutdownTimeout: The longest a drain may take.
    """

    def __init__(
        self,
        connections: ConnectionRegistry,
        shutdownTimeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.connections = connections
        self.shutdownTimeout = shutdownTimeout
        self.clock: IReactorTime = clock  # type: ignore[assignment]

    def stopService(self) -> Deferred[Any]:
        stopped: Deferred[Any] = super().stopService()
        return stopped.addCallback(lambda _: self._drain())

    def _drain(self) -> Deferred[None]:
        count = len(self.connections)
        if count:
            log.info(
                "draining {count} connections (at most {timeout:g} seconds)",
                count=count,
                timeout=self.shutdownTimeout,
            )
        drained = self.connections.closeAll("the server is shutting down")
        if drained.called:
            return drained
        deadline = self.clock.callLater(
            self.shutdownTimeout,
            self.connections.abortAll,
            f"still open {self.shutdownTimeout:g} seconds after shutdown began",
        )

        def finished(result: None) -> None:
            if deadline.active():
                deadline.cancel()
            log.info("all connections closed")
            return result

        return drained.addCallback(finished)


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
