"""
The C{twistd jsonproto} command: its options and the service they build.

The plugin in C{twisted/plugins/jsonproto_plugin.py} names this module by
string, so listing twistd's plugins does not import it.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import tempfile
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.python import usage
from twisted.web.server import Site

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.server.registry import DEFAULT_MAX_CONNECTIONS, ConnectionRegistry
from jsonproto.server.echo import EchoFactory
from jsonproto.limits import Limits
from jsonproto.daemon.metrics import metricsSite, registerStats
from jsonproto.core.pipeline import ENVELOPES
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.protocol import FRAMINGS
from jsonproto.server.endpoints import listeningEndpoint
from jsonproto.daemon.service import DEFAULT_SHUTDOWN_TIMEOUT, JSONProtoService, ListenerService
from jsonproto.daemon.supervisor import MergedMetricsResource, WorkerSupervisor, workerArguments

DEFAULT_PORT = "tcp:3001:interface=127.0.0.1"
DEFAULT_BACKLOG = 4096


class _ParseOnlyReactor:
    """
    Stands in for the reactor while endpoint strings are checked, so that
    parsing options installs no reactor (twistd chooses it later).
    """


def _checkEndpoint(option: str, description: str) -> str:
    try:
        listeningEndpoint(_ParseOnlyReactor(), description)
    except (ValueError, KeyError, TypeError) as e:
        raise usage.UsageError(
            f"--{option} {description!r} is not a server endpoint description "
            f"({e}); examples: tcp:3001, tcp6:3001:interface=\\:\\:1, unix:/run/jsonproto.sock, "
            "ssl:3443:privateKey=key.pem"
        ) from None
    except IndexError:
        # The systemd parser looks the socket up in LISTEN_FDS as it parses.
        raise usage.UsageError(
            f"--{option} {description!r}: systemd passed no socket at that index "
            "(LISTEN_FDS is unset or too small); start the daemon from a systemd "
            "socket unit, or use a tcp: or unix: endpoint"
        ) from None
    except OSError as e:
        raise usage.UsageError(f"--{option} {description!r}: {e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None
    except Exception as e:
        # Endpoint parsers load certificates and such; their errors vary.
        raise usage.UsageError(f"--{option} {description!r}: {e}") from None
    return description


class _NumberOption:
    """
    One numeric option: parsed, checked, and documented with its default.
    """

    def __init__(self, name: str, kind: type, minimum: float, default: float, help: str) -> None:
        self.name = name
        self.kind = kind
        self.minimum = minimum
        self.default = default
        self.help = help

    def parse(self, text: str) -> float:
        what = "a whole number" if self.kind is int else "a number"
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not (self.minimum <= value < math.inf):
            raise usage.UsageError(f"--{self.name} must be {what}, {self.minimum:g} or more, not {text!r}")
        return value

    def method(self) -> Callable[[usage.Options, str], None]:
        def opt(options: usage.Options, text: str) -> None:
            options[self.name] = self.parse(text)

        default = int(self.default) if float(self.default).is_integer() else self.default
        opt.__doc__ = f"{self.help} [default: {default}]"
        return opt


_NUMBERS = [
    _NumberOption("idle-timeout", float, 0, Limits.idleTimeout,
                  "Close a connection that completes no message for this many seconds; 0 never."),
    _NumberOption("max-connections", int, 0, DEFAULT_MAX_CONNECTIONS,
                  'Refuse connections past this many open at once, with "Server busy"; 0 for no limit.'),
    _NumberOption("max-connections-per-ip", int, 0, 0,
                  "Refuse connections past this many open at once from one IP address; 0 for no limit."),
    _NumberOption("backlog", int, 1, DEFAULT_BACKLOG,
                  "Accept queue length of listeners whose endpoint string sets none (Twisted's default is 50)."),
    _NumberOption("max-message-size", int, 1, Limits.maxMessageSize,
                  'The longest message accepted, in bytes; longer ones get "Message too long".'),
    _NumberOption("max-pending", int, 1, Limits.maxPending,
                  "Requests in flight at once per connection; past it, reading pauses."),
    _NumberOption("request-timeout", float, 0, Limits.requestTimeout,
                  'Answer "Request timed out" to a request not answered in this many seconds; 0 never.'),
    _NumberOption("send-timeout", float, 0, Limits.sendTimeout,
                  "Abort a connection whose peer takes none of its replies for this many seconds; 0 never."),
    _NumberOption("message-timeout", float, 0, Limits.messageTimeout,
                  "Close a connection that takes more than this many seconds to send one message; 0 never."),
    _NumberOption("max-errors", int, 0, Limits.maxErrors,
                  "The error budget: close a connection whose bad messages add up to more than this, less those forgiven; 0 never."),
    _NumberOption("error-decay", float, 0, Limits.errorDecay,
                  "Bad messages forgiven a second, so that occasional mistakes never use up the error budget."),
    _NumberOption("turn-budget", float, 0, Limits.turnBudget,
                  "Seconds of work one connection may take before the others get their turn; 0 for no bound."),
    _NumberOption("handshake-timeout", float, 0, Limits.handshakeTimeout,
                  "Drop a TLS connection whose handshake takes longer than this many seconds; 0 never."),
    _NumberOption("shutdown-timeout", float, 0, DEFAULT_SHUTDOWN_TIMEOUT,
                  "On SIGTERM, abort connections still open after this many seconds."),
]


def _chooseReactor() -> None:
    """
    Run on jsonproto's epoll reactor unless a reactor is already installed
    (by C{twistd -r NAME}, or by a program embedding the plugin).
    """
    if "twisted.internet.reactor" in sys.modules:
        return
    try:
        from jsonproto.daemon.epoll import install
    except ImportError:  # no epoll on this platform: Twisted's default
        return
    install()


class Options(usage.Options):
    """
    C{twistd jsonproto} options.  C{--port}, C{--echo} and C{--handlers}
    may be given more than once.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve JSON messages over TCP, TLS or any other Twisted stream endpoint. "
        "Replies to GREETING and SUM, plus whatever --handlers modules register."
    )

    optFlags = [
        ["enable-stats", None, "Answer the STATS message type (uptime, connections, traffic) on every --port."],
        ["log-messages", None, "Log every message received and sent (for debugging: it costs more than the messages)."],
        ["reuse-port", None, "Bind the ports with SO_REUSEPORT, so several daemons share them (--workers does this)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["metrics"] = []
        self["workers"] = 1
        self["ports"] = []
        self["echo"] = []
        self["handlers"] = []
        self["framing"] = "line"
        self["envelope"] = "jsonproto"
        for option in _NUMBERS:
            self[option.name] = option.default

    def opt_port(self, description: str) -> None:
        """Serve JSON messages on this endpoint, any Twisted server endpoint string (tcp:, tcp6:, unix:, ssl:, systemd:, haproxy:) or jsonproto-tls: (mutual TLS, reload on SIGHUP). Repeatable. [default: tcp:3001:interface=127.0.0.1]"""
        self["ports"].append(_checkEndpoint("port", description))

    def opt_echo(self, description: str) -> None:
        """Serve byte-for-byte echo (RFC 862) on this endpoint. Repeatable. [default: none]"""
        self["echo"].append(_checkEndpoint("echo", description))

    def opt_metrics(self, description: str) -> None:
        """Serve Prometheus metrics over HTTP at /metrics on this endpoint, e.g. tcp:9101:interface=127.0.0.1. Repeatable. [default: none]"""
        self["metrics"].append(_checkEndpoint("metrics", description))

    def opt_workers(self, count: str) -> None:
        """Run this many worker processes sharing the ports (SO_REUSEPORT), or "auto" for one per CPU; the parent restarts any that die. [default: 1]"""
        if count == "auto":
            self["workers"] = os.cpu_count() or 1
            return
        try:
            value = int(count)
        except ValueError:
            value = 0
        if value < 1:
            raise usage.UsageError(f"--workers must be a whole number, 1 or more, or auto, not {count!r}")
        self["workers"] = value

    def parseOptions(self, options: list[str] | None = None) -> None:
        # Kept for --workers, which starts workers with the same options.
        self.rawArguments = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_framing(self, name: str) -> None:
        """Message framing on the --port listeners: line (newline-delimited JSON) or int32 (4-byte big-endian length prefix). [default: line]"""
        if name not in FRAMINGS:
            raise usage.UsageError(
                f"--framing must be one of {', '.join(FRAMINGS)}, not {name!r}"
            )
        self["framing"] = name

    def opt_envelope(self, name: str) -> None:
        """Message envelope on the --port listeners: jsonproto (type, id, status) or jsonrpc (JSON-RPC 2.0: method, params, result, error; batches and notifications). [default: jsonproto]"""
        if name not in ENVELOPES:
            raise usage.UsageError(f"--envelope must be one of {', '.join(ENVELOPES)}, not {name!r}")
        self["envelope"] = name

    def opt_handlers(self, moduleName: str) -> None:
        """Import this Python module and call its register(dispatcher) to add message types. Repeatable."""
        try:
            module = importlib.import_module(moduleName)
        except Exception as e:
            raise usage.UsageError(
                f"--handlers {moduleName!r} cannot be imported: {type(e).__name__}: {e}"
            ) from None
        if not callable(getattr(module, "register", None)):
            raise usage.UsageError(
                f"--handlers {moduleName!r} has no register(dispatcher) function to call"
            )
        self["handlers"].append(module)

    def postOptions(self) -> None:
        _chooseReactor()
        if not self["ports"]:
            self["ports"].append(DEFAULT_PORT)
        dispatcher = defaultDispatcher()
        for module in self["handlers"]:
            try:
                module.register(dispatcher)
            except Exception as e:
                raise usage.UsageError(
                    f"--handlers {module.__name__!r}: register(dispatcher) failed: "
                    f"{type(e).__name__}: {e}"
                ) from None
        self["dispatcher"] = dispatcher
        if self["workers"] > 1 or self["reuse-port"]:
            from jsonproto.daemon.supervisor import CannotShare, reusePortEndpoint

            for option, descriptions in (("port", self["ports"]), ("echo", self["echo"])):
                for description in descriptions:
                    try:
                        reusePortEndpoint(_ParseOnlyReactor(), description)
                    except CannotShare:
                        raise usage.UsageError(
                            f"--{option} {description!r} cannot be shared by --workers (SO_REUSEPORT "
                            "works for tcp:, tcp6:, ssl:, jsonproto-tls: and haproxy: around them); "
                            "use one of those, or run one daemon per such listener"
                        ) from None
        self["limits"] = Limits(
            idleTimeout=self["idle-timeout"],
            maxMessageSize=self["max-message-size"],
            maxPending=self["max-pending"],
            requestTimeout=self["request-timeout"],
            sendTimeout=self["send-timeout"],
            messageTimeout=self["message-timeout"],
            maxErrors=self["max-errors"],
            errorDecay=self["error-decay"],
            turnBudget=self["turn-budget"],
            handshakeTimeout=self["handshake-timeout"],
        )


for _option in _NUMBERS:
    # usage.Options finds opt_* methods by name, in --help too.
    setattr(Options, "opt_" + _option.name.replace("-", "_"), _option.method())


def makeService(config: Options, reactor: Any = None) -> JSONProtoService:
    """
    Build the daemon: one listener per C{--port} and C{--echo}, all sharing
    one connection registry, so C{--max-connections} counts them together.

    A listener that cannot start (a port in use) fails the start: twistd
    exits with status 1 instead of running with nothing to serve.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    if config["workers"] > 1:
        top = MultiService()
        sockets: dict[str, str] = {}
        if config["metrics"]:
            directory = tempfile.mkdtemp(prefix="jsonproto-metrics-")
            sockets = {str(i): os.path.join(directory, f"worker-{i}.sock") for i in range(config["workers"])}
            site = Site(MergedMetricsResource(sockets, reactor))
            site.noisy = False
            for description in config["metrics"]:
                ListenerService(reactor, description, site).setServiceParent(top)
        WorkerSupervisor(
            config["workers"],
            lambda index: workerArguments(config.rawArguments, sockets.get(str(index))),
            config["shutdown-timeout"],
            reactor,
        ).setServiceParent(top)
        return top  # type: ignore[return-value]
    connections = ConnectionRegistry(config["max-connections"], config["max-connections-per-ip"])
    jsonFactory = JSONServerFactory(
        config["dispatcher"],
        framing=config["framing"],
        envelope=config["envelope"],
        limits=config["limits"],
        connections=connections,
        clock=reactor,
        logMessages=bool(config["log-messages"]),
    )
    echoFactory = EchoFactory(limits=config["limits"], connections=connections, clock=reactor)
    top = JSONProtoService(connections, config["shutdown-timeout"], reactor)
    if config["enable-stats"] and "STATS" not in config["dispatcher"].messageTypes:
        registerStats(config["dispatcher"], connections, reactor)
    for description in config["ports"]:
        ListenerService(reactor, description, jsonFactory, config["backlog"], config["reuse-port"]).setServiceParent(top)
    for description in config["echo"]:
        ListenerService(reactor, description, echoFactory, config["backlog"], config["reuse-port"]).setServiceParent(top)
    if config["metrics"]:
        site = metricsSite(connections, config["dispatcher"], listeners=top)
        for description in config["metrics"]:
            ListenerService(reactor, description, site).setServiceParent(top)
    return top
