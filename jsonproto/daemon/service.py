"""
The daemon as a Twisted service: its listeners, and the connections they
share, stopped in the right order and in bounded time.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.logger import Logger

from jsonproto.server.registry import ConnectionRegistry
from jsonproto.server.endpoints import listeningEndpoint

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

    _restoreHangup: Callable[[], None] | None = None

    def startService(self) -> None:
        super().startService()
        from jsonproto.core import compiled

        log.info("core: {implementation}", implementation=compiled.implementation())
        if threading.current_thread() is threading.main_thread():
            callFromThread = getattr(self.clock, "callFromThread", None)
            if callFromThread is not None:
                previous = signal.signal(
                    signal.SIGHUP, lambda number, frame: callFromThread(self.reloadCertificates)
                )
                self._restoreHangup = lambda: signal.signal(signal.SIGHUP, previous)

    def reloadCertificates(self) -> list[bool]:
        """
        Read the TLS files of every listener that has them (C{ssl:},
        C{jsonproto-tls:}) again, as SIGHUP asks.  Connections already open are untouched.

        @return: For each such listener, whether its new files were taken.
        """
        results = []
        for child in self:
            reload = getattr(getattr(child, "endpoint", None), "reload", None)
            if reload is not None:
                results.append(reload())
        if not results:
            log.info("SIGHUP: no listener has TLS files to reload (ssl: and jsonproto-tls: have)")
        return results

    def stopService(self) -> Deferred[Any]:
        if self._restoreHangup is not None:
            self._restoreHangup()
            self._restoreHangup = None
        stopped: Deferred[Any] = super().stopService()
        return stopped.addCallback(lambda _: self._drain())

    def _drain(self) -> Deferred[None]:
        restoreSignals = self._quietRepeatedSignals()
        count = len(self.connections)
        if count:
            log.info(
                "draining {count} connections (at most {timeout:g} seconds)",
                count=count,
                timeout=self.shutdownTimeout,
            )
        drained = self.connections.closeAll("the server is shutting down")
        if drained.called:
            restoreSignals()
            return drained
        deadline = self.clock.callLater(
            self.shutdownTimeout,
            self.connections.abortAll,
            f"still open {self.shutdownTimeout:g} seconds after shutdown began",
        )

        def finished(result: None) -> None:
            if deadline.active():
                deadline.cancel()
            restoreSignals()
            log.info("all connections closed")
            return result

        return drained.addCallback(finished)

    def _quietRepeatedSignals(self) -> Callable[[], None]:
        """
        While draining, a second SIGTERM or SIGINT (an impatient operator,
        a service manager) is logged instead of making the reactor print a
        traceback for stopping twice; the drain's own timeout still holds.

        @return: Puts the previous handlers back.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        callFromThread = getattr(self.clock, "callFromThread", None)

        def again(number: int, frame: Any) -> None:
            if callFromThread is not None:
                callFromThread(
                    log.info,
                    "received {signal} while draining; connections still open are "
                    "aborted {timeout:g} seconds after shutdown began",
                    signal=signal.Signals(number).name,
                    timeout=self.shutdownTimeout,
                )

        previous = {sig: signal.signal(sig, again) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


_BACKLOG_ENDPOINTS = ("tcp", "tcp6", "ssl", "unix", "jsonproto-tls")


def withBacklog(description: str, backlog: int) -> str:
    """
    Give a listening endpoint string the accept-queue length C{backlog},
    unless it sets its own.

    Twisted's default is 50: when more clients than that connect at once
    (a restart, a load balancer reconnecting its pool), the kernel drops
    their SYNs and they retry after one, two, four seconds.  The kernel caps
    the value at net.core.somaxconn.
    """
    prefix, _, rest = description.partition(":")
    if prefix == "haproxy":
        return f"{prefix}:{withBacklog(rest, backlog)}"
    if prefix not in _BACKLOG_ENDPOINTS or "backlog=" in description:
        return description
    return f"{description}:backlog={backlog}"


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

    @ivar description: The endpoint string as the operator gave it.
    """

    # As strports.service sets it: fail privilegedStartService, and with it
    # twistd's start, instead of logging and serving nothing.
    _raiseSynchronously = True

    def __init__(
        self,
        reactor: Any,
        description: str,
        factory: IProtocolFactory,
        backlog: int | None = None,
        reusePort: bool = False,
    ) -> None:
        listen = description if backlog is None else withBacklog(description, backlog)
        if reusePort:
            from jsonproto.daemon.supervisor import reusePortEndpoint

            endpoint = reusePortEndpoint(reactor, listen)
        else:
            endpoint = listeningEndpoint(reactor, listen)
        super().__init__(endpoint, factory)
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise CannotListen(f"{self.description}: {reason}") from e
