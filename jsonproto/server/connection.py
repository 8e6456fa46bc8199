"""
What every jsonproto connection does, whatever it speaks: it is admitted
into its service's registry (or refused, politely, at a limit), closed when
idle, its TLS handshake timed, and closed with a reason that reaches the
log, in a way that loses nothing the peer has not read
(L{jsonproto.server.closing}).

Time comes from an injected L{IReactorTime}, so tests drive it with
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    INegotiated,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsonproto import compat
from jsonproto.errors import ErrorCode
from jsonproto.limits import Limits
# CLOSE_GRACE_PERIOD is imported from here too, as it always was.
from jsonproto.server.closing import CLOSE_GRACE_PERIOD, closeGently, describeEnd
from jsonproto.server.identity import ClientIdentity
from jsonproto.server.registry import ConnectionInfo, ConnectionRefused, formatAddress
from jsonproto.server.refusallog import refusalLog

if TYPE_CHECKING:
    from jsonproto.server.factory import TrackingFactory

log = Logger()

def recheckAfter(elapsed: float, timeout: float) -> float:
    """
    When a timer that found C{elapsed} of C{timeout} gone (and did not
    act) should look again: when the rest runs out, or a whole timeout on
    if it had run out but something (work under way, a pause) held it.

    Timers here are moved only when they fire, never on every message.
    """
    return timeout - elapsed if elapsed < timeout else timeout


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class TrackedProtocol(protocol.Protocol):
    """
    A connection that registers itself with its factory's registry, is
    refused politely when a limit is reached, and is closed when idle.

    A peer that shuts down its sending side (C{nc -N}, C{socket.shutdown})
    still gets every reply to what it sent: the connection closes once the
    work in hand is written, not at once.

    Closing never destroys replies the peer has not read yet: the server
    closes only its sending side, and the whole connection once the peer
    has closed its own (L{jsonproto.server.closing.closeGently}), or after
    L{CLOSE_GRACE_PERIOD}.

    Subclasses say what "activity" is by calling L{touch}, what refusal
    looks like by overriding L{refuse}, and whether work is still under way
    (which keeps an idle connection open, and a closing one waiting) by
    overriding L{busy} and calling L{workDone}.
    """

    factory: TrackingFactory
    # A TCP, TLS or Unix transport, also a producer; Protocol says only
    # Optional[ITransport], which has neither half.
    transport: Any
    # The factory's, copied here by buildProtocol: read on every message.
    clock: IReactorTime
    limits: Limits
    info: ConnectionInfo | None = None
    _idleCall: IDelayedCall | None = None
    _abortCall: IDelayedCall | None = None
    _handshakeCall: IDelayedCall | None = None
    _closeReason: str | None = None
    _closeWhenDone: str | None = None
    _closeKind = "server"
    # Set once the server has decided to close: what arrives is discarded.
    closing = False
    # Whether this protocol registered a producer with its transport.
    _producing = False
    # Behind a PROXY-protocol listener: the real client's address is known
    # only once data arrives (the header comes first).
    proxied = False

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
            return
        log.info(
            "connection {connectionId} from {peer} opened",
            connectionId=self.info.id,
            peer=self.info.peer,
        )
        if self.limits.idleTimeout:
            self._idleCall = self.clock.callLater(self.limits.idleTimeout, self._checkIdle)
        self.proxied = compat.behindProxy(self.transport)
        if INegotiated.providedBy(self.transport):
            self.info.tls = True
            if self.limits.handshakeTimeout:
                self._handshakeCall = self.clock.callLater(
                    self.limits.handshakeTimeout, self._handshakeTimedOut
                )

    def registerProducer(self, producer: Any) -> None:
        """
        Register a streaming producer with the transport, to be unregistered
        when the connection closes (TLS sends its close alert only once no
        producer is registered).
        """
        self.transport.registerProducer(producer, True)
        self._producing = True

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
        self._finish()

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
        Called by subclasses when the work under way may be done: a close
        that was waiting for it happens now.
        """
        if self._closeWhenDone is not None and not self.busy:
            self.closeConnection(self._closeWhenDone, self._closeKind)

    def readConnectionLost(self) -> None:
        """
        The peer will send nothing more: close once nothing is under way
        (at once if the server was already closing).
        """
        if self.closing:
            self.transport.loseConnection()
            return
        self.closeWhenDone("the peer closed its sending side", "peer_finished")

    def writeConnectionLost(self) -> None:
        """
        Our sending side is closed.  While closing, the peer's own close is
        awaited; otherwise nothing is left to do.
        """
        if not self.closing:
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
        Close the connection after what has been written, logging why; abort
        it if the peer has not taken what was written, and closed its side,
        within L{CLOSE_GRACE_PERIOD}.

        @param kind: The reason's category, a metrics label: C{idle},
            C{message_timeout}, C{too_many_errors}, C{shutdown}, ...
        """
        if self._closeReason is not None or self.info is None:
            return
        self.factory.connections.countClose(kind)
        self._closeReason = reason
        self._logClose("closing", reason)
        self._finish()

    def _finish(self) -> None:
        """
        End the connection without losing what the peer has not read
        (L{closeGently}); abort it if it is still open after
        L{CLOSE_GRACE_PERIOD}.
        """
        if self.closing:
            return
        self.closing = True
        transport = self.transport
        if self._producing:
            self._producing = False
            transport.unregisterProducer()
        closeGently(transport)
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
        self.closing = True
        self.transport.abortConnection()

    def _startAbortTimer(self) -> None:
        if self._abortCall is None:
            self._abortCall = self.clock.callLater(CLOSE_GRACE_PERIOD, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        self.forceClose(
            # Said alike whether replies were still unread or the peer had
            # taken them all and only left its side open: which is not known.
            f"the peer did not close its side within {CLOSE_GRACE_PERIOD:.0f} seconds of the server's close",
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
        self.factory.connections.remove(info, lambda: self.ended(reason))
        log.info(
            "connection {connectionId} from {peer} closed after {duration:.1f} seconds "
            "({why}): {messagesIn} messages and {bytesIn} bytes in, "
            "{messagesOut} messages and {bytesOut} bytes out",
            connectionId=info.id,
            peer=info.peer,
            duration=self.clock.seconds() - info.connectedAt,
            why=self.closedBecause(reason),
            messagesIn=info.messagesIn,
            bytesIn=info.bytesIn,
            messagesOut=info.messagesOut,
            bytesOut=info.bytesOut,
        )

    def ended(self, reason: Failure) -> Deferred[None] | None:
        """
        Called when the connection has closed and left the registry:
        subclasses run what must follow (close hooks).

        @return: A L{Deferred} the service's stop should wait for, or
            L{None}.
        """
        return None

    def closedBecause(self, reason: Failure) -> str:
        """
        Why the connection ended, in words: the server's reason if it
        closed it, else what the transport said.
        """
        return self._closeReason or describeEnd(reason)

    def sendMessage(self, message: dict[str, Any]) -> None:
        """
        Write one unsolicited message; only message protocols can.
        """
        raise NotImplementedError(f"{type(self).__name__} does not send messages")
