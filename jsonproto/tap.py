"""
The C{twistd jsonproto} command: its options and the service they build.

The plugin in C{twisted/plugins/jsonproto_plugin.py} names this module by
string, so listing twistd's plugins does not import it.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

from twisted.internet import endpoints
from twisted.python import usage

from jsonproto.builtin import defaultDispatcher
from jsonproto.connection import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ConnectionRegistry
from jsonproto.echo import EchoFactory
from jsonproto.protocol import DEFAULT_MAX_MESSAGE_SIZE, FRAMINGS, JSONServerFactory
from jsonproto.service import JSONProtoService, ListenerService

DEFAULT_PORT = "tcp:3001:interface=127.0.0.1"


class _ParseOnlyReactor:
    """
    Stands in for the reactor while endpoint strings are checked, so that
    parsing options installs no reactor (twistd chooses it later).
    """


def _checkEndpoint(option: str, description: str) -> str:
    try:
        endpoints.serverFromString(_ParseOnlyReactor(), description)
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


def _number(option: str, text: str, kind: Callable[[str], Any], what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise usage.UsageError(f"--{option} must be {what}, not {text!r}") from None
    if not (0 <= value < math.inf):
        raise usage.UsageError(f"--{option} must be {what}, not {text!r}")
    return value


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

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["echo"] = []
        self["handlers"] = []
        self["framing"] = "line"
        self["idle-timeout"] = DEFAULT_IDLE_TIMEOUT
        self["max-connections"] = DEFAULT_MAX_CONNECTIONS
        self["max-message-size"] = DEFAULT_MAX_MESSAGE_SIZE

    def opt_port(self, description: str) -> None:
        """
        Serve JSON messages on this endpoint, any Twisted server endpoint
        string (tcp:, tcp6:, unix:, ssl:, systemd:, haproxy:). Repeatable.
        [default: tcp:3001:interface=127.0.0.1]
        """
        self["ports"].append(_checkEndpoint("port", description))

    def opt_echo(self, description: str) -> None:
        """
        Serve byte-for-byte echo (RFC 862) on this endpoint. Repeatable.
        [default: none]
        """
        self["echo"].append(_checkEndpoint("echo", description))

    def opt_framing(self, name: str) -> None:
        """
        Message framing on the --port listeners: line (newline-delimited
        JSON) or int32 (4-byte big-endian length prefix). [default: line]
        """
        if name not in FRAMINGS:
            raise usage.UsageError(
                f"--framing must be one of {', '.join(FRAMINGS)}, not {name!r}"
            )
        self["framing"] = name

    def opt_idle_timeout(self, seconds: str) -> None:
        """
        Close a connection that completes no message for this many seconds;
        0 never does. [default: 300]
        """
        self["idle-timeout"] = _number("idle-timeout", seconds, float, "a number of seconds, 0 or more")

    def opt_max_connections(self, count: str) -> None:
        """
        Refuse connections past this many open at once, with "Server busy";
        0 for no limit. [default: 10000]
        """
        self["max-connections"] = _number("max-connections", count, int, "a whole number, 0 or more")

    def opt_max_message_size(self, size: str) -> None:
        """
        The longest message accepted, in bytes; longer ones get
        "Message too long". [default: 1048576]
        """
        value = _number("max-message-size", size, int, "a whole number of bytes, 1 or more")
        if value < 1:
            raise usage.UsageError(f"--max-message-size must be 1 or more, not {size!r}")
        self["max-message-size"] = value

    def opt_handlers(self, moduleName: str) -> None:
        """
        Import this Python module and call its register(dispatcher) to add
        message types. Repeatable.
        """
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
    connections = ConnectionRegistry(config["max-connections"])
    jsonFactory = JSONServerFactory(
        config["dispatcher"],
        framing=config["framing"],
        maxMessageSize=config["max-message-size"],
        connections=connections,
        idleTimeout=config["idle-timeout"],
        clock=reactor,
    )
    echoFactory = EchoFactory(
        connections=connections, idleTimeout=config["idle-timeout"], clock=reactor
    )
    top = JSONProtoService(connections)
    for description in config["ports"]:
        ListenerService(reactor, description, jsonFactory).setServiceParent(top)
    for description in config["echo"]:
        ListenerService(reactor, description, echoFactory).setServiceParent(top)
    return top
