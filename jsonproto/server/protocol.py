"""
The JSON message protocols: Twisted's side of a connection's pipeline.

L{JSONLineProtocol} speaks newline-delimited JSON (the seed's protocol) and
L{JSONInt32Protocol} 4-byte length-prefixed JSON.  Every rule of a message,
from bytes to framed reply, is the pipeline's (L{jsonproto.core.pipeline});
this adapter feeds it what the transport reads, writes what it produces,
and does what needs Twisted:

    - waiting for replies handlers compute later (Deferreds, coroutines),
      each under the request timeout;
    - flow control: the protocol is a push producer for its transport, and
      stops reading (and answering) while the transport's write buffer is
      full, while too many requests are in flight, or while the other
      connections have their turn (L{jsonproto.server.flowcontrol});
    - the timers of a slow sender and of a peer that takes no replies;
    - the drain when the service stops (L{jsonproto.server.drain}).

These classes are not Twisted's C{LineOnlyReceiver} or
C{Int32StringReceiver}: the pipeline's decoders are linear in the bytes
received, skip an over-long line rather than the read it came in, and can
stop in the middle of a read.  Subclasses may extend C{connectionMade} and
C{connectionLost} (calling the base), and set C{decoderType} and
C{lengthPrefixed} for another framing; what a message gets for an answer is
the dispatcher's to say (L{jsonproto.dispatch.dispatcher.Dispatcher}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from jsonproto import compat
from jsonproto.core.envelope import errorReply
from jsonproto.core.output import Owed
from jsonproto.core.pipeline import BLOCKED, CLOSE, FLUSH, IDLE, YIELD, Pipeline
from jsonproto.core.rpcpipeline import RPCPipeline
from jsonproto.errors import INTERNAL_ERROR, REQUEST_TIMED_OUT, ErrorCode
from jsonproto.interfaces import IPipeline
from jsonproto.server.connection import TrackedProtocol, recheckAfter
from jsonproto.server.drain import Drain
from jsonproto.server.flowcontrol import OPENING, TOO_MANY_PENDING, TURN, FlowControl
from jsonproto.server.lifecycle import runHooks
from jsonproto.wire import codec, framing

if TYPE_CHECKING:
    from jsonproto.server.factory import JSONServerFactory

log = Logger()

# The core is Twisted-free, and so declares no interface itself; this
# adapter drives it through IPipeline.
classImplements(Pipeline, IPipeline)

PIPELINES: dict[str, type[Pipeline]] = {"jsonproto": Pipeline, "jsonrpc": RPCPipeline}
"""
The pipeline a connection gets, by its factory's envelope
(L{jsonproto.core.pipeline.ENVELOPES}).
"""


def _looksLikeClientHello(data: bytes) -> bool:
    """
    Whether a connection's first bytes are a TLS record carrying a
    ClientHello: content type 22, version 3.x, handshake type 1.
    """
    return len(data) >= 6 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04 and data[5] == 0x01


def _excerpt(payload: bytes, limit: int = 500) -> str:
    text = payload[:limit].decode("utf-8", "replace")
    return text if len(payload) <= limit else f"{text}... ({len(payload)} bytes)"


# The state every read consults, copied from the class defaults onto each
# connection as it opens: CPython specialises reading an instance's own
# attribute, not a class default found through the MRO (1,400 fewer
# instructions a read, callgrind, one SUM request per read).
_READ_STATE = (
    "closing",
    "proxied",
    "_drainStage",
    "_paused",
    "_transportPaused",
    "_closeWhenDone",
    "_running",
    "_runAgain",
    "_partialSince",
    "_firstRead",
)


class JSONMessageProtocol(Drain, FlowControl, TrackedProtocol):
    """
    The framing-independent part: a connection's L{Pipeline}, fed, written
    and flow-controlled (L{FlowControl}), and drained when the service
    stops (L{Drain}).

    Subclasses supply C{decoderType} (bytes to frames) and
    C{lengthPrefixed} (whether replies get a 4-byte length, else a newline).
    """

    factory: JSONServerFactory
    decoderType: ClassVar[type[framing.Decoder]]
    lengthPrefixed: ClassVar[bool]

    pipeline: Pipeline | None = None
    # Publications waiting for this connection (jsonproto.channels.outbox),
    # once it subscribes to a channel.
    outbox: Any = None
    # Running the pipeline; and whether something asked to run it meanwhile.
    _running = False
    _runAgain = False
    # Whether the next read is the first the pipeline sees (after any PROXY
    # header): only that one is checked for a TLS ClientHello.
    _firstRead = True
    # When the unfinished message at the end of the buffer began.
    _partialSince: float | None = None
    _messageCall: IDelayedCall | None = None

    def connectionMade(self) -> None:
        factory = self.factory
        if not hasattr(factory, "dispatcher") or not hasattr(factory, "connections"):
            raise TypeError(
                f"{type(self).__name__} must be built by a JSONServerFactory, which holds its "
                "dispatcher, limits and registry: JSONServerFactory(dispatcher, framing=...)"
            )
        super().connectionMade()
        info = self.info
        if info is None:
            return
        registry = factory.connections
        self.pipeline = PIPELINES[factory.envelope](
            self.decoderType(self.limits.maxMessageSize),
            self.lengthPrefixed,
            factory.dispatcher,
            self.limits,
            info,
            info.traffic,
            now=self.clock.seconds,
            awaitReply=self._awaitReply,
            errorCounts=registry.errorReplies,
            budget=registry.buffers,
            host=registry.limitedHost(info.host),
            logMessage=self._logMessage if factory.logMessages else None,
        )
        for name in _READ_STATE:
            setattr(self, name, getattr(self, name))
        self.registerProducer(self)
        if not self.proxied:
            self._opened()
        # Replies are already batched per read; Nagle would only delay them.
        setTcpNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            setTcpNoDelay(True)

    def refuse(self, error: ErrorCode) -> None:
        self.transport.write(self._frame(codec.encode(error.reply())))
        super().refuse(error)

    def _frame(self, payload: bytes) -> bytes:
        return framing.encodeInt32(payload) if self.lengthPrefixed else framing.encodeLine(payload)

    @property
    def busy(self) -> bool:
        return self.pipeline is not None and self.pipeline.busy

    # Reading

    def dataReceived(self, data: bytes) -> None:
        pipeline = self.pipeline
        info = self.info
        if pipeline is None or info is None or self.closing:
            # Refused, or closing: read and discarded.
            if info is not None:
                info.traffic.bytesIn += len(data)
            return
        if self.proxied:
            if not self.learnProxiedPeer():
                return
            pipeline.host = self.factory.connections.limitedHost(info.host)
            self._opened()
        if self._firstRead:
            self._firstRead = False
            if not info.tls and _looksLikeClientHello(data):
                # A TLS ClientHello: the client thinks this port speaks TLS.
                info.traffic.bytesIn = len(data)
                self.closeConnection("a TLS handshake arrived on a plaintext port", "tls_on_plaintext")
                return
        if self._drainStage:
            self._readDuringDrain = True
        traffic = info.traffic
        before = traffic.messagesIn
        midMessage = pipeline.receive(data)
        if not self._paused:
            self._run()
        completed = traffic.messagesIn != before
        if completed:
            # Activity, for the idle timer (one clock read serves both).
            info.lastActivity = self.clock.seconds()
        if midMessage and self.limits.messageTimeout:
            self._partialMessage(completed)
        else:
            self._partialSince = None

    def _opened(self) -> None:
        """
        The connection is open, and its client known: run the dispatcher's
        open hooks, holding its messages until they have finished.
        """
        hooks = self.factory.dispatcher.openHooks
        if not hooks:
            return
        running = runHooks(hooks, (self.info,), "open", self.clock)
        if running is not None:
            self._pause(OPENING)
            running.addCallback(lambda _: self._resume(OPENING))

    def _partialMessage(self, completed: bool) -> None:
        """
        A read left part of a message buffered: start timing it, unless the
        same message was already being timed.
        """
        if completed or self._partialSince is None:
            assert self.info is not None
            self._partialSince = self.info.lastActivity if completed else self.clock.seconds()
            if self._messageCall is None:
                self._messageCall = self.clock.callLater(self.limits.messageTimeout, self._checkMessageTimeout)

    def _run(self) -> None:
        """
        Answer what the pipeline holds until it runs out, the connection
        must wait, or it closes; then act on why it stopped.  Not
        re-entered: a reply that completes, or a resume, while the pipeline
        runs asks the running loop to go on instead.
        """
        if self._running:
            self._runAgain = True
            return
        pipeline = self.pipeline
        assert pipeline is not None
        self._running = True
        try:
            while True:
                self._runAgain = False
                outcome = pipeline.run()
                # What _flush does, written out: this runs on every read.
                if self.connected:
                    data = pipeline.takeOutput()
                    if data:
                        compat.writeNow(self.transport, data)
                if self._paused & ~TURN or self.closing or not self.connected:
                    return
                if outcome != FLUSH and not self._runAgain:
                    break
        finally:
            self._running = False
        if outcome == IDLE:
            # The common end of a read: only the checks that cost a call
            # when they have something to do.
            if self._transportPaused:
                self._readIfUnpaused()
            if self._closeWhenDone is not None:
                self.workDone()
        elif outcome == YIELD:
            self._yieldTurn()
        elif outcome == BLOCKED:
            # Reading stays paused: resuming the transport only to pause it
            # again would also start a drain's turn for nothing.
            self._pause(TOO_MANY_PENDING)
        else:
            assert outcome == CLOSE and pipeline.closeReason is not None and pipeline.closeKind is not None
            self._readIfUnpaused()
            self.closeWhenDone(pipeline.closeReason, pipeline.closeKind)

    def _flush(self) -> None:
        """
        Write what the pipeline has produced.  (L{_run}'s loop does the
        same, written out: keep the two alike.)
        """
        pipeline = self.pipeline
        if pipeline is not None and self.connected:
            data = pipeline.takeOutput()
            if data:
                compat.writeNow(self.transport, data)

    def _logMessage(self, direction: str, payload: bytes) -> None:
        """
        Log one message in or out (C{--log-messages}).
        """
        info = self.info
        log.info(
            "connection {connectionId} from {peer} {direction} {text}",
            connectionId=info.id if info is not None else None,
            peer=info.peer if info is not None else None,
            direction=direction,
            text=_excerpt(payload),
        )

    # Replies computed later

    def _awaitReply(self, owed: Owed, result: Deferred[Any], message: Any) -> None:
        """
        Wait for the reply a handler is still computing, under the request
        timeout, and hand it to the pipeline in its place.
        """
        if self.limits.requestTimeout:
            result.addTimeout(
                self.limits.requestTimeout,
                self.clock,
                onTimeoutCancel=lambda _, __: errorReply(REQUEST_TIMED_OUT, message),
            )
        result.addErrback(self._handlerFailed, message)
        result.addCallback(self._replyReady, owed)

    def _handlerFailed(self, failure: Failure, message: Any) -> dict[str, Any]:
        # Only a cancellation the handler did not catch gets this far.
        log.failure("handler for {messageType!r} was cancelled", failure, messageType=message.get("type"))
        return errorReply(INTERNAL_ERROR, message)

    def _replyReady(self, reply: dict[str, Any], owed: Owed) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        pipeline.complete(owed, reply)
        self._flush()
        if self._paused & TOO_MANY_PENDING and pipeline.owed < self.limits.maxPending:
            self._resume(TOO_MANY_PENDING)
        elif not self._running:
            # A close may have been waiting for this reply.
            self.workDone()

    def writePublications(self, data: bytes) -> None:
        """
        Write framed publications (from the outbox).
        """
        if self.info is not None:
            self.info.traffic.bytesOut += len(data)
        compat.writeNow(self.transport, data)

    def sendMessage(self, message: dict[str, Any]) -> None:
        """
        Write one message now, outside the order of replies (see
        L{Pipeline.push}).
        """
        pipeline = self.pipeline
        if pipeline is None or self.closing or not self.connected:
            return
        pipeline.push(message)
        self._flush()

    # Slow senders

    def _checkMessageTimeout(self) -> None:
        self._messageCall = None
        since = self._partialSince
        pipeline = self.pipeline
        if since is None or pipeline is None or not pipeline.midMessage:
            # Finished since (the rest came while reading was paused).
            self._partialSince = None
            return
        timeout = self.limits.messageTimeout
        elapsed = self.clock.seconds() - since
        if elapsed >= timeout and not self._paused:
            self.closeConnection(f"a message took more than {timeout:g} seconds to arrive", "message_timeout")
            return
        self._messageCall = self.clock.callLater(recheckAfter(elapsed, timeout), self._checkMessageTimeout)

    # Closing

    def _finish(self) -> None:
        if self.pipeline is not None:
            self.pipeline.halt()
        super()._finish()

    def cancelTimers(self) -> None:
        super().cancelTimers()
        if self._messageCall is not None and self._messageCall.active():
            self._messageCall.cancel()
        self._messageCall = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self.pipeline is not None:
            self.pipeline.release()

    def ended(self, reason: Failure) -> Deferred[None] | None:
        """
        Run the dispatcher's close hooks.
        """
        hooks = self.factory.dispatcher.closeHooks
        if not hooks or self.info is None or self.pipeline is None:
            return None
        return runHooks(hooks, (self.info, self.closedBecause(reason)), "close", self.clock)


class JSONLineProtocol(JSONMessageProtocol):
    """
    Newline-delimited JSON: one UTF-8 JSON object per line, C{\\n} after
    each, a C{\\r} before it tolerated, blank lines ignored.  A line over the
    size limit gets C{"Message too long"} and the connection goes on at the
    next line.
    """

    decoderType = framing.LineDecoder
    lengthPrefixed = False


class JSONInt32Protocol(JSONMessageProtocol):
    """
    Length-prefixed JSON: a 4-byte big-endian unsigned length, then that
    many bytes of UTF-8 JSON.  A length over the size limit gets
    C{"Message too long"}, after the replies still owed to earlier
    requests, and the connection is closed: nothing after a bad length can
    be trusted to be a frame boundary.
    """

    decoderType = framing.Int32Decoder
    lengthPrefixed = True


FRAMINGS: dict[str, type[JSONMessageProtocol]] = {
    "line": JSONLineProtocol,
    "int32": JSONInt32Protocol,
}
"""
The framings by the names C{--framing} accepts.
"""
