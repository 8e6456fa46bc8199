"""
Several processes serving the same ports, to use every core of a machine.

C{twistd jsonproto --workers N} starts N worker processes, each a complete
daemon (the same options, less C{--workers}), which bind the same TCP ports
with C{SO_REUSEPORT}: the kernel spreads new connections over them.  The
parent only supervises: it restarts a worker that dies, and on SIGTERM it
passes the signal on and waits for every worker to drain.

Limits (C{--max-connections}, C{--max-connections-per-ip}) and metrics are
per worker; workers log to the parent's standard output, so run the parent
in the foreground (C{twistd -n}, as under systemd).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints, protocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

RESTART_DELAY = 1.0


@implementer(IStreamServerEndpoint)
class ReusePortTCPEndpoint:
    """
    A TCP server endpoint that binds with C{SO_REUSEPORT}, so that several
    processes can listen on one port.
    """

    def __init__(self, reactor: Any, port: int, backlog: int, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: Any) -> Deferred[Any]:
        from twisted.internet import defer, tcp

        binding = tcp.makeBinding(self.interface, self.port, reuseAddress=True, reusePort=True)
        return defer.execute(self.reactor.listenTCP, binding, factory, self.backlog, self.interface)


def reusePortEndpoint(reactor: Any, description: str) -> Any:
    """
    The endpoint for C{description}, bound with C{SO_REUSEPORT} if it is a
    plain C{tcp:} or C{tcp6:} one.
    """
    endpoint = endpoints.serverFromString(reactor, description)
    if isinstance(endpoint, (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint)):
        return ReusePortTCPEndpoint(reactor, endpoint._port, endpoint._backlog, endpoint._interface)
    return endpoint


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        self.supervisor.workerEnded(self, reason)


class WorkerSupervisor(Service):
    """
    Runs N workers and keeps them running.

    @ivar arguments: The twistd arguments of a worker.
    @ivar workers: The running workers, by index.
    """

    def __init__(self, count: int, arguments: list[str], shutdownTimeout: float, reactor: Any) -> None:
        self.count = count
        self.arguments = arguments
        self.shutdownTimeout = shutdownTimeout
        self.reactor = reactor
        self.workers: dict[int, tuple[_Worker, Any]] = {}

    def startService(self) -> None:
        super().startService()
        for index in range(self.count):
            self._start(index)

    def _start(self, index: int) -> None:
        worker = _Worker(self, index)
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *self.arguments]
        env = dict(os.environ, JSONPROTO_WORKER=str(index))
        # Workers log to the parent's standard output and error, as they are.
        transport = self.reactor.spawnProcess(
            worker, sys.executable, argv, env=env, childFDs={0: "w", 1: 1, 2: 2}
        )
        self.workers[index] = (worker, transport)
        log.info("worker {index} started, process {pid}", index=index, pid=transport.pid)

    def workerEnded(self, worker: _Worker, reason: Any) -> None:
        if self.workers.get(worker.index, (None,))[0] is worker:
            del self.workers[worker.index]
        if self.running:
            log.warn(
                "worker {index} ended ({reason}); starting another in {delay:g} seconds",
                index=worker.index,
                reason=reason.getErrorMessage(),
                delay=RESTART_DELAY,
            )
            self.reactor.callLater(RESTART_DELAY, self._restart, worker.index)

    def _restart(self, index: int) -> None:
        if self.running and index not in self.workers:
            self._start(index)

    def stopService(self) -> Deferred[Any]:
        """
        Pass SIGTERM on; wait for every worker to drain and exit, killing
        any still alive well after its own shutdown timeout.
        """
        super().stopService()
        waiting = []
        for index, (worker, transport) in list(self.workers.items()):
            waiting.append(worker.ended)
            try:
                transport.signalProcess("TERM")
            except Exception:
                continue
            kill = self.reactor.callLater(self.shutdownTimeout + 5, self._kill, transport)
            worker.ended.addBoth(lambda result, kill=kill: kill.active() and kill.cancel())
        return DeferredList(waiting)

    def _kill(self, transport: Any) -> None:
        try:
            transport.signalProcess("KILL")
        except Exception:
            pass


def workerArguments(rawArguments: list[str]) -> list[str]:
    """
    The twistd command line of a worker: the daemon's own options, less
    C{--workers}, in the foreground, reusing ports.
    """
    arguments: list[str] = []
    skip = False
    for argument in rawArguments:
        if skip:
            skip = False
            continue
        if argument == "--workers":
            skip = True
            continue
        if argument.startswith("--workers="):
            continue
        arguments.append(argument)
    return ["-n", "--pidfile=", "jsonproto", *arguments, "--reuse-port"]

