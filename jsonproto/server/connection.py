"""
What every jsonproto connection shares, whatever it speaks: a record of who
it is and what it has done, a place in its service's registry of active
connections, connection limits (overall and per client address), an idle
timeout, and a way to be closed with a reason that ends up in the log.

Time comes from an injected L{IReactorTime}, so tests drive it with
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from twisted.internet import protocol
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    INegotiated,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsonproto.core.counters import Counters
from jsonproto.errors import SERVER_BUSY, TOO_MANY_CONNECTIONS, ErrorCode
from jsonproto.limits import Limits
from jsonproto.server.refusallog import refusalLog

if TYPE_CHECKING:
    from jsonproto.dispatch.dispatcher import Reply

log = Logger()

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


def recheckAfter(elapsed: float, timeout: float) -> float:
    """
    When a timer that found C{elapsed} of C{timeout} gone (and did not
    act) should look again: when the rest runs out, or a whole timeout on
    if it had run out but something (work under way, a pause) held it.

    Timers here are moved only when they fire, never on every message.
    """
    return timeout - elapsed if elapsed < timeout else timeout


def hostOf(address: IAddress | None) -> str | None:
    """
    The client's IP address, which per-address limits count by; L{None}
    where there is none (a Unix socket).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    return None


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """
    Who a TLS client proved to be with its certificate (verified against
    the listener's C{clientCA=}).

    @ivar commonName: The subject's common name (CN), if it has one.
    @ivar dnsNames: The certificate's DNS subject alternative names.
    @ivar ipAddresses: Its IP address subject alternative names.
    """

    commonName: str | None
    dnsNames: tuple[str, ...] = ()
    ipAddresses: tuple[str, ...] = ()

    @classmethod
    def fromCertificate(cls, certificate: Any) -> ClientIdentity:
        """
        Read one from a pyOpenSSL certificate.
        """
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = certificate.to_cryptography()
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(sans.get_values_for_type(x509.DNSName))
            ips = tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            dns, ips = (), ()
        return cls(str(names[0].value) if names else None, dns, ips)


@dataclass(eq=False, slots=True)
class ConnectionInfo(Counters):
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
    @ivar messagesIn: Messages received whole.
    @ivar messagesOut: Messages sent.
    @ivar bytesIn: Bytes received.
    @ivar bytesOut: Bytes sent.
    @ivar pauses: How often reading from it was paused for backpressure.
    @ivar tls: Whether the connection is encrypted.
    @ivar clientIdentity: The verified client certificate's names, on a
        listener that requires client certificates; otherwise L{None}.
    """

    id: int
    peer: str
    host: str | None
    connectedAt: float
    lastActivity: float
    pauses: int = 0
    tls: bool = False
    clientIdentity: ClientIdentity | None = None
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


def _describe(reason: Failure) -> str:
    """
    Why a connection ended, for the log; TLS failures say so.
    """
    if reason.type.__module__.startswith("OpenSSL"):
        details = reason.value.args[0] if reason.value.args else []
        if isinstance(details, list) and details and isinstance(details[0], tuple):
            return "TLS failed: " + "; ".join(str(d[-1]) for d in details)
        return f"TLS failed: {reason.value}"
    return reason.getErrorMessage()


def _behindProxy(transport: Any) -> bool:
    """
    Whether a PROXY protocol wrapper sits under this transport (directly,
    or under TLS).
    """
    try:
        from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper
    except ImportError:  # pragma: no cover - Twisted moved it
        return False
    for _ in range(3):
        if isinstance(transport, HAProxyProtocolWrapper):
            return True
        transport = getattr(transport, "transport", None)
        if transport is None:
            return False
    return False


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


_TRAFFIC = ("messagesIn", "messagesOut", "bytesIn", "bytesOut", "pauses")


def _addTraffic(totals: dict[str, int], info: ConnectionInfo) -> None:
    for key in _TRAFFIC:
        totals[key] += getattr(info, key)


class ConnectionRegistry:
    """
    The active connections of a service, shared by all its listeners, and
    the limits on how many there may be at once.

    @ivar maxConnections: The most connections open at once; 0 for no limit.
    @ivar maxConnectionsPerHost: The most open at once from one IP address;
        0 for no limit.
    @ivar accepted: Connections admitted since start.
    @ivar refused: Connections turned away by a limit since start.
    """

    def __init__(self, maxConnections: int = DEFAULT_MAX_CONNECTIONS, maxConnectionsPerHost: int = 0) -> None:
        self.maxConnections = maxConnections
        self.maxConnectionsPerHost = maxConnectionsPerHost
        self.accepted = 0
        self.refused = 0
        # Counters for metrics, cheap to keep: most change only as
        # connections come and go, or on an error path.
        self.refusedBy: dict[str, int] = {}
        self.closedBy: dict[str, int] = {}
        self.errorReplies: dict[str, int] = {}
        # Traffic of the connections that have closed (the open ones keep
        # their own until they close).
        self.closedTotals = dict.fromkeys(_TRAFFIC, 0)
        self._active: dict[int, ConnectionInfo] = {}
        self._perHost: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._emptyWaiters: list[Deferred[None]] = []

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
        info = ConnectionInfo(next(self._ids), peer, host, now, now, protocol=connection)
        self._active[info.id] = info
        self.accepted += 1
        return info

    def _checkHost(self, host: str | None) -> None:
        if host is not None and self.maxConnectionsPerHost:
            if self._perHost.get(host, 0) >= self.maxConnectionsPerHost:
                raise self._refuse(
                    ConnectionRefused(
                        TOO_MANY_CONNECTIONS, f"{self.maxConnectionsPerHost} connections open from {host}"
                    )
                )

    def _countHost(self, host: str | None, change: int) -> None:
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

    def remove(self, info: ConnectionInfo) -> None:
        """
        Forget a connection that has closed.
        """
        if self._active.pop(info.id, None) is None:
            return
        info.protocol = None
        _addTraffic(self.closedTotals, info)
        self._countHost(info.host, -1)
        if not self._active:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for waiter in waiters:
                waiter.callback(None)

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
        How many connections are open from this IP address.
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

    def whenEmpty(self) -> Deferred[None]:
        """
        Fires when no connection is left.
        """
        if not self._active:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._emptyWaiters.append(waiter)
        return waiter

    def closeAll(self, reason: str) -> Deferred[None]:
        """
        Drain every connection, as a service stops: each answers what it
        has already received, then closes (see L{TrackedProtocol.drain}).

        @return: Fires when none is left.
        """
        empty = self.whenEmpty()
        for info in list(self._active.values()):
            if info.protocol is not None:
                info.protocol.drain(reason)
        return empty

    def abortAll(self, reason: str) -> None:
        """
        Abort every connection now, as a drain runs out of time.
        """
        for info in list(self._active.values()):
            if info.protocol is not None:
                info.protocol.forceClose(reason, "shutdown_timeout")


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class TrackedProtocol(protocol.Protocol):
    """
    A connection that registers itself with its factory's registry, is
    refused politely when a limit is reached, and is closed when idle.

    A peer that shuts down its sending side (C{nc -N}, C{socket.shutdown})
    still gets every reply to what it sent: the connection closes once the
    work in hand is written, not at once.

    Subclasses say what "activity" is by calling L{touch}, what refusal
    looks like by overriding L{refuse}, and whether work is still under way
    (which keeps an idle connection open, and a closing one waiting) by
    overriding L{busy} and calling L{workDone}.
    """

    factory: TrackingFactory
    # The factory's, copied here by buildProtocol: read on every message.
    clock: IReactorTime
    limits: Limits
    # Read at every read, by the C fast path too: in slots.
    __slots__ = ("info", "proxied")
    info: ConnectionInfo | None
    _idleCall: IDelayedCall | None = None
    _abortCall: IDelayedCall | None = None
    _handshakeCall: IDelayedCall | None = None
    _closeReason: str | None = None
    _closeWhenDone: str | None = None
    _closeKind = "server"
    # Behind a PROXY-protocol listener: the real client's address is known
    # only once data arrives (the header comes first).
    proxied: bool

    def __init__(self) -> None:
        self.info = None
        self.proxied = False

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        try:
            self.info = self.factory.connections.admit(self, address, self.clock.seconds())
        except ConnectionRefused as refusal:
            refusalLog(self.factory.connections, self.clock).warn(
                refusal.error.code,
                "refusing connection from {peer}: {why}",
                peer=formatAddress(address),
                why=refusal.why,
            )
            self.refuse(refusal.error)
            self._startAbortTimer()
            return
        log.info(
            "connection {connectionId} from {peer} opened",
            connectionId=self.info.id,
            peer=self.info.peer,
        )
        if self.limits.idleTimeout:
            self._idleCall = self.clock.callLater(self.limits.idleTimeout, self._checkIdle)
        self.proxied = _behindProxy(self.transport)
        if INegotiated.providedBy(self.transport):
            self.info.tls = True
            if self.limits.handshakeTimeout:
                self._handshakeCall = self.clock.callLater(
                    self.limits.handshakeTimeout, self._handshakeTimedOut
                )

    def learnProxiedPeer(self) -> bool:
        """
        Called by subclasses on the first data of a proxied connection, when
        the PROXY header has been read: take the real client's address, for
        the log, the handlers and the per-address limit.

        @return: Whether the connection goes on (it may be over its
            address's limit).
        """
        self.proxied = False
        info = self.info
        if info is None:
            return False
        proxy = info.peer
        address = self.transport.getPeer()
        try:
            self.factory.connections.rehome(info, address)
        except ConnectionRefused as refusal:
            refusalLog(self.factory.connections, self.clock).warn(
                refusal.error.code,
                "refusing connection {connectionId} from {peer} (through {proxy}): {why}",
                connectionId=info.id,
                peer=formatAddress(address),
                proxy=proxy,
                why=refusal.why,
            )
            self._closeReason = refusal.why
            self.refuse(refusal.error)
            self._startAbortTimer()
            return False
        log.info(
            "connection {connectionId} through {proxy} is from {peer}",
            connectionId=info.id,
            proxy=proxy,
            peer=info.peer,
        )
        return True

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done: stop its timer, and note who the client
        proved to be, if it showed a certificate.
        """
        if self._handshakeCall is not None and self._handshakeCall.active():
            self._handshakeCall.cancel()
        self._handshakeCall = None
        certificate = getattr(self.transport, "getPeerCertificate", lambda: None)()
        if certificate is not None and self.info is not None:
            self.info.clientIdentity = ClientIdentity.fromCertificate(certificate)

    def _handshakeTimedOut(self) -> None:
        self._handshakeCall = None
        self.forceClose(
            f"the TLS handshake did not complete within {self.limits.handshakeTimeout:g} seconds",
            "handshake_timeout",
        )

    def refuse(self, error: ErrorCode) -> None:
        """
        Turn this connection away because a limit is reached.  The default
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
        not cut short and a close must wait for.
        """
        return False

    def drain(self, reason: str) -> None:
        """
        The service is stopping: close after the work in hand.  Subclasses
        that can still take requests already sent extend this.
        """
        self.closeWhenDone(reason, "shutdown")

    def closeWhenDone(self, reason: str, kind: str = "server") -> None:
        """
        Close once the work under way is done and its replies written.
        """
        self._closeWhenDone = reason
        self._closeKind = kind
        if not self.busy:
            self.closeConnection(reason, kind)

    def workDone(self) -> None:
        """
        Called by subclasses when the last piece of work under way is done:
        a close that was waiting for it happens now.
        """
        if self._closeWhenDone is not None:
            self.closeConnection(self._closeWhenDone, self._closeKind)

    def readConnectionLost(self) -> None:
        """
        The peer will send nothing more: close once nothing is under way.
        """
        self.closeWhenDone("the peer closed its sending side", "peer_finished")

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
        timeout = self.limits.idleTimeout
        idleFor = self.clock.seconds() - info.lastActivity
        if idleFor >= timeout and not self.busy:
            self.closeConnection(f"idle for {idleFor:.0f} seconds", "idle")
            return
        self._idleCall = self.clock.callLater(recheckAfter(idleFor, timeout), self._checkIdle)

    def _logClose(self, action: str, reason: str) -> None:
        if self.info is not None:
            log.info(
                "{action} connection {connectionId} from {peer}: {reason}",
                action=action,
                connectionId=self.info.id,
                peer=self.info.peer,
                reason=reason,
            )

    def closeConnection(self, reason: str, kind: str = "server") -> None:
        """
        Close the connection, logging why; abort it if the peer has not
        taken what was written within L{CLOSE_GRACE_PERIOD}.

        @param kind: The reason's category, a metrics label: C{idle},
            C{message_timeout}, C{too_many_errors}, C{shutdown}, ...
        """
        if self._closeReason is not None or self.info is None:
            return
        self.factory.connections.countClose(kind)
        self._closeReason = reason
        self._logClose("closing", reason)
        self.transport.loseConnection()
        self._startAbortTimer()

    def forceClose(self, reason: str, kind: str = "server") -> None:
        """
        Drop the connection now, unsent replies and all, logging why.
        """
        if not self.connected:
            return
        if self.info is not None:
            self.factory.connections.countClose(kind)
        self._closeReason = reason
        self._logClose("aborting", reason)
        self.transport.abortConnection()

    def _startAbortTimer(self) -> None:
        if self._abortCall is None:
            self._abortCall = self.clock.callLater(CLOSE_GRACE_PERIOD, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        self.forceClose(
            f"the peer did not take its last replies within {CLOSE_GRACE_PERIOD:.0f} seconds",
            "close_grace",
        )

    def cancelTimers(self) -> None:
        """
        Cancel every timer of this connection; subclasses with timers of
        their own extend this.
        """
        for call in (self._idleCall, self._abortCall, self._handshakeCall):
            if call is not None and call.active():
                call.cancel()
        self._idleCall = self._abortCall = self._handshakeCall = None

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.connected = False
        self.cancelTimers()
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
            why=self._closeReason or _describe(reason),
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
    held to L{Limits}.

    @ivar connections: The registry; pass one registry to several factories
        to share one connection limit between their listeners.
    @ivar limits: The limits on each connection.
    @ivar clock: The source of time and timers.
    """

    protocol: type[TrackedProtocol]
    noisy = False

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        connections: ConnectionRegistry | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.limits = limits if limits is not None else Limits()
        self.connections = connections if connections is not None else ConnectionRegistry()

    def buildProtocol(self, addr: Any) -> TrackedProtocol:
        p = self.protocol()
        p.factory = self
        p.clock = self.clock
        p.limits = self.limits
        return p
