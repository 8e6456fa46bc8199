"""
What every jsonproto connection shares, whatever it speaks: a record of who
it is and what it has done, a place in its service's registry of active
connections, a connection limit, an idle timeout, and a way to be closed with
a reason that ends up in the log.

Time comes from an injected L{IReactorTime}, so tests drive it with
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from jsonproto.dispatcher import Reply

log = Logger()

DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_CONNECTIONS = 10_000
CLOSE_GRACE_PERIOD = 5.0
"""
Seconds a connection we have closed gets to take its last replies before it
is aborted: long enough for a reading peer, short enough that a peer that
stopped reading cannot hold the socket.
"""


def formatAddress(address: IAddress | None) -> str:
    """
    A peer address as operators write it: C{127.0.0.1:5000},
    C{[::1]:5000}, C{unix:/run/sock}.
    """
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return "unix:" + (name.decode("utf-8", "replace") if isinstance(name, bytes) else name or "")
    return str(address)


@dataclass(eq=False, slots=True)
class ConnectionInfo:
    """
    One active connection, as the registry lists it and as handlers see it
    (their C{context} argument).

    @ivar id: Unique within the process, in order of arrival; every log line
        about the connection carries it.
    @ivar peer: The remote address, formatted by L{formatAddress}.
    @ivar connectedAt: When it was accepted, in the reactor's seconds.
    @ivar lastActivity: When it last completed a message (or, for echo, last
        sent anything).
    """

    id: int
    peer: str
    connectedAt: float
    lastActivity: float
    messagesIn: int = 0
    messagesOut: int = 0
    bytesIn: int = 0
    bytesOut: int = 0
    protocol: TrackedProtocol | None = field(default=None, repr=False)

    def send(self, message: Reply) -> None:
        """
        Push a message to this client now, outside request and reply (a
        notification, a broadcast).  It is framed like the connection's
        replies and may overtake replies still being computed.
        """
        if self.protocol is not None:
            self.protocol.sendMessage(message)

    def close(self, reason: str = "closed by the server") -> None:
        """
        Close this connection after the replies already written.
        """
        if self.protocol is not None:
            self.protocol.closeConnection(reason)


class ConnectionRegistry:
    """
    The active connections of a service, shared by all its listeners, and
    the limit on how many there may be at once.

    @ivar maxConnections: The most connections open at once; 0 for no limit.
    @ivar accepted: Connections admitted since start.
    @ivar refused: Connections turned away by the limit since start.
    """

    def __init__(self, maxConnections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.maxConnections = maxConnections
        self.accepted = 0
        self.refused = 0
        self._active: dict[int, ConnectionInfo] = {}
        self._ids = itertools.count(1)
        self._emptyWaiters: list[Deferred[None]] = []

    def admit(self, connection: TrackedProtocol, peer: str, now: float) -> ConnectionInfo | None:
        """
        Add a connection, unless the limit is reached.

        @return: Its record, or L{None} if it must be refused.
        """
        if self.maxConnections and len(self._active) >= self.maxConnections:
            self.refused += 1
            return None
        info = ConnectionInfo(next(self._ids), peer, now, now, protocol=connection)
        self._active[info.id] = info
        self.accepted += 1
        return info

    def remove(self, info: ConnectionInfo) -> None:
        """
        Forget a connection that has closed.
        """
        self._active.pop(info.id, None)
        info.protocol = None
        if not self._active:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    def closeAll(self, reason: str) -> Deferred[None]:
        """
        Close every connection once the replies it is owed are written, as
        a service stops.

        @return: Fires when none is left.  Each connection is aborted if
            it has not closed within L{CLOSE_GRACE_PERIOD} of its close, so
            this cannot wait forever on a peer that stopped reading.
        """
        if not self._active:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._emptyWaiters.append(waiter)
        for info in list(self._active.values()):
            if info.protocol is not None:
                info.protocol.closeWhenDone(reason)
        return waiter

    def __len__(self) -> int:
        return len(self._active)

    def __iter__(self) -> Iterator[ConnectionInfo]:
        return iter(list(self._active.values()))

    def get(self, connectionId: int) -> ConnectionInfo | None:
        """
        The active connection with this id, if there is one.
        """
        return self._active.get(connectionId)


@implementer(IHalfCloseableProtocol)
class TrackedProtocol(protocol.Protocol):
    """
    A connection that registers itself with its factory's registry, is
    refused politely when the registry is full, and is closed when idle.

    A peer that shuts down its sending side (C{nc -N}, C{socket.shutdown})
    still gets every reply to what it sent: the connection closes once the
    work in hand is written, not at once.

    Subclasses say what "activity" is by calling L{touch}, what refusal
    looks like by overriding L{refuse}, and whether work is still under way
    (which keeps an idle connection open) by overriding L{busy}.
    """

    factory: TrackingFactory
    info: ConnectionInfo | None = None
    _idleCall: IDelayedCall | None = None
    _abortCall: IDelayedCall | None = None
    _closeReason: str | None = None
    _closeWhenDone: str | None = None

    @property
    def clock(self) -> IReactorTime:
        return self.factory.clock

    def connectionMade(self) -> None:
        peer = formatAddress(self.transport.getPeer())
        now = self.clock.seconds()
        self.info = self.factory.connections.admit(self, peer, now)
        if self.info is None:
            log.warn(
                "refusing connection from {peer}: {limit} connections open",
                peer=peer,
                limit=self.factory.connections.maxConnections,
            )
            self.refuse()
            self._startAbortTimer()
            return
        log.info("connection {connectionId} from {peer} opened", connectionId=self.info.id, peer=peer)
        if self.factory.idleTimeout:
            self._idleCall = self.clock.callLater(self.factory.idleTimeout, self._checkIdle)

    def refuse(self) -> None:
        """
        Turn this connection away because the service is full.  The default
        closes it; subclasses may first tell the client why.
        """
        self.transport.loseConnection()

    def touch(self) -> None:
        """
        Record activity now, postponing the idle timeout.  Cheap: the timer
        itself is only moved when it fires.
        """
        if self.info is not None:
            self.info.lastActivity = self.clock.seconds()

    @property
    def busy(self) -> bool:
        """
        Whether the connection has work under way that an idle timeout must
        not cut short.
        """
        return False

    def closeWhenDone(self, reason: str) -> None:
        """
        Close once the work under way is done and its replies written.
        """
        self._closeWhenDone = reason
        if not self.busy:
            self.closeConnection(reason)

    def workDone(self) -> None:
        """
        Called by subclasses when the last piece of work under way is done:
        a close that was waiting for it happens now.
        """
        if self._closeWhenDone is not None:
            self.closeConnection(self._closeWhenDone)

    def readConnectionLost(self) -> None:
        """
        The peer will send nothing more: close once nothing is under way.
        """
        self.closeWhenDone("the peer closed its sending side")

    def writeConnectionLost(self) -> None:
        """
        Nothing more can be written: nothing is left to do.
        """
        self.transport.loseConnection()

    def _checkIdle(self) -> None:
        self._idleCall = None
        info = self.info
        if info is None:
            return
        timeout = self.factory.idleTimeout
        idleFor = self.clock.seconds() - info.lastActivity
        if idleFor >= timeout and not self.busy:
            self.closeConnection(f"idle for {idleFor:.0f} seconds")
            return
        wait = timeout - idleFor if idleFor < timeout else timeout
        self._idleCall = self.clock.callLater(wait, self._checkIdle)

    def closeConnection(self, reason: str) -> None:
        """
        Close the connection, logging why; abort it if the peer has not
        taken what was written within L{CLOSE_GRACE_PERIOD}.
        """
        if self._closeReason is not None or self.info is None:
            return
        self._closeReason = reason
        log.info(
            "closing connection {connectionId} from {peer}: {reason}",
            connectionId=self.info.id,
            peer=self.info.peer,
            reason=reason,
        )
        self.transport.loseConnection()
        self._startAbortTimer()

    def _startAbortTimer(self) -> None:
        if self._abortCall is None:
            self._abortCall = self.clock.callLater(CLOSE_GRACE_PERIOD, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        if self.info is not None:
            log.info(
                "aborting connection {connectionId} from {peer}: it did not take its last "
                "replies within {grace} seconds",
                connectionId=self.info.id,
                peer=self.info.peer,
                grace=CLOSE_GRACE_PERIOD,
            )
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.connected = False
        for call in (self._idleCall, self._abortCall):
            if call is not None and call.active():
                call.cancel()
        self._idleCall = self._abortCall = None
        info = self.info
        if info is None:
            return
        self.factory.connections.remove(info)
        log.info(
            "connection {connectionId} from {peer} closed after {duration:.1f} seconds "
            "({why}): {messagesIn} messages and {bytesIn} bytes in, "
            "{messagesOut} messages and {bytesOut} bytes out",
            connectionId=info.id,
            peer=info.peer,
            duration=self.clock.seconds() - info.connectedAt,
            why=self._closeReason or reason.getErrorMessage(),
            messagesIn=info.messagesIn,
            bytesIn=info.bytesIn,
            messagesOut=info.messagesOut,
            bytesOut=info.bytesOut,
        )

    def sendMessage(self, message: Reply) -> None:
        """
        Write one unsolicited message; only message protocols can.
        """
        raise NotImplementedError(f"{type(self).__name__} does not send messages")


class TrackingFactory(protocol.Factory):
    """
    A factory whose connections are tracked in a L{ConnectionRegistry} and
    closed when idle.

    @ivar connections: The registry; pass one registry to several factories
        to share one connection limit between their listeners.
    @ivar idleTimeout: Seconds without activity before a connection is
        closed; 0 never closes for idleness.
    @ivar clock: The source of time and timers.
    """

    protocol: type[TrackedProtocol]
    noisy = False

    def __init__(
        self,
        *,
        connections: ConnectionRegistry | None = None,
        idleTimeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: IReactorTime | None = None,
    ) -> None:
        if idleTimeout < 0:
            raise ValueError(f"idleTimeout must be 0 or more, not {idleTimeout!r}")
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.connections = connections if connections is not None else ConnectionRegistry()
        self.idleTimeout = idleTimeout

    def buildProtocol(self, addr: Any) -> TrackedProtocol:
        p = self.protocol()
        p.factory = self
        return p
