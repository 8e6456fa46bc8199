"""
The options of C{twistd jsonproto}: parsed and checked, nothing more.

Parsing has no side effects: it installs no reactor, imports no
C{--handlers} module and listens on nothing (endpoint strings are parsed
against a stand-in reactor, only to check them).  twistd parses options
before it installs the reactor, so anything done here would run on the
wrong one; L{jsonproto.daemon.tap.makeService} does the rest.
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any, Callable, Collection

from twisted.logger import LogLevel
from twisted.python import usage

from jsonproto.daemon.listening import CannotShare, ParseOnlyReactor, parseServer, shareable
from jsonproto.daemon.service import DEFAULT_SHUTDOWN_TIMEOUT
from jsonproto.limits import Limits
from jsonproto.channels.broker import DEFAULT_MAX_SUBSCRIPTIONS
from jsonproto.channels.engine import DEFAULT_CHANNELS_MEMORY, DEFAULT_HISTORY_SECONDS, DEFAULT_HISTORY_SIZE
from jsonproto.channels.outbox import DEFAULT_MAX_QUEUED_BYTES, DISCONNECT, POLICIES
from jsonproto.channels.redis import DEFAULT_PREFIX
from jsonproto.core.budget import DEFAULT_PER_HOST, DEFAULT_TOTAL
from jsonproto.core.pipeline import ENVELOPES
from jsonproto.server.addresses import LOOPBACK, Networks
from jsonproto.server.protocol import FRAMINGS
from jsonproto.server.registry import DEFAULT_MAX_CONNECTIONS

DEFAULT_PORT = "tcp:3001:interface=127.0.0.1"
DEFAULT_BACKLOG = 4096
DEFAULT_MAX_CONNECTIONS_PER_IP = 100
"""
One address may hold at most this many connections: a hundred addresses are
needed to take all of the default C{--max-connections}, while a client
program's connection pool, or a small office behind one NAT address, fits.
"""

LOG_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


def checkEndpoint(option: str, description: str) -> str:
    """
    Check that C{description} is a server endpoint string Twisted can
    parse, with every file it names readable.

    @return: C{description}, unchanged.
    @raise usage.UsageError: Naming the option, and what is wrong.
    """
    try:
        parseServer(description)
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


def number(name: str, kind: type, minimum: float) -> Callable[[str], Any]:
    """
    A coerce function for a numeric option: C{kind} (C{int} or C{float}),
    C{minimum} or more, finite.
    """
    what = "a whole number" if kind is int else "a number"

    def coerce(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (minimum <= value < math.inf):
            raise usage.UsageError(f"--{name} must be {what}, {minimum:g} or more, not {text!r}")
        return value

    return coerce


def _numberParameter(name: str, kind: type, minimum: float, default: float, help: str) -> list[Any]:
    shown = int(default) if float(default).is_integer() else default
    return [name, None, kind(shown), help, number(name, kind, minimum)]


def checkClientEndpoint(option: str, description: str) -> str:
    """
    Check that C{description} is a client endpoint string Twisted can
    parse (parsed against a stand-in reactor: nothing connects).

    @return: C{description}, unchanged.
    @raise usage.UsageError: Naming the option, and what is wrong.
    """
    from twisted.internet.endpoints import clientFromString

    try:
        clientFromString(ParseOnlyReactor(), description)
    except Exception as e:  # each endpoint type's parser raises its own
        raise usage.UsageError(
            f"--{option} {description!r} is not a client endpoint description ({e}); "
            "examples: tcp:127.0.0.1:6379, unix:/run/redis/redis.sock"
        ) from None
    return description


_PREFIX = re.compile(r"[A-Za-z0-9_.:@/=+-]{0,100}\Z")


def redisPrefix(text: str) -> str:
    """
    C{--redis-prefix}: what every key and pub/sub channel name of the
    channels begins with in Redis.
    """
    if not _PREFIX.match(text):
        raise usage.UsageError(
            f"--redis-prefix must be at most 100 letters, digits or _ . : @ / = + -, not {text!r}"
        )
    return text


def oneOf(option: str, choices: Collection[str]) -> Callable[[str], str]:
    """
    The check of C{--option}, whose value must be one of C{choices}.
    """

    def check(name: str) -> str:
        if name not in choices:
            raise usage.UsageError(f"--{option} must be one of {', '.join(choices)}, not {name!r}")
        return name

    return check


def networks(text: str) -> Networks:
    """
    C{--per-ip-exempt}: comma-separated IP networks, or C{none}.
    """
    try:
        return Networks.parse(text)
    except ValueError as e:
        raise usage.UsageError(f"--per-ip-exempt: {e}") from None


def workerCount(text: str) -> int:
    """
    C{--workers}: a count, 1 or more, or C{auto} for one per CPU.
    """
    if text == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise usage.UsageError(f"--workers must be a whole number, 1 or more, or auto, not {text!r}")
    return value


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


class Options(usage.Options):
    """
    C{twistd jsonproto} options.  C{--port}, C{--echo}, C{--metrics} and
    C{--handlers} may be given more than once.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve JSON messages over TCP, TLS or any other Twisted stream endpoint. "
        "Replies to GREETING and SUM (unless --no-seed-types), plus whatever --handlers modules register."
    )

    optFlags = [
        ["enable-stats", None, "Answer the STATS message type (uptime, connections, traffic) on every --port."],
        ["log-messages", None, "Log every message received and sent (for debugging: it costs more than the messages)."],
        ["reuse-port", None, "Bind the ports with SO_REUSEPORT, so several daemons share them (--workers does this)."],
        ["no-seed-types", None, "Do not answer the seed's GREETING and SUM: serve only the --handlers modules' types."],
        ["channels", None, "Answer SUBSCRIBE, UNSUBSCRIBE, PUBLISH and PRESENCE: real-time channels (docs/channels.md)."],
    ]

    optParameters = [
        ["framing", None, "line", "Message framing on the --port listeners: line (newline-delimited JSON) or int32 (4-byte big-endian length prefix).", oneOf("framing", FRAMINGS)],
        ["envelope", None, "jsonproto", "Message envelope on the --port listeners: jsonproto (type, id, status) or jsonrpc (JSON-RPC 2.0: method, params, result, error; batches and notifications).", oneOf("envelope", ENVELOPES)],
        ["workers", None, 1, 'Run this many worker processes sharing the ports (SO_REUSEPORT), or "auto" for one per CPU; the parent restarts any that die.', workerCount],
        ["log-level", None, "info", "Log events of this level and more severe: debug, info, warn or error (warn leaves out a line per connection).", oneOf("log-level", LOG_LEVELS)],
        _numberParameter("idle-timeout", float, 0, Limits.idleTimeout,
                         "Close a connection that completes no message for this many seconds; 0 never."),
        _numberParameter("max-connections", int, 0, DEFAULT_MAX_CONNECTIONS,
                         'Refuse connections past this many open at once, with "Server busy"; 0 for no limit.'),
        _numberParameter("max-connections-per-ip", int, 0, DEFAULT_MAX_CONNECTIONS_PER_IP,
                         "Refuse connections past this many open at once from one IP address; 0 for no limit."),
        ["per-ip-exempt", None, LOOPBACK, 'IP networks the per-address limits spare (--max-connections-per-ip, --max-buffered-bytes-per-ip), comma-separated, or "none".', networks],
        _numberParameter("backlog", int, 1, DEFAULT_BACKLOG,
                         "Accept queue length of listeners whose endpoint string sets none (Twisted's default is 50)."),
        _numberParameter("max-message-size", int, 1, Limits.maxMessageSize,
                         'The longest message accepted, in bytes; longer ones get "Message too long".'),
        _numberParameter("max-pending", int, 1, Limits.maxPending,
                         "Requests in flight at once per connection; past it, reading pauses."),
        _numberParameter("request-timeout", float, 0, Limits.requestTimeout,
                         'Answer "Request timed out" to a request not answered in this many seconds; 0 never.'),
        _numberParameter("send-timeout", float, 0, Limits.sendTimeout,
                         "Abort a connection whose peer takes none of its replies for this many seconds; 0 never."),
        _numberParameter("message-timeout", float, 0, Limits.messageTimeout,
                         "Close a connection that takes more than this many seconds to send one message; 0 never."),
        _numberParameter("max-errors", int, 0, Limits.maxErrors,
                         "The error budget: close a connection whose bad messages add up to more than this, less those forgiven; 0 never."),
        _numberParameter("error-decay", float, 0, Limits.errorDecay,
                         "Bad messages forgiven a second, so that occasional mistakes never use up the error budget."),
        _numberParameter("turn-budget", float, 0, Limits.turnBudget,
                         "Seconds of work one connection may take before the others get their turn; 0 for no bound."),
        _numberParameter("max-buffered-bytes", int, 0, DEFAULT_TOTAL,
                         'Bytes all connections together may hold in unfinished messages; past it, "Server busy"; 0 for no bound.'),
        _numberParameter("max-buffered-bytes-per-ip", int, 0, DEFAULT_PER_HOST,
                         "Bytes the connections of one IP address may hold in unfinished messages; 0 for no bound."),
        _numberParameter("handshake-timeout", float, 0, Limits.handshakeTimeout,
                         "Drop a TLS connection whose handshake takes longer than this many seconds; 0 never."),
        ["slow-subscriber", None, DISCONNECT, "What a subscriber that falls behind by more than --max-queued-bytes gets: disconnect (when it reconnects it resumes from the history, or resyncs) or drop (its oldest publications, and a count of them).", oneOf("slow-subscriber", POLICIES)],
        _numberParameter("max-queued-bytes", int, 1, DEFAULT_MAX_QUEUED_BYTES,
                         "Bytes of publications one connection may have waiting before the slow-subscriber policy applies."),
        _numberParameter("channel-history", int, 0, DEFAULT_HISTORY_SIZE,
                         "Publications each channel keeps for subscribers that resume; 0 keeps none."),
        _numberParameter("channel-history-seconds", float, 0, DEFAULT_HISTORY_SECONDS,
                         "The longest a channel keeps a publication for subscribers that resume; 0 for no limit."),
        _numberParameter("channel-memory", int, 0, DEFAULT_CHANNELS_MEMORY,
                         "Bytes the histories of all channels of a process may hold together (without --redis); past it, the least recently used lose theirs; 0 for no bound."),
        ["redis", None, None, "Keep the channels' offsets and history in the Redis at this client endpoint (tcp:127.0.0.1:6379, unix:/run/redis/redis.sock), so that publications reach subscribers of every daemon and --workers process sharing it.", lambda text: checkClientEndpoint("redis", text)],
        ["redis-prefix", None, DEFAULT_PREFIX, "What the channels' keys and pub/sub channel names begin with in Redis (daemons that share channels use the same).", redisPrefix],
        _numberParameter("max-subscriptions", int, 1, DEFAULT_MAX_SUBSCRIPTIONS,
                         "Channels one connection may subscribe to at once."),
        _numberParameter("shutdown-timeout", float, 0, DEFAULT_SHUTDOWN_TIMEOUT,
                         "On SIGTERM, abort connections still open after this many seconds."),
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["echo"] = []
        self["metrics"] = []
        self["handlers"] = []

    def opt_port(self, description: str) -> None:
        """Serve JSON messages on this endpoint, any Twisted server endpoint string (tcp:, tcp6:, unix:, ssl:, systemd:, haproxy:) or jsonproto-tls: (mutual TLS, reload on SIGHUP). Repeatable. [default: tcp:3001:interface=127.0.0.1]"""
        self["ports"].append(checkEndpoint("port", description))

    def opt_echo(self, description: str) -> None:
        """Serve byte-for-byte echo (RFC 862) on this endpoint. Repeatable. [default: none]"""
        self["echo"].append(checkEndpoint("echo", description))

    def opt_metrics(self, description: str) -> None:
        """Serve Prometheus metrics over HTTP at /metrics on this endpoint, e.g. tcp:9101:interface=127.0.0.1. Repeatable. [default: none]"""
        self["metrics"].append(checkEndpoint("metrics", description))

    def opt_handlers(self, moduleName: str) -> None:
        """Import this Python module (from the daemon's sys.path, e.g. PYTHONPATH) as the daemon starts, and call its register(dispatcher) to add message types. Repeatable."""
        if not _MODULE_NAME.match(moduleName):
            raise usage.UsageError(
                f"--handlers {moduleName!r} is not a Python module name (dotted names, like myapp.handlers)"
            )
        self["handlers"].append(moduleName)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse C{options}; under twistd, a usage error ends the process with
        one line and status 1.

        twistd before 26.10 prints the usage and the error, and exits 0, so
        that a service manager takes a mistyped option for a clean stop;
        run by twistd (which sets C{parent}), the error is raised as
        C{SystemExit} instead, which every twistd lets through.  Called
        directly, it raises L{usage.UsageError}.
        """
        # Kept for --workers, which starts workers with the same options.
        self.rawArguments = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise
            raise SystemExit(f"twistd jsonproto: {e} (twistd jsonproto --help lists the options)") from None

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"].append(DEFAULT_PORT)
        if isinstance(self["per-ip-exempt"], str):  # the default, which usage does not coerce
            self["per-ip-exempt"] = networks(self["per-ip-exempt"])
        if self["redis"] and not self["channels"]:
            raise usage.UsageError("--redis keeps the channels' offsets and history: give --channels too")
        if self["channels"] and self["workers"] > 1 and not self["redis"]:
            raise usage.UsageError(
                "--channels with --workers needs --redis ENDPOINT: channels across worker processes "
                "go through a Redis they share (without it, each worker would have channels of its own)"
            )
        if self["workers"] > 1 or self["reuse-port"]:
            for option, descriptions in (("port", self["ports"]), ("echo", self["echo"])):
                for description in descriptions:
                    try:
                        shareable(ParseOnlyReactor(), parseServer(description))
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
            handshakeTimeout=self["handshake-timeout"],
            turnBudget=self["turn-budget"],
        )
