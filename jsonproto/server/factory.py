"""
Factories: what every connection of a listener shares (the registry, the
limits, the clock) and, for JSON listeners, the dispatcher and framing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTime

from jsonproto.core.pipeline import ENVELOPES
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.limits import Limits
from jsonproto.server.connection import TrackedProtocol
from jsonproto.server.registry import ConnectionRegistry


class TrackingFactory(protocol.Factory):
    """
    A factory whose connections are tracked in a L{ConnectionRegistry} and
    held to L{Limits}.

    @ivar connections: The registry; pass one registry to several factories
        to share one connection limit between their listeners.
    @ivar limits: The limits on each connection.
    @ivar clock: The source of time and timers.
    """

    # Factory's stubs want a protocol whose factory is any Factory; ours
    # are built for, and read, this factory's own attributes.
    protocol: type[TrackedProtocol]  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        connections: ConnectionRegistry | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.limits = limits if limits is not None else Limits()
        self.connections = connections if connections is not None else ConnectionRegistry()

    def buildProtocol(self, addr: Any) -> TrackedProtocol:  # type: ignore[override]
        p = self.protocol()
        p.factory = self
        p.clock = self.clock
        p.limits = self.limits
        return p


class JSONServerFactory(TrackingFactory):
    """
    Builds JSON message protocols answering with one dispatcher.

    Usable on any server endpoint::

        factory = JSONServerFactory(dispatcher, framing="int32")
        serverFromString(reactor, "tcp:3001").listen(factory)

    @ivar dispatcher: Answers every message.
    @ivar logMessages: Log every message in and out (for debugging: it
        costs more than the messages themselves).
    @ivar envelope: C{"jsonproto"} (the default), or C{"jsonrpc"} for
        JSON-RPC 2.0 requests and responses, answered by the same handlers.
    """

    def __init__(
        self,
        dispatcher: Dispatcher | None = None,
        *,
        framing: str = "line",
        limits: Limits | None = None,
        connections: ConnectionRegistry | None = None,
        clock: Any = None,
        logMessages: bool = False,
        envelope: str = "jsonproto",
    ) -> None:
        from jsonproto.server.protocol import FRAMINGS

        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if envelope not in ENVELOPES:
            raise ValueError(f"envelope must be one of {', '.join(ENVELOPES)}, not {envelope!r}")
        super().__init__(limits=limits, connections=connections, clock=clock)
        self.dispatcher = dispatcher if dispatcher is not None else defaultDispatcher()
        self.protocol = FRAMINGS[framing]
        self.logMessages = logMessages
        self.envelope = envelope
