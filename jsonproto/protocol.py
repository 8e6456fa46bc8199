"""
The JSON message protocols: one message pipeline, two framings.

L{JSONLineProtocol} speaks newline-delimited JSON (the seed's protocol) and
L{JSONInt32Protocol} 4-byte length-prefixed JSON.  Both decode each message
with L{jsonproto.codec}, hand it to the factory's
L{jsonproto.dispatcher.Dispatcher}, and write the replies in request order,
framed like the requests.

They inherit the interface of Twisted's C{LineOnlyReceiver} and
C{Int32StringReceiver} (C{lineReceived}/C{stringReceived},
C{sendLine}/C{sendString}, C{MAX_LENGTH}) so they sit where Twisted users
expect them, but replace the receivers' C{dataReceived} with
L{jsonproto.framing}'s decoders, which are linear in the bytes received, skip
an over-long line instead of dropping the read it came in, and stop
delivering messages once the connection is closing.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols import basic

from jsonproto import codec, framing
from jsonproto.builtin import defaultDispatcher
from jsonproto.connection import (
    DEFAULT_IDLE_TIMEOUT,
    ConnectionRegistry,
    TrackedProtocol,
    TrackingFactory,
)
from jsonproto.dispatcher import Dispatcher, Reply
from jsonproto.errors import (
    INTERNAL_ERROR,
    MESSAGE_TOO_LONG,
    NUMBER_OUT_OF_RANGE,
    SERVER_BUSY,
    RequestError,
)

log = Logger()

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

_NOT_READY: Any = object()


class JSONMessageProtocol(TrackedProtocol):
    """
    The framing-independent part: decode, dispatch, reply in order.

    Subclasses supply C{decoderType} (bytes to frames), C{frameMessage}
    (one encoded message to bytes on the wire) and C{closesOnTooLong}
    (whether an over-long message ends the connection).
    """

    factory: JSONServerFactory
    decoderType: ClassVar[type[framing.Decoder]]
    closesOnTooLong: ClassVar[bool]

    _decoder: framing.Decoder
    # Frames written while handling one read go out in one write.
    _batch: list[bytes] | None = None
    # Replies that must wait for an earlier, asynchronous one; each is a
    # one-item list holding the reply, or _NOT_READY.
    _waiting: deque[list[Any]]

    @staticmethod
    def frameMessage(payload: bytes) -> bytes:
        """
        Frame one encoded message for the wire.
        """
        raise NotImplementedError

    def connectionMade(self) -> None:
        self._waiting = deque()
        # The receivers' name for the limit; ours comes from the factory.
        self.MAX_LENGTH = self.factory.maxMessageSize
        self._decoder = self.decoderType(self.factory.maxMessageSize)
        super().connectionMade()

    def refuse(self) -> None:
        self.transport.write(self.frameMessage(codec.encode(SERVER_BUSY.reply())))
        self.transport.loseConnection()

    @property
    def busy(self) -> bool:
        return bool(self._waiting)

    def dataReceived(self, data: bytes) -> None:
        info = self.info
        if info is None or self.transport.disconnecting:
            # Refused, or closing: nothing more is read, nor buffered.
            return
        info.bytesIn += len(data)
        decoder = self._decoder
        decoder.feed(data)
        transport = self.transport
        self._batch = []
        try:
            messages = info.messagesIn
            while not transport.disconnecting:
                frame = decoder.nextFrame()
                if frame is None:
                    break
                if frame is framing.TOO_LONG:
                    self._tooLong()
                else:
                    self.frameReceived(frame)
            if info.messagesIn != messages:
                self.touch()
        finally:
            self._flushBatch()
            self._batch = None

    def frameReceived(self, frame: bytes) -> None:
        """
        One complete message's bytes have arrived: answer them.
        """
        info = self.info
        if info is None:
            return
        info.messagesIn += 1
        try:
            message = codec.decode(frame)
        except RequestError as e:
            result: Reply | Deferred[Reply] = e.reply()
        else:
            result = self.factory.dispatcher.dispatch(message, info)
        self._reply(result)

    def _reply(self, result: Reply | Deferred[Reply]) -> None:
        """
        Write a reply now, or queue it behind replies still being computed.
        """
        if isinstance(result, Deferred):
            slot = [_NOT_READY]
            self._waiting.append(slot)
            result.addCallback(self._replyReady, slot)
        elif self._waiting:
            self._waiting.append([result])
        else:
            self._writeReply(result)

    def _replyReady(self, reply: Reply, slot: list[Any]) -> None:
        slot[0] = reply
        waiting = self._waiting
        while waiting and waiting[0][0] is not _NOT_READY:
            self._writeReply(waiting.popleft()[0])
        if not waiting:
            self.workDone()

    def _tooLong(self) -> None:
        assert self.info is not None
        self.info.messagesIn += 1
        self._reply(MESSAGE_TOO_LONG.reply())
        if self.closesOnTooLong:
            self.closeConnection(
                f"message longer than {self.factory.maxMessageSize} bytes; "
                "the stream cannot be resynchronised"
            )

    def _writeReply(self, reply: Reply) -> None:
        info = self.info
        if info is None or not self.connected:
            # The connection has gone; the reply has nobody to go to.
            return
        info.messagesOut += 1
        self._writeFrame(self._encode(reply))

    def _encode(self, reply: Reply) -> bytes:
        try:
            return codec.encode(reply)
        except RequestError as e:
            if e.error is not NUMBER_OUT_OF_RANGE:
                log.error(
                    "connection {connectionId}: cannot encode a reply: {error}",
                    connectionId=self.info.id if self.info else None,
                    error=e,
                )
                e = RequestError(INTERNAL_ERROR)
            fallback = e.reply()
            if "id" in reply:
                fallback["id"] = reply["id"]
            return codec.encode(fallback)

    def _writeFrame(self, payload: bytes) -> None:
        frame = self.frameMessage(payload)
        if self._batch is not None:
            self._batch.append(frame)
        else:
            self._write(frame)

    def _write(self, data: bytes) -> None:
        if self.info is not None:
            self.info.bytesOut += len(data)
        self.transport.write(data)

    def sendMessage(self, message: Reply) -> None:
        """
        Write one message now, outside the order of replies.
        """
        self._writeFrame(self._encode(message))

    def _flushBatch(self) -> None:
        batch = self._batch
        if batch:
            self._write(b"".join(batch))
            batch.clear()

    def closeConnection(self, reason: str) -> None:
        # Replies batched from this read go out before the close.
        self._flushBatch()
        super().closeConnection(reason)


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
    @ivar maxMessageSize: The longest message accepted, in bytes.
    """

    protocol: type[JSONMessageProtocol]

    def __init__(
        self,
        dispatcher: Dispatcher | None = None,
        *,
        framing: str = "line",
        maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
        connections: ConnectionRegistry | None = None,
        idleTimeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Any = None,
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if maxMessageSize < 1:
            raise ValueError(f"maxMessageSize must be at least 1, not {maxMessageSize!r}")
        super().__init__(connections=connections, idleTimeout=idleTimeout, clock=clock)
        self.dispatcher = dispatcher if dispatcher is not None else defaultDispatcher()
        self.protocol = FRAMINGS[framing]
        self.maxMessageSize = maxMessageSize
