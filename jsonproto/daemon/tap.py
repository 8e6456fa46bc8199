"""
The C{twistd jsonproto} command: the service its options
(L{jsonproto.daemon.options}) assemble.

The plugin in C{twisted/plugins/jsonproto_plugin.py} names this module by
string, so listing twistd's plugins does not import it.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.web.server import Site

from jsonproto.daemon.handlers import HandlersFailed, loadDispatcher
from jsonproto.daemon.listening import CannotListen, checkCanListen
from jsonproto.daemon.metrics import metricsSite, registerStats
from jsonproto.daemon.options import DEFAULT_PORT, LOG_LEVELS, Options
from jsonproto.daemon.service import JSONProtoService, ListenerService
from jsonproto.daemon.supervisor import MergedMetricsResource, WorkerSupervisor, workerArguments
from jsonproto.channels.broker import Broker
from jsonproto.channels.engine import IEngine, MemoryEngine
from jsonproto.channels.redis import redisEngine
from jsonproto.channels.messages import register as registerChannels
from jsonproto.channels.service import ChannelsService
from jsonproto.core.budget import BufferBudget
from jsonproto.server.echo import EchoFactory
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.registry import ConnectionRegistry

__all__ = ["DEFAULT_PORT", "Options", "makeService"]


def makeService(config: Options, reactor: Any = None) -> JSONProtoService:
    """
    Build the daemon: one listener per C{--port}, C{--echo} and
    C{--metrics}, all sharing one connection registry (so
    C{--max-connections} counts them together); or, with C{--workers}, the
    supervisor of the worker processes that serve them.

    The reactor is chosen before any C{--handlers} module is imported, so a
    module that imports C{twisted.internet.reactor} gets this one.

    @raise SystemExit: With a one-line reason (twistd prints it and exits
        with status 1) if a C{--handlers} module cannot be loaded or a port
        cannot be listened on.
    """
    if reactor is None:
        reactor = installReactor()
    try:
        return assemble(config, reactor)
    except (HandlersFailed, CannotListen) as e:
        raise SystemExit(f"twistd jsonproto: {e}") from None


def installReactor() -> Any:
    """
    Run on jsonproto's epoll reactor, unless a reactor is already installed
    (by C{twistd -r NAME}, or by a program embedding the plugin).

    @return: The reactor.
    """
    if "twisted.internet.reactor" not in sys.modules:
        try:
            from jsonproto.daemon.epoll import install
        except ImportError:  # no epoll on this platform: Twisted's default
            pass
        else:
            install()
    from twisted.internet import reactor

    return reactor


def assemble(config: Options, reactor: Any) -> JSONProtoService:
    """
    The daemon's services, as L{makeService} builds them.

    @raise HandlersFailed: See L{loadDispatcher}.
    @raise CannotListen: If a listener's address cannot be bound.
    """
    broker = channelsFor(config, reactor)
    dispatcher = loadDispatcher(
        config["handlers"],
        seedTypes=not config["no-seed-types"],
        prepare=None if broker is None else lambda d: registerChannels(d, broker),
    )
    shared = config["workers"] > 1 or bool(config["reuse-port"])
    for description in config["ports"] + config["echo"]:
        checkCanListen(description, reusePort=shared)
    for description in config["metrics"]:
        checkCanListen(description)
    # The default, info, is what twistd logs anyway: its observers are left
    # alone (and a test process that starts many services keeps its own).
    level = None if config["log-level"] == "info" else LOG_LEVELS[config["log-level"]]
    connections = ConnectionRegistry(
        config["max-connections"],
        config["max-connections-per-ip"],
        BufferBudget(config["max-buffered-bytes"], config["max-buffered-bytes-per-ip"]),
        config["per-ip-exempt"],
    )
    top = JSONProtoService(connections, config["shutdown-timeout"], reactor, logLevel=level)
    if config["workers"] > 1:
        addWorkers(top, config, reactor)
        return top
    if broker is not None:
        ChannelsService(broker).setServiceParent(top)
    jsonFactory = JSONServerFactory(
        dispatcher,
        framing=config["framing"],
        envelope=config["envelope"],
        limits=config["limits"],
        connections=connections,
        clock=reactor,
        logMessages=bool(config["log-messages"]),
    )
    echoFactory = EchoFactory(limits=config["limits"], connections=connections, clock=reactor)
    if config["enable-stats"] and "STATS" not in dispatcher.messageTypes:
        registerStats(dispatcher, connections, reactor)
    for description in config["ports"]:
        ListenerService(reactor, description, jsonFactory, config["backlog"], config["reuse-port"]).setServiceParent(top)
    for description in config["echo"]:
        ListenerService(reactor, description, echoFactory, config["backlog"], config["reuse-port"]).setServiceParent(top)
    if config["metrics"]:
        site = metricsSite(connections, dispatcher, listeners=top)
        for description in config["metrics"]:
            ListenerService(reactor, description, site).setServiceParent(top)
    return top


def channelsFor(config: Options, reactor: Any) -> Broker | None:
    """
    With C{--channels}, the process's broker: on the Redis of
    C{--redis} (shared with every daemon and worker using it), or else on
    an engine in its memory.
    """
    if not config["channels"]:
        return None
    engine: IEngine
    if config["redis"]:
        engine = redisEngine(
            reactor, config["redis"], size=config["channel-history"], seconds=config["channel-history-seconds"],
            prefix=config["redis-prefix"],
        )
    else:
        engine = MemoryEngine(
            reactor, size=config["channel-history"], seconds=config["channel-history-seconds"],
            maxMemory=config["channel-memory"],
        )
    return Broker(
        engine,
        reactor,
        maxQueuedBytes=config["max-queued-bytes"],
        policy=config["slow-subscriber"],
        maxSubscriptions=config["max-subscriptions"],
    )


def addWorkers(top: JSONProtoService, config: Options, reactor: Any) -> None:
    """
    With C{--workers}: the supervisor of the worker processes, and the
    C{--metrics} listeners, which serve every worker's metrics merged.
    """
    supervisor = WorkerSupervisor(
        config["workers"],
        lambda index, metricsSocket: workerArguments(config.rawArguments, metricsSocket),
        config["shutdown-timeout"],
        reactor,
        metrics=bool(config["metrics"]),
    )
    if config["metrics"]:
        site = Site(MergedMetricsResource(supervisor.metricsSockets, reactor))
        site.noisy = False
        for description in config["metrics"]:
            ListenerService(reactor, description, site).setServiceParent(top)
    supervisor.setServiceParent(top)
