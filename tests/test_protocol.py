"""
The JSON protocols on an in-memory transport: what a client sends, what it
gets back, byte for byte, in both framings.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.server.registry import ConnectionInfo
from jsonproto.wire.framing import encodeInt32
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.protocol import JSONInt32Protocol, JSONLineProtocol
from tests.support import connect, int32, line, readInt32, readLines

SEED_REQUESTS = b'{"type":"GREETING","name":"Alice"}\n{"type":"SUM","a":10,"b":20}\n{"type":"NOPE"}\nnot json\n'
SEED_REPLIES = (
    b'{"status":"OK","reply":"Hello, Alice!"}\n'
    b'{"status":"OK","result":30}\n'
    b'{"status":"ERROR","message":"Unknown type","code":"unknown_type"}\n'
    b'{"status":"ERROR","message":"Invalid JSON","code":"invalid_json"}\n'
)


class _FramingTests:
    """
    Rules both framings keep; subclasses say how to frame.
    """

    framing: str
    frame: Callable[[Any], bytes]
    read: Callable[[bytes], list[Any]]
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any
    flushLoggedErrors: Any

    def setUp(self) -> None:
        self.clock = Clock()
        self.dispatcher = defaultDispatcher()
        self.factory = JSONServerFactory(
            self.dispatcher, framing=self.framing, limits=Limits(maxMessageSize=1000), clock=self.clock
        )
        self.proto, self.transport = connect(self.factory)

    def replies(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return self.read(data)

    def test_protocolClass(self) -> None:
        """
        The factory builds the protocol class its framing names.
        """
        expected = {"line": JSONLineProtocol, "int32": JSONInt32Protocol}[self.framing]
        self.assertTrue(isinstance(self.proto, expected))

    def test_seedMessages(self) -> None:
        """
        The seed's four exchanges.
        """
        for message in [{"type": "GREETING", "name": "Alice"}, {"type": "SUM", "a": 10, "b": 20}, {"type": "NOPE"}]:
            self.proto.dataReceived(self.frame(message))
        self.assertEqual(
            self.replies(),
            [
                {"status": "OK", "reply": "Hello, Alice!"},
                {"status": "OK", "result": 30},
                {"status": "ERROR", "message": "Unknown type", "code": "unknown_type"},
            ],
        )

    def test_everySplit(self) -> None:
        """
        The same requests split into two reads at every point get the same
        replies, multi-byte UTF-8 intact.
        """
        messages = [{"type": "GREETING", "name": "Zoë 😀"}, {"type": "SUM", "a": 1, "b": 2, "id": "x"}]
        stream = b"".join(self.frame(m) for m in messages)
        expected = [{"status": "OK", "reply": "Hello, Zoë 😀!"}, {"status": "OK", "result": 3, "id": "x"}]
        for i in range(len(stream) + 1):
            proto, transport = connect(self.factory)
            proto.dataReceived(stream[:i])
            proto.dataReceived(stream[i:])
            self.assertEqual(self.read(transport.value()), expected, i)

    def test_badInputThenGood(self) -> None:
        """
        Each bad message gets its error reply and the next message is
        answered: the connection stays usable.
        """
        bad = [b"\xff\xfe", b"[1,2]", b'{"type":"SUM","a":NaN,"b":1}', b'{"a":1e999}', b'{"type":7}', b"{" * 200 + b"}" * 200]
        for payload in bad:
            self.proto.dataReceived(self.frame(payload) if isinstance(payload, dict) else self.rawFrame(payload))
            self.proto.dataReceived(self.frame({"type": "SUM", "a": 1, "b": 1}))
        replies = self.replies()
        self.assertEqual(
            [r.get("code") for r in replies[0::2]],
            ["invalid_json", "not_an_object", "invalid_json", "number_out_of_range", "invalid_type", "invalid_json"],
        )
        self.assertEqual(replies[1::2], [{"status": "OK", "result": 2}] * len(bad))
        self.assertFalse(self.transport.disconnecting)

    def test_repliesInOrder(self) -> None:
        """
        A slow handler's reply comes before the replies to the requests sent
        after it, even though those are ready first.
        """
        slow: list[Deferred[dict[str, Any]]] = []
        self.dispatcher.register("SLOW", lambda m, c: slow.append(Deferred()) or slow[-1])
        for message in [{"type": "SLOW", "id": 1}, {"type": "SUM", "a": 1, "b": 1, "id": 2}, {"type": "SLOW", "id": 3}, {"type": "NOPE", "id": 4}]:
            self.proto.dataReceived(self.frame(message))
        self.assertEqual(self.replies(), [])
        slow[1].callback({"n": 3})
        self.assertEqual(self.replies(), [])
        slow[0].callback({"n": 1})
        self.assertEqual([r["id"] for r in self.replies()], [1, 2, 3, 4])
        self.proto.dataReceived(self.frame({"type": "SUM", "a": 1, "b": 1, "id": 5}))
        self.assertEqual([r["id"] for r in self.replies()], [5])

    def test_oneWritePerRead(self) -> None:
        """
        The replies to one read go out in one write.
        """
        writes: list[bytes] = []
        self.transport.write = writes.append  # type: ignore[method-assign]
        self.proto.dataReceived(b"".join(self.frame({"type": "SUM", "a": i, "b": 0}) for i in range(50)))
        self.assertEqual(len(writes), 1)
        self.assertEqual([r["result"] for r in self.read(writes[0])], list(range(50)))

    def test_handlerCrash(self) -> None:
        """
        A handler that raises gets "Internal error" and the connection lives.
        """
        self.dispatcher.register("CRASH", lambda m, c: 1 / 0)
        self.proto.dataReceived(self.frame({"type": "CRASH", "id": 1}) + self.frame({"type": "SUM", "a": 1, "b": 2}))
        self.assertEqual(
            self.replies(),
            [{"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": 1}, {"status": "OK", "result": 3}],
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unencodableReply(self) -> None:
        """
        A handler returning something JSON cannot carry gets "Internal error"
        with the request's id, never a broken frame.
        """
        self.dispatcher.register("SET", lambda m, c: {"items": {1, 2}})
        self.proto.dataReceived(self.frame({"type": "SET", "id": "s"}))
        self.assertEqual(self.replies(), [{"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": "s"}])

    def test_nanReplyIsTheServersMistake(self) -> None:
        """
        A handler that returns NaN has made a mistake of the server's, not
        the client's: "Internal error", logged, and not charged to the
        client's error budget.
        """
        from tests.support import LogCatcher

        logged = LogCatcher(self)
        self.dispatcher.register("NAN", lambda m, c: {"value": float("nan")})
        self.proto.dataReceived(self.frame({"type": "NAN", "id": 7}))
        self.assertEqual(self.replies(), [{"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": 7}])
        self.assertEqual(len(logged.matching("NaN or infinity")), 1)
        self.assertEqual(self.factory.connections.errorReplies, {"internal_error": 1})

    def test_sumOverflow(self) -> None:
        """
        1e308 + 1e308 is an error reply, not "Infinity" on the wire.
        """
        self.proto.dataReceived(self.frame({"type": "SUM", "a": 1e308, "b": 1e308}))
        self.assertEqual(self.replies()[0]["code"], "number_out_of_range")

    def test_context(self) -> None:
        """
        Handlers see the connection's record: id, peer and counters.
        """
        seen: list[ConnectionInfo] = []
        self.dispatcher.register("WHO", lambda m, c: seen.append(c) or {"id": c.id, "peer": c.peer})
        self.proto.dataReceived(self.frame({"type": "WHO"}))
        self.assertEqual(self.replies(), [{"status": "OK", "id": self.proto.info.id, "peer": "127.0.0.1:40000"}])
        self.assertEqual(seen[0].messagesIn, 1)

    def test_push(self) -> None:
        """
        A handler can push a message to the client outside request/reply,
        framed like the replies.
        """
        self.dispatcher.register("SUB", lambda m, c: c.send({"event": "hello"}) or {"subscribed": True})
        self.proto.dataReceived(self.frame({"type": "SUB"}))
        self.assertEqual(self.replies(), [{"event": "hello"}, {"status": "OK", "subscribed": True}])

    def test_counters(self) -> None:
        """
        The connection's record counts messages and bytes both ways.
        """
        data = self.frame({"type": "SUM", "a": 1, "b": 2}) * 3
        self.proto.dataReceived(data)
        info = self.proto.info
        self.assertEqual(
            (info.messagesIn, info.bytesIn, info.messagesOut, info.bytesOut),
            (3, len(data), 3, len(self.transport.value())),
        )

    def test_stopsAfterClose(self) -> None:
        """
        Once a handler closes the connection, the messages behind it in the
        same read are not handled.
        """
        handled = []
        self.dispatcher.register("BYE", lambda m, c: c.close("client said bye") or {"bye": True})
        self.dispatcher.register("NOTE", lambda m, c: handled.append(m) or {})
        self.proto.dataReceived(self.frame({"type": "BYE"}) + self.frame({"type": "NOTE"}) * 3)
        self.assertEqual(self.replies(), [{"status": "OK", "bye": True}])
        self.assertEqual(handled, [])
        self.assertTrue(self.transport.disconnecting)

    def test_nothingReadWhileClosing(self) -> None:
        """
        Once the server is closing a connection, what the client still
        sends is neither answered nor buffered.
        """
        self.proto.closeConnection("test")
        self.proto.dataReceived(self.frame({"type": "SUM", "a": 1, "b": 1}) * 100)
        self.assertEqual(self.replies(), [])
        self.assertEqual(self.proto.pipeline.bufferedBytes, 0)

    def test_notTwistedsReceivers(self) -> None:
        """
        The protocols do not pretend to be Twisted's line and string
        receivers, whose methods (lineReceived, sendLine, stringReceived)
        overriding would have no effect on: a subclass that tried would
        find out at once rather than silently.
        """
        from twisted.protocols import basic

        self.assertFalse(isinstance(self.proto, (basic.LineOnlyReceiver, basic.IntNStringReceiver)))
        for name in ("lineReceived", "sendLine", "stringReceived", "sendString", "MAX_LENGTH"):
            self.assertFalse(hasattr(self.proto, name), name)

    def test_plainFactory(self) -> None:
        """
        Built by a plain Factory, which has no dispatcher, limits or
        registry, the protocol says what it needs instead of failing with
        an AttributeError deep inside.
        """
        from twisted.internet.protocol import Factory

        proto = Factory.forProtocol(self.factory.protocol).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        with self.assertRaises(TypeError) as caught:
            proto.makeConnection(StringTransport())
        self.assertIn("must be built by a JSONServerFactory", str(caught.exception))

    def test_halfClose(self) -> None:
        """
        A client that shuts down its sending side still gets every reply,
        including those still being computed; then the connection closes.
        """
        slow: Deferred[dict[str, Any]] = Deferred()
        self.dispatcher.register("SLOW", lambda m, c: slow)
        self.proto.dataReceived(self.frame({"type": "SLOW"}) + self.frame({"type": "SUM", "a": 1, "b": 2}))
        self.proto.readConnectionLost()
        self.assertFalse(self.transport.disconnecting)
        slow.callback({})
        self.assertEqual(self.replies(), [{"status": "OK"}, {"status": "OK", "result": 3}])
        self.assertTrue(self.transport.disconnecting)

    def test_logMessages(self) -> None:
        """
        With logMessages, each message in and out is logged with the
        connection; without it, none is.
        """
        from tests.support import LogCatcher

        logged = LogCatcher(self)
        self.proto.dataReceived(self.frame({"type": "SUM", "a": 1, "b": 1}))
        self.assertEqual(logged.matching("sent {"), [])
        self.factory.logMessages = True
        self.proto, self.transport = connect(self.factory)
        self.proto.dataReceived(self.frame({"type": "SUM", "a": 2, "b": 2}))
        [received] = logged.matching(":40000 sent {")
        [replied] = logged.matching("was sent {")
        self.assertEqual(received["connectionId"], self.proto.info.id)
        self.assertIn('"a":2', received["text"])
        self.assertEqual(replied["text"], '{"status":"OK","result":4}')

    def test_replyAfterLost(self) -> None:
        """
        A reply that becomes ready after the client has gone is dropped
        quietly.
        """
        slow: Deferred[dict[str, Any]] = Deferred()
        self.dispatcher.register("SLOW", lambda m, c: slow)
        self.proto.dataReceived(self.frame({"type": "SLOW"}))
        self.transport.finishClose()
        slow.callback({})
        self.assertEqual(self.transport.value(), b"")


class LineProtocolTests(_FramingTests, SynchronousTestCase):
    framing = "line"
    frame = staticmethod(line)
    read = staticmethod(readLines)

    @staticmethod
    def rawFrame(payload: bytes) -> bytes:
        return payload + b"\n"

    def test_seedBytes(self) -> None:
        """
        The seed's requests get the seed's replies, byte for byte (plus a
        machine-readable code on errors).
        """
        self.proto.dataReceived(SEED_REQUESTS)
        self.assertEqual(self.transport.value(), SEED_REPLIES)

    def test_crlfAndBlankLines(self) -> None:
        """
        \\r\\n works like \\n; blank lines get no reply.
        """
        self.proto.dataReceived(b'\r\n\n  \n{"type":"SUM","a":1,"b":1}\r\n\r\n')
        self.assertEqual(self.replies(), [{"status": "OK", "result": 2}])

    def test_tooLong(self) -> None:
        """
        A line over the limit gets "Message too long" in its place among
        the replies; the connection goes on at the next line.
        """
        self.proto.dataReceived(line({"type": "SUM", "a": 1, "b": 1}) + b'{"pad":"' + b"x" * 2000 + b'"}\n' + line({"type": "SUM", "a": 2, "b": 2}))
        self.assertEqual(
            self.replies(),
            [{"status": "OK", "result": 2}, {"status": "ERROR", "message": "Message too long", "code": "message_too_long"}, {"status": "OK", "result": 4}],
        )
        self.assertFalse(self.transport.disconnecting)

    def test_tooLongTrickled(self) -> None:
        """
        A line that arrives over many reads is refused once, as soon as it
        passes the limit, without being buffered; the next line is answered.
        """
        self.proto.dataReceived(b'{"type":"GREETING","name":"')
        for _ in range(200):
            self.proto.dataReceived(b"y" * 100)
            self.assertLessEqual(self.proto.pipeline.bufferedBytes, 1001)
        self.proto.dataReceived(b'"}\n' + line({"type": "SUM", "a": 1, "b": 1}))
        self.assertEqual([r.get("code") for r in self.replies()], ["message_too_long", None])

    def test_tooLongKeepsOrder(self) -> None:
        """
        The "Message too long" reply waits its turn behind a slow reply.
        """
        slow: Deferred[dict[str, Any]] = Deferred()
        self.dispatcher.register("SLOW", lambda m, c: slow)
        self.proto.dataReceived(line({"type": "SLOW"}) + b"z" * 1500 + b"\n")
        self.assertEqual(self.replies(), [])
        slow.callback({})
        self.assertEqual([r.get("code") for r in self.replies()], [None, "message_too_long"])


class Int32ProtocolTests(_FramingTests, SynchronousTestCase):
    framing = "int32"
    frame = staticmethod(int32)
    read = staticmethod(readInt32)
    rawFrame = staticmethod(encodeInt32)

    def test_seedMessagesFramed(self) -> None:
        """
        The seed's replies, each behind its 4-byte length.
        """
        self.proto.dataReceived(int32({"type": "GREETING", "name": "Alice"}))
        self.assertEqual(self.transport.value(), encodeInt32(b'{"status":"OK","reply":"Hello, Alice!"}'))

    def test_emptyFrame(self) -> None:
        """
        A zero-length frame is not JSON.
        """
        self.proto.dataReceived(encodeInt32(b""))
        self.assertEqual(self.replies()[0]["code"], "invalid_json")

    def test_tooLong(self) -> None:
        """
        A length over the limit gets "Message too long" and the connection
        is closed; nothing after it is handled, though replies before it
        are sent.
        """
        self.proto.dataReceived(
            int32({"type": "SUM", "a": 1, "b": 1}) + b"\x00\x00\x10\x00" + b"x" * 100 + int32({"type": "SUM", "a": 2, "b": 2})
        )
        self.assertEqual(
            self.replies(),
            [{"status": "OK", "result": 2}, {"status": "ERROR", "message": "Message too long", "code": "message_too_long"}],
        )
        self.assertTrue(self.transport.disconnecting)
        self.proto.dataReceived(int32({"type": "SUM", "a": 3, "b": 3}))
        self.assertEqual(self.replies(), [])


class FactoryArgumentTests(SynchronousTestCase):
    def test_badArguments(self) -> None:
        """
        Nonsense settings fail at construction, not at the first message.
        """
        self.assertRaises(ValueError, JSONServerFactory, framing="xml")
        self.assertRaises(ValueError, Limits, maxMessageSize=0)
        self.assertRaises(ValueError, Limits, maxPending=0)
        self.assertRaises(TypeError, Limits, sendTimeout="soon")
        self.assertRaises(ValueError, Limits, requestTimeout=float("inf"))
        self.assertRaises(ValueError, Limits, idleTimeout=-1)
