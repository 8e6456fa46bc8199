"""
The common case of a JSON message protocol's read, in one loop.

Answering a message the general way (L{JSONMessageProtocol.frameReceived})
takes about twenty Python calls: the decoder, the codec, the dispatcher, the
reply queue, the encoder, the framer, the batch.  Each is there for a case
that matters (an error, a Deferred, a reply that must wait, logging) but
most messages are none of those: a well-formed object of a registered type
whose handler returns a dict.  L{answerFrames} answers a run of such
messages in one loop, with the same effect, message for message, as the
general path: the same counters, the same replies in the same order, the
same batching.  The first message it cannot answer that way is left for the
general path, which it never duplicates: what a handler returns or raises
is handed to the dispatcher and protocol methods the general path uses.

L{bind} gives a connection its fast path.  When the C{jsonproto.core._speedups}
extension is built, its C{bind} is used instead.  Its C{answer()} is a
step-for-step C translation of L{answerFrames}, with the protocol's reply
writing (C{_reply}, C{_writeReply}) written out too, and it goes further in
three places where Python would cost more than the message: C{read(data)}
cuts and answers frames straight from a read instead of feeding the
decoder first; called with no arguments it is the TCP transport's
C{doRead}, receiving from the socket and sending the replies itself; and
it writes the common reply's bytes without building the reply dict.  Each
of those hands anything unusual to the same methods the general path
uses.  The general path is the specification: the tests run every
conversation through it, through this module and through the C version,
and compare the bytes sent and every counter.

The loop reads and writes the protocol's and decoder's private state
(C{_frames}, C{_batch}, C{_waiting}, ...): it is a part of
L{jsonproto.server.protocol} kept in a module of its own so that the C version has
one small thing to mirror.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from jsonproto.wire import codec
from jsonproto.dispatch.dispatcher import _validId
from jsonproto.core.extension import speedups

if TYPE_CHECKING:
    from jsonproto.wire.framing import _FrameQueue
    from jsonproto.server.protocol import JSONMessageProtocol

try:
    from orjson import JSONDecodeError, loads
except ImportError:  # pragma: no cover - the package depends on it
    loads = None


def answerFrames(protocol: JSONMessageProtocol, queue: _FrameQueue) -> bool:
    """
    Answer the frames waiting in C{queue}, from the first, for as long as
    each is a well-formed object of a registered type (with a valid id, if
    any) and nothing needs a second look: stop before a frame that is not,
    when a handler has paused or closed the connection (or an error reply or
    a full batch has), and after a handler that did not return a dict.

    The caller has checked that the connection is open, is not draining,
    and does not log messages, and is handling a read (C{_batch} is a list).

    @return: Whether frames remain in C{queue}: the next is for the general
        path.
    """
    frames = queue._frames
    index = queue._next
    count = len(frames)
    info = protocol.info
    dispatcher = protocol.factory.dispatcher
    handlers = dispatcher._handlers
    latency = dispatcher.latency
    transport = protocol.transport
    assert info is not None and protocol._batch is not None
    try:
        while index < count:
            if protocol._paused or transport.disconnecting:
                # A handler closed the connection, or filled its buffer.
                break
            frame = frames[index]
            if type(frame) is not bytes:
                break
            try:
                message = loads(frame)
            except JSONDecodeError:
                break
            if type(message) is not dict:
                break
            messageType = message.get("type")
            if type(messageType) is not str:
                break
            handler = handlers.get(messageType)
            if handler is None:
                break
            if not _validId(message.get("id")):
                break
            if codec.mayHoldBigInteger(frame, message):
                # An integer orjson may have read as a float.
                break

            # From here on the frame is this loop's to answer.
            index += 1
            info.messagesIn += 1
            started = latency.countCall(messageType)
            try:
                result = handler(message, info)
            except Exception as e:
                protocol._reply(dispatcher.raised(e, message, messageType, started))
                return True
            if type(result) is not dict:
                reply = dispatcher.returned(result, message, messageType, started)
                if type(reply) is dict:
                    protocol._reply(reply)
                else:
                    protocol.replyLater(reply, message)
                return True
            # Written, or queued behind a reply still being computed, as
            # the general path does (the C version inlines this).
            protocol._reply(dispatcher.returnedDict(result, message, messageType, started))
        return index < len(frames)
    finally:
        queue._next = index



class FastPath(Protocol):
    """
    One connection's fast path, as L{bind} makes it.
    """

    readsSocket: bool
    """
    Whether it can be the transport's C{doRead} (C{__call__}): the C
    version reads from a plain TCP socket itself.
    """

    def answer(self) -> bool:
        """
        Run L{answerFrames} on the connection.
        """

    def read(self, data: bytes) -> bool:
        """
        Feed and answer one read, as C{decoder.feed(data)} and the
        protocol's C{_processFrames()} would, where that is the simple case;
        L{False}, having done nothing, otherwise.
        """


class _PureFastPath:
    """
    The Python L{FastPath}: L{answerFrames} bound to a connection.
    """

    __slots__ = ("protocol", "queue")
    readsSocket = False

    def __init__(self, protocol: JSONMessageProtocol, queue: _FrameQueue) -> None:
        self.protocol = protocol
        self.queue = queue

    def answer(self) -> bool:
        return answerFrames(self.protocol, self.queue)

    def read(self, data: bytes) -> bool:
        return False


def bind(protocol: JSONMessageProtocol, queue: _FrameQueue) -> FastPath:
    """
    The fast path of one connection, C{protocol} with its decoder C{queue}.

    The C version gathers what it needs of the protocol, its factory and
    its dispatcher here, once, rather than at every read.
    """
    return _PureFastPath(protocol, queue)


pureBind = bind
"""
The Python version, kept under this name when the C one replaces it.
"""

if loads is None:  # pragma: no cover - without orjson every message takes the general path
    bind = None  # type: ignore[assignment]
elif speedups is not None:
    bind = speedups.bind

implementation = "none" if bind is None else "python" if bind is pureBind else "C"
"""
Which fast path this process uses: C{"C"}, C{"python"} (no compiler at
install time, or C{JSONPROTO_NO_SPEEDUPS} set), or C{"none"} (no orjson).
"""
