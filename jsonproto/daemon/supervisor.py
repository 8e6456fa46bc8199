"""
Several processes serving the same ports, to use every core of a machine.

C{twistd jsonproto --workers N} starts N worker processes, each a complete
daemon (the same options, less C{--workers}), which bind the same ports with
C{SO_REUSEPORT} (C{tcp:}, C{tcp6:}, C{ssl:}, C{jsonproto-tls:}, and
C{haproxy:} around them): the kernel spreads new connections over them.  The
parent only supervises: it restarts a worker that dies, and on SIGTERM it
passes the signal on and waits for every worker to drain.

Limits (C{--max-connections}, C{--max-connections-per-ip}) are per worker;
the parent serves C{--metrics} for all, each sample labelled with its
worker (it scrapes them over Unix sockets); workers log to the parent's standard output, so run the parent
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


@implementer(IStreamServerEndpoint)
class ReusePortSSLEndpoint(ReusePortTCPEndpoint):
    """
    Twisted's C{ssl:} server endpoint, bound with C{SO_REUSEPORT}.
    """

    def __init__(self, reactor: Any, port: int, backlog: int, interface: str, contextFactory: Any) -> None:
        super().__init__(reactor, port, backlog, interface)
        self.contextFactory = contextFactory

    def listen(self, factory: Any) -> Deferred[Any]:
        from twisted.internet import defer, tcp

        binding = tcp.makeBinding(self.interface, self.port, reuseAddress=True, reusePort=True)
        return defer.execute(
            self.reactor.listenSSL, binding, factory, self.contextFactory, self.backlog, self.interface
        )


class CannotShare(ValueError):
    """
    An endpoint that several processes cannot listen on at once.
    """


def shareable(reactor: Any, endpoint: Any) -> Any:
    """
    The same endpoint, bound with C{SO_REUSEPORT}: C{tcp:}, C{tcp6:},
    C{ssl:}, C{jsonproto-tls:} and C{haproxy:} around any of them.

    @raise CannotShare: For any other (a Unix socket, systemd's sockets).
    """
    from jsonproto.server.tls import TLSServerEndpoint

    if isinstance(endpoint, (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint)):
        return ReusePortTCPEndpoint(reactor, endpoint._port, endpoint._backlog, endpoint._interface)
    if isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        return ReusePortSSLEndpoint(
            reactor, endpoint._port, endpoint._backlog, endpoint._interface, endpoint._sslContextFactory
        )
    if isinstance(endpoint, TLSServerEndpoint):
        return TLSServerEndpoint(shareable(reactor, endpoint.tcp), endpoint.tls)
    wrapped = getattr(endpoint, "_wrappedEndpoint", None)
    if wrapped is not None:  # haproxy: (Twisted's _WrapperServerEndpoint)
        return type(endpoint)(shareable(reactor, wrapped), endpoint._wrapperFactory)
    raise CannotShare(f"{type(endpoint).__name__} cannot be shared by several processes")


def reusePortEndpoint(reactor: Any, description: str) -> Any:
    """
    The endpoint for C{description}, bound with C{SO_REUSEPORT}.

    @raise CannotShare: If it cannot be.
    """
    from jsonproto.server.endpoints import listeningEndpoint

    return shareable(reactor, listeningEndpoint(reactor, description))


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

    def __init__(self, count: int, arguments: Any, shutdownTimeout: float, reactor: Any) -> None:
        self.count = count
        # A list of arguments, or a function of the worker's index giving them.
        self.arguments = arguments if callable(arguments) else (lambda index: arguments)
        self.shutdownTimeout = shutdownTimeout
        self.reactor = reactor
        self.workers: dict[int, tuple[_Worker, Any]] = {}

    def startService(self) -> None:
        super().startService()
        for index in range(self.count):
            self._start(index)

    def _start(self, index: int) -> None:
        worker = _Worker(self, index)
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *self.arguments(index)]
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


def workerArguments(rawArguments: list[str], metricsSocket: str | None = None) -> list[str]:
    """
    The twistd command line of a worker: the daemon's own options, less
    C{--workers} and C{--metrics} (the parent serves those, merged), in the
    foreground, reusing ports; its metrics on C{metricsSocket}, if given.
    """
    arguments: list[str] = []
    skip = False
    for argument in rawArguments:
        if skip:
            skip = False
            continue
        if argument in ("--workers", "--metrics"):
            skip = True
            continue
        if argument.startswith(("--workers=", "--metrics=")):
            continue
        arguments.append(argument)
    if metricsSocket is not None:
        arguments += ["--metrics", f"unix:{metricsSocket}"]
    return ["-n", "--pidfile=", "jsonproto", *arguments, "--reuse-port"]



def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def mergeMetrics(texts: dict[str, str]) -> str:
    """
    Several workers' Prometheus texts as one, each sample labelled with its
    worker; the samples of a metric family stay together, as the format
    requires.
    """
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, tuple[str, str, list[str]]] = {}
    for worker, text in texts.items():
        for family in text_string_to_metric_families(text):
            entry = families.setdefault(family.name, (family.type, family.documentation, []))
            for sample in family.samples:
                labels = {"worker": worker, **sample.labels}
                rendered = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
                entry[2].append(f"{sample.name}{{{rendered}}} {sample.value!r}")
    lines = []
    for name, (kind, documentation, samples) in families.items():
        lines.append(f"# HELP {name} {documentation}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n"


class MergedMetricsResource:
    """
    A twisted.web resource for C{/metrics} on the parent: it scrapes every
    worker's metrics over its Unix socket and serves them merged.
    """

    def __new__(cls, sockets: dict[str, str], reactor: Any) -> Any:
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET

        class Merged(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> Any:
                from twisted.internet.defer import gatherResults
                from twisted.web.client import Agent, readBody

                def fetch(path: str) -> Deferred[bytes]:
                    agent = Agent.usingEndpointFactory(reactor, _UnixEndpoints(reactor, path))
                    return agent.request(b"GET", b"http://worker/metrics").addCallback(readBody)

                workers = sorted(sockets)
                fetched = [fetch(sockets[w]).addErrback(lambda f: b"") for w in workers]

                def respond(bodies: list[bytes]) -> None:
                    text = mergeMetrics({w: b.decode() for w, b in zip(workers, bodies) if b})
                    request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
                    request.write(text.encode())
                    request.finish()

                gatherResults(fetched).addCallback(respond)
                return NOT_DONE_YET

        root = Resource()
        root.putChild(b"metrics", Merged())
        return root


class _UnixEndpoints:
    def __init__(self, reactor: Any, path: str) -> None:
        self.reactor = reactor
        self.path = path

    def endpointForURI(self, uri: Any) -> Any:
        return endpoints.UNIXClientEndpoint(self.reactor, self.path)
