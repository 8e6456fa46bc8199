"""
The JSON message protocols: one message pipeline, two framings.

L{JSONLineProtocol} speaks newline-delimited JSON (the seed's protocol) and
L{JSONInt32Protocol} 4-byte length-prefixed JSON.  Both decode each message
with L{jsonproto.wire.codec}, hand it to the factory's
L{jsonproto.dispatch.dispatcher.Dispatcher}, and write the replies in request order,
framed like the requests.

They inherit the interface of Twisted's C{LineOnlyReceiver} and
C{Int32StringReceiver} (C{lineReceived}/C{stringReceived},
C{sendLine}/C{sendString}, C{MAX_LENGTH}) so they sit where Twisted users
expect them, but replace the receivers' C{dataReceived} with
L{jsonproto.wire.framing}'s decoders, which are linear in the bytes received, skip
an over-long line instead of dropping the read it came in, and can stop in
the middle of a read.

The common messages of a read (well-formed, of a registered type, whose
handler returns a dict) are answered by the connection's fast path,
L{jsonproto.core.fastpath}, with the same replies, counters and limits as the
general path in this module, which answers everything else.

Stopping mid-read is what keeps memory bounded.  A protocol is a push
producer for its transport: when the transport's write buffer fills (the
peer is not reading its replies) it pauses the protocol, which stops
handling the frames it holds and stops reading from the socket, until the
buffer drains.  The same pause holds a connection whose handlers have too
many requests in flight.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.protocols import basic
from twisted.python.failure import Failure
from zope.interface import implementer

from jsonproto.core import fastpath
from jsonproto.wire import codec, framing
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.server.connection import ConnectionInfo, ConnectionRegistry, TrackedProtocol, TrackingFactory, recheckAfter
from jsonproto.core.counters import Tally
from jsonproto.dispatch.dispatcher import Dispatcher, Reply, errorReply
from jsonproto.errors import (
    INTERNAL_ERROR,
    MESSAGE_TOO_LONG,
    NUMBER_OUT_OF_RANGE,
    REQUEST_TIMED_OUT,
    SERVER_SIDE_CODES,
    SHUTTING_DOWN,
    TOO_MANY_ERRORS,
    ErrorCode,
    RequestError,
)
from jsonproto.limits import Limits

log = Logger()

BATCH_BYTES = 64 * 1024
"""
Replies to one read are written together, in one write, up to this many
bytes; past it they go out at once, so that a full transport can pause the
protocol before the rest of the read is handled.
"""

_NOT_READY: Any = object()

# Why reading is paused; a connection reads only when none holds.
_OUTPUT_BLOCKED = 1
_TOO_MANY_PENDING = 2

# Stages of a drain.
_ANSWERING = 1  # answering what had arrived when the drain began
_REFUSING = 2  # answering "Shutting down" to anything later

DRAIN_TURN = 0.01
"""
Seconds between looks at a draining connection: time for the reactor to
read what is already waiting in the socket, short enough not to delay
shutdown.
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


def _directSocket(transport: Any) -> Any:
    """
    The socket under a Twisted TCP server transport, if it is one whose
    write buffer we know how to read (C{dataBuffer} and
    C{_tempDataBuffer}); otherwise L{None}, and writes go through the
    transport (TLS, PROXY protocol, Unix sockets, test transports).
    """
    if type(transport) is tcp.Server and hasattr(transport, "_tempDataBuffer") and hasattr(transport, "dataBuffer"):
        return transport.socket
    return None


@implementer(IPushProducer)
class JSONMessageProtocol(TrackedProtocol):
    """
    The framing-independent part: decode, dispatch, reply in order, and
    hold the peer to the factory's L{Limits}.

    Subclasses supply C{decoderType} (bytes to frames), C{frameMessage}
    (one encoded message to bytes on the wire) and C{closesOnTooLong}
    (whether an over-long message ends the connection).
    """

    factory: JSONServerFactory
    decoderType: ClassVar[type[framing.Decoder]]
    closesOnTooLong: ClassVar[bool]
    # Whether frameMessage puts a 4-byte length before the message (else a
    # newline after it): what the fast path frames with.
    lengthPrefixed: ClassVar[bool]
    batchLimit: ClassVar[int] = BATCH_BYTES

    _decoder: framing.Decoder
    # Replies that must wait for an earlier, asynchronous one; each is a
    # one-item list holding the reply, or _NOT_READY.
    _waiting: deque[list[Any]]
    # The state each read and reply touches, in slots: the C fast path
    # reads and writes them in place (jsonproto/core/_speedups.c).  _batch and
    # _batchBytes: the frames written while handling one read, and their
    # size.
    __slots__ = ("_batch", "_batchBytes", "_paused", "_processing", "_errorsInRow", "_drainStage", "_partialSince")
    _batch: list[bytes] | None
    _batchBytes: Tally
    _paused: int
    _processing: bool
    _errorsInRow: int
    _drainStage: int
    _readDuringDrain = False
    # When the unfinished message at the end of the buffer began.
    _partialSince: float | None
    _messageCall: IDelayedCall | None = None
    _sendCall: IDelayedCall | None = None
    _drainCall: IDelayedCall | None = None
    # The socket of a plain TCP transport, written to directly when the
    # transport has nothing queued; None for any other transport.
    _socket: Any = None
    # This connection's fast path (jsonproto.core.fastpath.bind), or None.  It
    # is not used while the factory logs messages.
    _fastPath: fastpath.FastPath | None = None

    def __init__(self) -> None:
        super().__init__()
        self._batch = None
        # A Tally, never replaced: the C fast path keeps it and adds to it
        # at every reply.
        self._batchBytes = Tally()
        self._paused = 0
        self._processing = False
        self._errorsInRow = 0
        self._drainStage = 0
        self._partialSince = None

    @staticmethod
    def frameMessage(payload: bytes) -> bytes:
        """
        Frame one encoded message for the wire.
        """
        raise NotImplementedError

    def connectionMade(self) -> None:
        self._waiting = deque()
        # The receivers' name for the limit; ours comes from the factory.
        self.MAX_LENGTH = self.limits.maxMessageSize
        self._decoder = self.decoderType(self.limits.maxMessageSize)
        super().connectionMade()
        if self.info is not None:
            self.transport.registerProducer(self, True)
            # Replies are already batched per read; Nagle would only delay them.
            setTcpNoDelay = getattr(self.transport, "setTcpNoDelay", None)
            if setTcpNoDelay is not None:
                setTcpNoDelay(True)
            self._socket = _directSocket(self.transport)
            if fastpath.bind is not None:
                self._fastPath = fastpath.bind(self, self._decoder)
                if self._fastPath.readsSocket and self._socket is not None:
                    # Reads of a plain TCP connection go straight from the
                    # socket to the fast path (FastPath.__call__ in
                    # jsonproto/core/_speedups.c is the transport's doRead).
                    self.transport.doRead = self._fastPath

    def refuse(self, error: ErrorCode) -> None:
        self.transport.write(self.frameMessage(codec.encode(error.reply())))
        self.transport.loseConnection()

    @property
    def busy(self) -> bool:
        return bool(self._waiting)

    # Reading

    def dataReceived(self, data: bytes) -> None:
        info = self.info
        if info is None or self.transport.disconnecting:
            # Refused, or closing: nothing more is read, nor buffered.
            return
        if self.proxied and not self.learnProxiedPeer():
            return
        if not info.bytesIn and _looksLikeClientHello(data) and not info.tls:
            # A TLS ClientHello: the client thinks this port speaks TLS.
            info.bytesIn = len(data)
            self.closeConnection("a TLS handshake arrived on a plaintext port", "tls_on_plaintext")
            return
        info.bytesIn += len(data)
        decoder = self._decoder
        before = info.messagesIn
        if self._drainStage:
            self._readDuringDrain = True
        # The fast path's own read, if it has one, does the same as feed and
        # _processFrames, in the common case.
        fastPath = self._usableFastPath()
        if fastPath is None or not fastPath.read(data):
            decoder.feed(data)
            self._processFrames()
        completed = info.messagesIn != before
        if completed:
            # Activity, for the idle timer (one clock read serves both).
            info.lastActivity = self.clock.seconds()
        if self.limits.messageTimeout and decoder.midMessage:
            self._partialMessage(completed)
        else:
            self._partialSince = None

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

    def _processFrames(self) -> None:
        """
        Handle the frames the decoder holds until it runs out, the
        connection pauses, or it closes.  Not re-entered: a handler that
        fires synchronously and unpauses the connection leaves the loop
        already running to carry on.
        """
        if self._processing:
            return
        self._processing = True
        self._batch = []
        try:
            self._processQueued()
        finally:
            self._processing = False
            self._flushBatch()
            self._batch = None

    def _usableFastPath(self) -> fastpath.FastPath | None:
        """
        This connection's fast path, unless only the general path may answer
        now: while messages are logged, or the connection drains.
        """
        if self._drainStage or self.factory.logMessages:
            return None
        return self._fastPath

    def _processQueued(self) -> None:
        """
        The loop of L{_processFrames}, for a caller that has set up the
        batch of replies and will flush it.
        """
        decoder = self._decoder
        transport = self.transport
        while not self._paused and not transport.disconnecting:
            fastPath = self._usableFastPath()
            if fastPath is not None:
                if not fastPath.answer():
                    break
                if self._paused or transport.disconnecting:
                    break
            frame = decoder.nextFrame()
            if frame is None:
                break
            if frame is framing.TOO_LONG:
                self._tooLong()
            else:
                self.frameReceived(frame)

    def frameReceived(self, frame: bytes) -> None:
        """
        One complete message's bytes have arrived: answer them.
        """
        info = self.info
        if info is None:
            return
        info.messagesIn += 1
        if self.factory.logMessages:
            self._logMessage(info, "sent", frame)
        try:
            message = codec.decode(frame)
        except RequestError as e:
            self._reply(e.reply())
            return
        if self._drainStage == _REFUSING:
            self._reply(errorReply(SHUTTING_DOWN, message))
            return
        result = self.factory.dispatcher.dispatch(message, info)
        if type(result) is dict:
            self._reply(result)
        else:
            # A Deferred (isinstance would be slow: Deferred is an ABC).
            self.replyLater(result, message)

    @staticmethod
    def _logMessage(info: ConnectionInfo, direction: str, payload: bytes) -> None:
        """
        Log one message in or out (C{--log-messages}).
        """
        log.info(
            "connection {connectionId} from {peer} {direction} {text}",
            connectionId=info.id,
            peer=info.peer,
            direction=direction,
            text=_excerpt(payload),
        )

    def replyLater(self, result: Deferred[Reply], message: Any) -> None:
        """
        Queue the reply a handler is still computing, under the request
        timeout.
        """
        if self.limits.requestTimeout:
            result.addTimeout(
                self.limits.requestTimeout,
                self.clock,
                onTimeoutCancel=lambda _, __: errorReply(REQUEST_TIMED_OUT, message),
            )
        result.addErrback(self._handlerFailed, message)
        self._reply(result)

    def _handlerFailed(self, failure: Failure, message: Any) -> Reply:
        # Only a cancellation the handler did not catch gets this far.
        log.failure("handler for {messageType!r} was cancelled", failure, messageType=message.get("type"))
        return errorReply(INTERNAL_ERROR, message)

    def _tooLong(self) -> None:
        assert self.info is not None
        self.info.messagesIn += 1
        self._reply(MESSAGE_TOO_LONG.reply())
        if self.closesOnTooLong:
            self.closeConnection(
                f"message longer than {self.limits.maxMessageSize} bytes; "
                "the stream cannot be resynchronised",
                "message_too_long",
            )

    # Replying in order

    def _reply(self, result: Reply | Deferred[Reply]) -> None:
        """
        Write a reply now, or queue it behind replies still being computed.
        """
        waiting = self._waiting
        if type(result) is dict:
            if waiting:
                waiting.append([result])
            else:
                self._writeReply(result)
        elif isinstance(result, Deferred):
            slot = [_NOT_READY]
            waiting.append(slot)
            if len(waiting) >= self.limits.maxPending:
                self._pause(_TOO_MANY_PENDING)
            result.addCallback(self._replyReady, slot)
        elif waiting:
            waiting.append([result])
        else:
            self._writeReply(result)

    def _replyReady(self, reply: Reply, slot: list[Any]) -> None:
        slot[0] = reply
        waiting = self._waiting
        while waiting and waiting[0][0] is not _NOT_READY:
            self._writeReply(waiting.popleft()[0])
        if self._paused & _TOO_MANY_PENDING and len(waiting) < self.limits.maxPending:
            self._resume(_TOO_MANY_PENDING)
        if not waiting:
            self.workDone()

    def _writeReply(self, reply: Reply) -> None:
        info = self.info
        if info is None or not self.connected:
            # The connection has gone; the reply has nobody to go to.
            return
        info.messagesOut += 1
        payload = self.encodeReply(reply)
        if self.factory.logMessages:
            self._logMessage(info, "was sent", payload)
        self._writeFrame(payload)
        if reply.get("status") == "ERROR":
            self.errorReplied(reply)
        else:
            self._errorsInRow = 0

    def errorReplied(self, reply: Reply) -> None:
        """
        An error reply was written: count it, and close the connection of a
        client that sends nothing but mistakes.
        """
        code = reply.get("code")
        code = code if isinstance(code, str) else "none"
        self.factory.connections.countError(code)
        if code in SERVER_SIDE_CODES:
            return
        self._errorsInRow += 1
        if self.limits.maxErrors and self._errorsInRow > self.limits.maxErrors:
            self._writeFrame(self.encodeReply(TOO_MANY_ERRORS.reply(f"more than {self.limits.maxErrors} bad messages in a row")))
            self.closeConnection(f"more than {self.limits.maxErrors} bad messages in a row", "too_many_errors")

    def encodeReply(self, reply: Reply) -> bytes:
        try:
            return codec.encode(reply)
        except RequestError as e:
            if e.error is not NUMBER_OUT_OF_RANGE:
                log.error(
                    "connection {connectionId} from {peer}: cannot encode a reply: {error}",
                    connectionId=self.info.id if self.info else None,
                    peer=self.info.peer if self.info else None,
                    error=e,
                )
                e = RequestError(INTERNAL_ERROR)
            fallback = e.reply()
            if "id" in reply:
                fallback["id"] = reply["id"]
            return codec.encode(fallback)

    def _writeFrame(self, payload: bytes) -> None:
        frame = self.frameMessage(payload)
        batch = self._batch
        if batch is None:
            self._write(frame)
            return
        batch.append(frame)
        size = self._batchBytes
        size.n += len(frame)
        if size.n >= self.batchLimit:
            self._flushBatch()

    def _flushBatch(self) -> None:
        batch = self._batch
        if batch:
            data = b"".join(batch)
            batch.clear()
            self._batchBytes.n = 0
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.info is not None:
            self.info.bytesOut += len(data)
        transport = self.transport
        sock = self._socket
        if sock is not None and not transport.dataBuffer and not transport._tempDataBuffer:
            # Nothing is queued: send now rather than in the reactor's next
            # turn, saving two epoll updates and a turn per reply.
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # the transport's own write will meet the error
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def sendMessage(self, message: Reply) -> None:
        """
        Write one message now, outside the order of replies.
        """
        self._writeFrame(self.encodeReply(message))

    # Backpressure: IPushProducer, driven by the transport's write buffer

    def pauseProducing(self) -> None:
        """
        The transport's write buffer is full: the peer is not reading.
        Stop reading and handling requests until it drains, and give up on
        the peer if it does not within the send timeout.
        """
        self._pause(_OUTPUT_BLOCKED)
        if self.limits.sendTimeout and self._sendCall is None:
            self._sendCall = self.clock.callLater(self.limits.sendTimeout, self._sendTimedOut)

    def resumeProducing(self) -> None:
        """
        The transport's write buffer has drained.
        """
        if self._sendCall is not None:
            self._sendCall.cancel()
            self._sendCall = None
        self._resume(_OUTPUT_BLOCKED)

    def stopProducing(self) -> None:
        """
        The transport is closing; connectionLost does the rest.
        """

    def _pause(self, reason: int) -> None:
        if not self._paused:
            if self.info is not None:
                self.info.pauses += 1
            self.transport.pauseProducing()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.connected and not self.transport.disconnecting:
            self.transport.resumeProducing()
            self._processFrames()

    def _sendTimedOut(self) -> None:
        self._sendCall = None
        self.forceClose(f"the peer took none of its replies for {self.limits.sendTimeout:g} seconds", "send_timeout")

    # Slow senders

    def _checkMessageTimeout(self) -> None:
        self._messageCall = None
        since = self._partialSince
        if since is None or not self._decoder.midMessage:
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

    def drain(self, reason: str) -> None:
        """
        The service is stopping.  Requests the peer had already sent (read
        within the first L{DRAIN_TURN}) are answered normally; later ones
        get "Shutting down".  Once a turn passes with nothing read, the
        connection closes after the replies it owes.
        """
        self._closeWhenDone = reason
        self._drainStage = _ANSWERING
        self._readDuringDrain = False
        self._drainCall = self.clock.callLater(DRAIN_TURN, self._drainTurn)

    def _drainTurn(self) -> None:
        self._drainStage = _REFUSING
        if self._readDuringDrain:
            self._readDuringDrain = False
            self._drainCall = self.clock.callLater(DRAIN_TURN, self._drainTurn)
            return
        self._drainCall = None
        self.closeWhenDone(self._closeWhenDone or "the server is shutting down", "shutdown")

    def cancelTimers(self) -> None:
        super().cancelTimers()
        for call in (self._messageCall, self._sendCall, self._drainCall):
            if call is not None and call.active():
                call.cancel()
        self._messageCall = self._sendCall = self._drainCall = None


class JSONLineProtocol(JSONMessageProtocol, basic.LineOnlyReceiver):
    """
    Newline-delimited JSON: one UTF-8 JSON object per line, C{\\n} after
    each, a C{\\r} before it tolerated, blank lines ignored.  A line over the
    size limit gets C{"Message too long"} and the connection goes on at the
    next line.
    """

    delimiter = b"\n"
    decoderType = framing.LineDecoder
    frameMessage = staticmethod(framing.encodeLine)
    lengthPrefixed = False
    closesOnTooLong = False

    def lineReceived(self, line: bytes) -> None:
        self.frameReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._tooLong()


class JSONInt32Protocol(JSONMessageProtocol, basic.Int32StringReceiver):
    """
    Length-prefixed JSON: a 4-byte big-endian unsigned length, then that
    many bytes of UTF-8 JSON.  A length over the size limit gets
    C{"Message too long"} and the connection is closed: nothing after a bad
    length can be trusted to be a frame boundary.
    """

    decoderType = framing.Int32Decoder
    frameMessage = staticmethod(framing.encodeInt32)
    lengthPrefixed = True
    closesOnTooLong = True

    def stringReceived(self, string: bytes) -> None:
        self.frameReceived(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self._tooLong()


FRAMINGS: dict[str, type[JSONMessageProtocol]] = {
    "line": JSONLineProtocol,
    "int32": JSONInt32Protocol,
}
"""
The framings by the names C{--framing} accepts.
"""


class JSONServerFactory(TrackingFactory):
    """
    Builds JSON message protocols answering with one dispatcher.

    Usable on any server endpoint::

        factory = JSONServerFactory(dispatcher, framing="int32")
        serverFromString(reactor, "tcp:3001").listen(factory)

    @ivar dispatcher: Answers every message.
    @ivar logMessages: Log every message in and out (for debugging: it
        costs more than the messages themselves).
    """

    protocol: type[JSONMessageProtocol]

    # Slots: the C fast path reads both at every read (jsonproto/core/_speedups.c).
    __slots__ = ("dispatcher", "logMessages")
    dispatcher: Dispatcher
    logMessages: bool

    def __init__(
        self,
        dispatcher: Dispatcher | None = None,
        *,
        framing: str = "line",
        limits: Limits | None = None,
        connections: ConnectionRegistry | None = None,
        clock: Any = None,
        logMessages: bool = False,
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        super().__init__(limits=limits, connections=connections, clock=clock)
        self.dispatcher = dispatcher if dispatcher is not None else defaultDispatcher()
        self.protocol = FRAMINGS[framing]
        self.logMessages = logMessages
