"""
The daemon as a Twisted service: its listeners, and the connections they
share, stopped in the right order and in bounded time.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from jsonproto.daemon.logs import filterLevel
from jsonproto.daemon.listening import CannotListen, acceptQueued, cannotListen, reusePortEndpoint, stopAdmitting
from jsonproto.server.endpoints import listeningEndpoint
from jsonproto.server.registry import ConnectionRegistry
from jsonproto.server.refusallog import refusalLog

__all__ = ["CannotListen", "JSONProtoService", "ListenerService", "withBacklog"]

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
    @ivar logLevel: Once it starts, only events this severe or more are
        logged, to the end of the process (the drain's lines, and twistd's
        last ones, included); L{None} leaves logging alone.
    """

    def __init__(
        self,
        connections: ConnectionRegistry,
        shutdownTimeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        clock: IReactorTime | None = None,
        logLevel: LogLevel | None = None,
    ) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.connections = connections
        self.shutdownTimeout = shutdownTimeout
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.logLevel = logLevel

    _restoreHangup: Callable[[], None] | None = None
    _levelFiltered = False

    def startService(self) -> None:
        if self.logLevel is not None and not self._levelFiltered:
            filterLevel(self.logLevel)
            self._levelFiltered = True
        from jsonproto.core import compiled

        # Before the listeners start, so that it is in the log before any
        # line about serving.
        log.info("core: {implementation}", implementation=compiled.implementation())
        super().startService()
        if threading.current_thread() is threading.main_thread():
            callFromThread = getattr(self.clock, "callFromThread", None)
            if callFromThread is not None:
                previous = signal.signal(
                    signal.SIGHUP, lambda number, frame: callFromThread(self.reloadCertificates)
                )
                self._restoreHangup = lambda: _restore(signal.SIGHUP, previous)

    def reloadCertificates(self) -> list[bool]:
        """
        Read the TLS files of every listener that has them (C{ssl:},
        C{jsonproto-tls:}) again, as SIGHUP asks.  Connections already open are untouched.

        @return: For each such listener, whether its new files were taken.
        """
        results = []
        forwarded = False
        for child in self:
            reload = getattr(getattr(child, "endpoint", None), "reload", None)
            if reload is not None:
                results.append(reload())
            reloadWorkers = getattr(child, "reloadWorkers", None)
            if reloadWorkers is not None:  # --workers: each worker reloads its own
                reloadWorkers()
                forwarded = True
        if not results and not forwarded:
            log.info("SIGHUP: no listener has TLS files to reload (ssl: and jsonproto-tls: have)")
        return results

    def stopService(self) -> Deferred[Any]:
        if self._restoreHangup is not None:
            self._restoreHangup()
            self._restoreHangup = None
        stopped: Deferred[Any] = super().stopService()
        return stopped.addCallback(lambda _: self._drain()).addBoth(self._flushRefusals)

    def _flushRefusals(self, result: Any) -> Any:
        refusalLog(self.connections, self.clock).flush()
        return result

    def _drain(self) -> Deferred[None]:
        restoreSignals = self._quietRepeatedSignals()
        count = len(self.connections)
        if count:
            log.info(
                "draining {count} {connections} (at most {timeout:g} seconds)",
                count=count,
                connections="connection" if count == 1 else "connections",
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


class ListenerService(Service):
    """
    Listens on one endpoint description, as C{strports.service} does, with
    two differences an operator sees:

      - a failure to listen ends the start with one line naming the
        endpoint and the reason (L{CannotListen}), instead of a traceback,
        or a daemon that runs listening on nothing;
      - stopping takes every connection the kernel has already accepted
        (handshake done, waiting in the accept queue) before the socket
        closes, so that none is reset: they are drained like the others.

    @ivar description: The endpoint string as the operator gave it.
    @ivar endpoint: The endpoint it listens on.
    @ivar factory: The factory of its connections.
    @ivar port: The listening port, once listening.
    """

    port: IListeningPort | None = None
    _listening: Deferred[IListeningPort] | None = None

    def __init__(
        self,
        reactor: Any,
        description: str,
        factory: IProtocolFactory,
        backlog: int | None = None,
        reusePort: bool = False,
    ) -> None:
        listen = description if backlog is None else withBacklog(description, backlog)
        self.endpoint = reusePortEndpoint(reactor, listen) if reusePort else listeningEndpoint(reactor, listen)
        self.factory = factory
        self.description = description
        self._waiters: list[Deferred[IListeningPort]] = []

    def privilegedStartService(self) -> None:
        """
        Listen now (twistd calls this before it gives up root).

        @raise CannotListen: If the endpoint cannot listen.
        """
        super().privilegedStartService()
        self._listening = self.endpoint.listen(self.factory)
        outcome: list[Any] = []
        self._listening.addBoth(outcome.append)
        if not outcome:  # an endpoint that listens later: report its failure then
            self._listening.addCallbacks(self._listened, self._failedLater)
            return
        if isinstance(outcome[0], Failure):
            self._listening = None
            raise cannotListen(self.description, outcome[0].value) from None
        self._listened(outcome[0])

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port)
        return port

    def _failedLater(self, failure: Failure) -> None:
        if failure.check(CancelledError):  # stopped before it listened
            return
        log.critical("{why}", why=str(cannotListen(self.description, failure.value)))

    def startService(self) -> None:
        if self._listening is None:
            self.privilegedStartService()
        super().startService()

    def whenListening(self) -> Deferred[IListeningPort]:
        """
        Fires with the listening port (to learn the port number the kernel
        chose for port 0).
        """
        if self.port is not None:
            return succeed(self.port)
        waiter: Deferred[IListeningPort] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def stopService(self) -> Deferred[None]:
        super().stopService()
        listening, self._listening = self._listening, None
        port, self.port = self.port, None
        if port is None:
            if listening is not None:
                listening.cancel()
            return succeed(None)
        stopAdmitting(port)
        acceptQueued(port)
        return maybeDeferred(port.stopListening)  # type: ignore[call-overload]  # a Deferred or None


def _restore(number: int, handler: Any) -> None:
    """
    Put back the handler a signal had.
    """
    signal.signal(number, handler)
