"""
The active connections of a service: a record of each (who it is, what it
has done), and the limits on how many there may be, overall and per client
address.

Every listener of a service shares one L{ConnectionRegistry}, so that
C{--max-connections} counts them together and a drain reaches them all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from jsonproto.core.budget import BufferBudget
from jsonproto.core.envelope import checkPush
from jsonproto.core.traffic import Traffic
from jsonproto.errors import SERVER_BUSY, TOO_MANY_CONNECTIONS, ErrorCode
from jsonproto.interfaces import IConnections, IHandlerContext
from jsonproto.server.addresses import Networks, formatAddress, hostOf
from jsonproto.server.identity import ClientIdentity

if TYPE_CHECKING:
    from jsonproto.server.connection import TrackedProtocol

DEFAULT_MAX_CONNECTIONS = 10_000


@implementer(IHandlerContext)
@dataclass(eq=False, slots=True)
class ConnectionInfo:
    """
    One active connection, as the registry lists it and as handlers see it
    (their C{context} argument).

    @ivar id: Unique within the process, in order of arrival; every log line
        about the connection carries it.
    @ivar peer: The remote address, formatted by L{formatAddress}.
    @ivar host: The remote IP address, or L{None} (a Unix socket).
    @ivar connectedAt: When it was accepted, in the reactor's seconds.
    @ivar lastActivity: When it last completed a message (or, for echo, last
        sent anything).
    @ivar pauses: How often reading from it was paused for backpressure.
    @ivar tls: Whether the connection is encrypted.
    @ivar clientIdentity: The verified client certificate's names, on a
        listener that requires client certificates; otherwise L{None}.
    @ivar traffic: Its messages and bytes in and out (also readable as
        C{messagesIn}, C{messagesOut}, C{bytesIn} and C{bytesOut}).
    @ivar state: The service's own data about this connection, for its
        lifetime: a dict handlers may keep anything in (a user's name, the
        rooms it joined), forgotten when the connection ends.
    @ivar connections: The registry of every open connection of the
        service: list them, find one by id, send to one
        (L{ConnectionRegistry}).
    """

    id: int
    peer: str
    host: str | None
    connectedAt: float
    lastActivity: float
    pauses: int = 0
    tls: bool = False
    clientIdentity: ClientIdentity | None = None
    traffic: Traffic = field(default_factory=Traffic, repr=False)
    state: dict[str, Any] = field(default_factory=dict, repr=False)
    connections: ConnectionRegistry | None = field(default=None, repr=False)
    # The connection itself, for send and close; None once it has ended.
    _connection: TrackedProtocol | None = field(default=None, repr=False)

    @property
    def messagesIn(self) -> int:
        """
        Messages received whole.
        """
        return self.traffic.messagesIn

    @property
    def messagesOut(self) -> int:
        """
        Messages sent.
        """
        return self.traffic.messagesOut

    @property
    def bytesIn(self) -> int:
        """
        Bytes received.
        """
        return self.traffic.bytesIn

    @property
    def bytesOut(self) -> int:
        """
        Bytes sent.
        """
        return self.traffic.bytesOut

    def send(self, message: dict[str, Any]) -> None:
        """
        Push a message to this client now, outside request and reply (a
        notification, a broadcast).  It is framed like the connection's
        replies and may overtake replies still being computed.  Nothing
        happens once the connection has ended.

        @raise ValueError: If the message has a C{status}: clients take
            every message with one for a reply (see
            L{jsonproto.core.envelope.checkPush}).
        """
        checkPush(message)
        if self._connection is not None:
            self._connection.sendMessage(message)

    def close(self, reason: str = "closed by the server") -> None:
        """
        Close this connection after the replies already written.
        """
        if self._connection is not None:
            self._connection.closeConnection(reason)


class ConnectionRefused(Exception):
    """
    A connection may not be admitted.

    @ivar error: What to tell the client.
    @ivar why: What to tell the log.
    """

    def __init__(self, error: ErrorCode, why: str) -> None:
        super().__init__(why)
        self.error = error
        self.why = why


_TRAFFIC = ("messagesIn", "messagesOut", "bytesIn", "bytesOut")


def _addTraffic(totals: dict[str, int], info: ConnectionInfo) -> None:
    traffic = info.traffic
    for key in _TRAFFIC:
        totals[key] += getattr(traffic, key)
    totals["pauses"] += info.pauses


@implementer(IConnections)
class ConnectionRegistry:
    """
    The active connections of a service, shared by all its listeners, and
    the limits on how many there may be at once.

    @ivar maxConnections: The most connections open at once; 0 for no limit.
    @ivar maxConnectionsPerHost: The most open at once from one IP address;
        0 for no limit.
    @ivar exempt: The addresses per-address limits spare (L{limitedHost}).
    @ivar buffers: The budget of bytes all connections may hold in
        unfinished messages.
    @ivar accepted: Connections admitted since start.
    @ivar refused: Connections turned away by a limit since start.
    """

    def __init__(
        self,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        maxConnectionsPerHost: int = 0,
        buffers: BufferBudget | None = None,
        exempt: Networks | None = None,
    ) -> None:
        self.maxConnections = maxConnections
        self.maxConnectionsPerHost = maxConnectionsPerHost
        self.exempt = exempt if exempt is not None else Networks()
        self.buffers = buffers if buffers is not None else BufferBudget()
        self.accepted = 0
        self.refused = 0
        # Counters for metrics, cheap to keep: most change only as
        # connections come and go, or on an error path.
        self.refusedBy: dict[str, int] = {}
        self.closedBy: dict[str, int] = {}
        self.errorReplies: dict[str, int] = {}
        # Traffic of the connections that have closed (the open ones keep
        # their own until they close).
        self.closedTotals = dict.fromkeys((*_TRAFFIC, "pauses"), 0)
        self._active: dict[int, ConnectionInfo] = {}
        self._connections: dict[int, TrackedProtocol] = {}
        self._perHost: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._emptyWaiters: list[Deferred[None]] = []
        # Close hooks still running, which a stop waits for.
        self._finishing: set[Deferred[None]] = set()

    def admit(self, connection: TrackedProtocol, address: IAddress, now: float) -> ConnectionInfo:
        """
        Add a connection, unless a limit is reached.

        @return: Its record.
        @raise ConnectionRefused: If it must be turned away.
        """
        peer = formatAddress(address)
        host = hostOf(address)
        if self.maxConnections and len(self._active) >= self.maxConnections:
            raise self._refuse(ConnectionRefused(SERVER_BUSY, f"{self.maxConnections} connections open"))
        self._checkHost(host)
        self._countHost(host, 1)
        info = ConnectionInfo(next(self._ids), peer, host, now, now, connections=self, _connection=connection)
        self._active[info.id] = info
        self._connections[info.id] = connection
        self.accepted += 1
        return info

    def limitedHost(self, host: str | None) -> str | None:
        """
        The address per-address limits (connections, unfinished bytes)
        count a client by: its own, or L{None} for a client they spare (a
        Unix socket's, or one in L{exempt}).
        """
        return None if host is None or host in self.exempt else host

    def _checkHost(self, host: str | None) -> None:
        host = self.limitedHost(host)
        if host is not None and self.maxConnectionsPerHost:
            if self._perHost.get(host, 0) >= self.maxConnectionsPerHost:
                raise self._refuse(
                    ConnectionRefused(
                        TOO_MANY_CONNECTIONS, f"{self.maxConnectionsPerHost} connections open from {host}"
                    )
                )

    def _countHost(self, host: str | None, change: int) -> None:
        host = self.limitedHost(host)
        if host is None:
            return
        count = self._perHost.get(host, 0) + change
        if count:
            self._perHost[host] = count
        else:
            del self._perHost[host]

    def _refuse(self, refusal: ConnectionRefused) -> ConnectionRefused:
        self.refused += 1
        code = refusal.error.code
        self.refusedBy[code] = self.refusedBy.get(code, 0) + 1
        return refusal

    def countClose(self, kind: str) -> None:
        """
        Count a close the server decided on, by its kind.
        """
        self.closedBy[kind] = self.closedBy.get(kind, 0) + 1

    def countError(self, code: str) -> None:
        """
        Count an error reply, by its code.
        """
        self.errorReplies[code] = self.errorReplies.get(code, 0) + 1

    def totals(self) -> dict[str, int]:
        """
        Traffic since start, closed connections and open ones together.
        """
        totals = dict(self.closedTotals)
        for info in self._active.values():
            _addTraffic(totals, info)
        return totals

    def remove(self, info: ConnectionInfo, then: Callable[[], Deferred[None] | None] | None = None) -> None:
        """
        Forget a connection that has closed.

        @param then: Called once the connection is gone from the registry
            (its close hooks); what it returns, if a Deferred, is waited
            for by L{whenEmpty}.
        """
        if self._active.pop(info.id, None) is None:
            return
        del self._connections[info.id]
        info._connection = None
        _addTraffic(self.closedTotals, info)
        self._countHost(info.host, -1)
        if then is not None:
            running = then()
            if running is not None:
                self.waitFor(running)
        self._maybeEmpty()

    def rehome(self, info: ConnectionInfo, address: IAddress) -> None:
        """
        A connection turns out to come from another address (a PROXY
        protocol header named the real client): count it there.

        @raise ConnectionRefused: If that address is at its limit.
        """
        host = hostOf(address)
        if host == info.host:
            info.peer = formatAddress(address)
            return
        self._checkHost(host)
        self._countHost(info.host, -1)
        self._countHost(host, 1)
        info.host = host
        info.peer = formatAddress(address)

    def countFrom(self, host: str) -> int:
        """
        How many connections are open from this IP address, as the limit
        counts them (none, for an address it spares).
        """
        return self._perHost.get(host, 0)

    def __len__(self) -> int:
        return len(self._active)

    def __iter__(self) -> Iterator[ConnectionInfo]:
        return iter(list(self._active.values()))

    def get(self, connectionId: int) -> ConnectionInfo | None:
        """
        The active connection with this id, if there is one.
        """
        return self._active.get(connectionId)

    def send(self, connectionId: int, message: dict[str, Any]) -> bool:
        """
        Push C{message} to the connection with this id (see
        L{ConnectionInfo.send}).

        @return: Whether it is still open (if not, nothing is sent).
        @raise ValueError: If the message has a C{status}.
        """
        info = self._active.get(connectionId)
        if info is None:
            checkPush(message)
            return False
        info.send(message)
        return True

    def waitFor(self, work: Deferred[None]) -> None:
        """
        Count C{work} (a connection's close hooks) as still under way until
        it fires: L{whenEmpty} waits for it.
        """
        self._finishing.add(work)

        def finished(result: None) -> None:
            self._finishing.discard(work)
            self._maybeEmpty()

        work.addBoth(finished)

    def whenEmpty(self) -> Deferred[None]:
        """
        Fires when no connection is left, and no close hook is running.
        """
        if not self._active and not self._finishing:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._emptyWaiters.append(waiter)
        return waiter

    def _maybeEmpty(self) -> None:
        if not self._active and not self._finishing:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    def closeAll(self, reason: str) -> Deferred[None]:
        """
        Drain every connection, as a service stops: each answers what it
        has already received, then closes (see L{TrackedProtocol.drain}).

        @return: Fires when none is left.
        """
        empty = self.whenEmpty()
        for connection in list(self._connections.values()):
            connection.drain(reason)
        return empty

    def abortAll(self, reason: str) -> None:
        """
        Abort every connection now, as a drain runs out of time.
        """
        for connection in list(self._connections.values()):
            connection.forceClose(reason, "shutdown_timeout")
