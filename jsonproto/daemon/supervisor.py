"""
Several processes serving the same ports, to use every core of a machine.

C{twistd jsonproto --workers N} starts N worker processes, each a complete
daemon (the same options, less C{--workers}), which bind the same ports with
C{SO_REUSEPORT} (C{tcp:}, C{tcp6:}, C{ssl:}, C{jsonproto-tls:}, and
C{haproxy:} around them): the kernel spreads new connections over them.  The
parent only supervises: it restarts a worker that dies (waiting longer each
time one keeps dying as it starts, and giving up after L{MAX_FAILURES} such
deaths in a row), passes SIGHUP on, and on SIGTERM passes the signal on and
waits for every worker to drain.

Limits (C{--max-connections}, C{--max-connections-per-ip}) are per worker;
the parent serves C{--metrics} for all, each sample labelled with its
worker (it scrapes them over Unix sockets); workers log to the parent's standard output, so run the parent
in the foreground (C{twistd -n}, as under systemd).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import endpoints, protocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

log = Logger()

RESTART_DELAY = 1.0
"""Seconds before a worker that died is started again, the first time."""
MAX_RESTART_DELAY = 30.0
"""The longest wait before a restart: the delay doubles up to this."""
STABLE_AFTER = 30.0
"""A worker that ran this many seconds before it died was not failing to start."""
MAX_FAILURES = 6
"""
After this many deaths in a row of one worker, each within L{STABLE_AFTER}
seconds of its start, the supervisor gives up: it stops the daemon and
exits with status 1.  With the delays above, that is about 31 seconds of
retrying (1 + 2 + 4 + 8 + 16) plus the workers' own start times.
"""


def restartDelay(failures: int) -> float:
    """
    How long to wait before starting a worker again after its
    C{failures}th quick death in a row (0: it had run a while).
    """
    return min(RESTART_DELAY * 2 ** max(failures - 1, 0), MAX_RESTART_DELAY)


def stopWithStatus(reactor: Any, status: int) -> None:
    """
    Stop the reactor, and make the process exit with C{status} once twistd
    has finished (its PID file removed, its log closed).

    twistd itself exits 0 after its reactor stops; the status is forced in
    an C{atexit} handler, registered only once the reactor has shut down.
    """

    def exitNow() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status)

    reactor.addSystemEventTrigger("after", "shutdown", atexit.register, exitNow)
    reactor.stop()


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, index: int, startedAt: float) -> None:
        self.supervisor = supervisor
        self.index = index
        self.startedAt = startedAt
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        self.supervisor.workerEnded(self, reason)


class WorkerSupervisor(Service):
    """
    Runs N workers and keeps them running: a worker that dies is started
    again, after a delay that doubles while it keeps dying soon after it
    starts (L{restartDelay}); after L{MAX_FAILURES} such deaths in a row
    the supervisor gives up, instead of restarting it forever.

    @ivar arguments: A function of a worker's index and its metrics socket
        (or L{None}), giving its twistd arguments.
    @ivar workers: The running workers, by index.
    @ivar metricsDirectory: With C{metrics}, the directory of the workers'
        metrics sockets while running; removed when the workers are gone.
    """

    metricsDirectory: str | None = None

    def __init__(
        self,
        count: int,
        arguments: Callable[[int, str | None], list[str]],
        shutdownTimeout: float,
        reactor: Any,
        *,
        metrics: bool = False,
        giveUp: Callable[[], None] | None = None,
        maxFailures: int = MAX_FAILURES,
    ) -> None:
        self.count = count
        self.arguments = arguments
        self.shutdownTimeout = shutdownTimeout
        self.reactor = reactor
        self.metrics = metrics
        self.giveUp = giveUp if giveUp is not None else (lambda: stopWithStatus(reactor, 1))
        self.maxFailures = maxFailures
        self.workers: dict[int, tuple[_Worker, Any]] = {}
        self.failures: dict[int, int] = {}
        self._restarts: dict[int, Any] = {}

    def metricsSocket(self, index: int) -> str | None:
        """
        Where worker C{index} serves its metrics, if workers serve them.
        """
        if self.metricsDirectory is None:
            return None
        return os.path.join(self.metricsDirectory, f"worker-{index}.sock")

    def metricsSockets(self) -> dict[str, str]:
        """
        Every worker's metrics socket, by worker index as text.
        """
        sockets = {str(index): self.metricsSocket(index) for index in range(self.count)}
        return {index: path for index, path in sockets.items() if path is not None}

    def startService(self) -> None:
        super().startService()
        if self.metrics:
            self.metricsDirectory = tempfile.mkdtemp(prefix="jsonproto-metrics-")
        for index in range(self.count):
            self._start(index)

    def _start(self, index: int) -> None:
        worker = _Worker(self, index, self.reactor.seconds())
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *self.arguments(index, self.metricsSocket(index))]
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
        if not self.running:
            return
        ranFor = self.reactor.seconds() - worker.startedAt
        failures = 0 if ranFor >= STABLE_AFTER else self.failures.get(worker.index, 0) + 1
        self.failures[worker.index] = failures
        if failures >= self.maxFailures:
            log.critical(
                "worker {index} ended {failures} times in a row, each within {stable:g} seconds of starting "
                "(last: {reason}); giving up: stopping the daemon",
                index=worker.index,
                failures=failures,
                stable=STABLE_AFTER,
                reason=reason.getErrorMessage(),
            )
            self.giveUp()
            return
        delay = restartDelay(failures)
        log.warn(
            "worker {index} ended ({reason}); starting another in {delay:g} seconds",
            index=worker.index,
            reason=reason.getErrorMessage(),
            delay=delay,
        )
        self._restarts[worker.index] = self.reactor.callLater(delay, self._restart, worker.index)

    def _restart(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self.running and index not in self.workers:
            self._start(index)

    def reloadWorkers(self) -> None:
        """
        Pass SIGHUP on to every worker: each reloads its certificates.
        """
        for worker, transport in list(self.workers.values()):
            try:
                transport.signalProcess("HUP")
            except Exception:
                continue

    def stopService(self) -> Deferred[Any]:
        """
        Pass SIGTERM on; wait for every worker to drain and exit, killing
        any still alive well after its own shutdown timeout.
        """
        super().stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        waiting = []
        for index, (worker, transport) in list(self.workers.items()):
            waiting.append(worker.ended)
            try:
                transport.signalProcess("TERM")
            except Exception:
                continue
            kill = self.reactor.callLater(self.shutdownTimeout + 5, self._kill, transport)
            worker.ended.addBoth(_cancelTimer, kill)
        return DeferredList(waiting).addBoth(self._removeMetricsDirectory)

    def _removeMetricsDirectory(self, result: Any) -> Any:
        directory, self.metricsDirectory = self.metricsDirectory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        return result

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

    @param sockets: Gives the workers' metrics sockets, by worker, at the
        time of a scrape (see L{WorkerSupervisor.metricsSockets}).
    """

    def __new__(cls, sockets: Callable[[], dict[str, str]], reactor: Any) -> Any:
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

                paths = sockets()
                workers = sorted(paths)
                fetched = [fetch(paths[w]).addErrback(lambda f: b"") for w in workers]

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


def _cancelTimer(result: object, timer: IDelayedCall) -> object:
    """
    A worker ended in time: it need not be killed.
    """
    if timer.active():
        timer.cancel()
    return result
