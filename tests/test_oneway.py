"""
One-way messages: a type registered as one-way gets no reply; its errors
are logged and counted, not sent; and a client that only sends such
messages, never reading, is never held up or timed out for them.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.errors import INVALID_FIELD, RequestError
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from tests.e2e import startDaemon
from tests.support import LogCatcher, connect, connectBuffering, int32, line, readInt32, readLines


class _OneWay:
    framing: str
    frame: Any
    read: Any
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any

    def setUp(self) -> None:
        self.clock = Clock()
        self.dispatcher = defaultDispatcher()
        self.readings: list[Any] = []

        @self.dispatcher.handler("READING", oneWay=True)
        def reading(message: dict[str, Any], context: Any) -> None:
            if not isinstance(message.get("value"), float):
                raise RequestError(INVALID_FIELD, "value must be a float")
            self.readings.append(message["value"])

    def factory(self, **limits: Any) -> JSONServerFactory:
        return JSONServerFactory(self.dispatcher, framing=self.framing, limits=Limits(**limits), clock=self.clock)

    def test_noReply(self) -> None:
        """
        One-way messages get no reply; a request among them gets its own,
        as if they were not there.
        """
        proto, transport = connect(self.factory())
        proto.dataReceived(
            self.frame({"type": "READING", "value": 1.5, "id": 1})
            + self.frame({"type": "SUM", "a": 1, "b": 2, "id": 2})
            + self.frame({"type": "READING", "value": 2.5})
        )
        self.assertEqual(self.read(transport.value()), [{"status": "OK", "result": 3, "id": 2}])
        self.assertEqual(self.readings, [1.5, 2.5])
        self.assertEqual(proto.info.messagesIn, 3)
        self.assertEqual(self.dispatcher.counts["READING"], 2)

    def test_errorsLoggedNotSent(self) -> None:
        """
        A one-way message its handler refuses is logged and counted, and
        charged to the client's error budget, but nothing is sent.  The log
        says it at most once a second for a type, with how many more.
        """
        logged = LogCatcher(self)
        proto, transport = connect(self.factory(maxErrors=0))
        proto.dataReceived(self.frame({"type": "READING", "value": "hot"}) * 5)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.dispatcher.latency.errors, {"READING": 5})
        self.assertEqual(proto.factory.connections.errorReplies, {"invalid_field": 5})
        [line] = logged.matching("one-way 'READING' message refused")
        self.assertIn("value must be a float", line["detail"])

    def test_errorBudget(self) -> None:
        """
        A client sending nothing but bad one-way messages still runs out of
        error budget, and is told so as it is closed.
        """
        proto, transport = connect(self.factory(maxErrors=3, errorDecay=0))
        proto.dataReceived(self.frame({"type": "READING", "value": "hot"}) * 10)
        self.assertEqual([r["code"] for r in self.read(transport.value())], ["too_many_errors"])
        self.assertTrue(transport.disconnecting)

    def test_neverHeldUp(self) -> None:
        """
        A device that streams one-way messages and never reads fills no
        buffer: the connection is never paused, and no send timeout runs.
        """
        proto, transport = connectBuffering(self.factory(sendTimeout=1))
        for _ in range(50):
            proto.dataReceived(self.frame({"type": "READING", "value": 0.5}) * 2000)
            self.clock.advance(1)
        self.assertEqual((transport.value(), transport.producerState), (b"", "producing"))
        self.assertEqual(len(self.readings), 100_000)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(proto.info.pauses, 0)

    def test_asynchronous(self) -> None:
        """
        A one-way handler that returns a Deferred holds a place among the
        requests in flight (at most max-pending at once) but none in the
        order of replies; its failure is logged, not sent.
        """
        waiting: list[Deferred[None]] = []
        self.dispatcher.register("STORE", lambda m, c: waiting.append(Deferred()) or waiting[-1], oneWay=True)
        logged = LogCatcher(self)
        proto, transport = connect(self.factory(maxPending=2, requestTimeout=0))
        proto.dataReceived(self.frame({"type": "STORE"}) * 3 + self.frame({"type": "SUM", "a": 1, "b": 1}))
        self.assertEqual((len(waiting), transport.producerState), (2, "paused"))
        waiting[0].callback(None)
        waiting[1].errback(RuntimeError("disk full"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)  # type: ignore[attr-defined]
        waiting[2].callback(None)
        self.assertEqual(self.read(transport.value()), [{"status": "OK", "result": 2}])
        self.assertEqual(len(logged.matching("one-way 'STORE' message refused: internal_error")), 1)

    def test_coroutine(self) -> None:
        """
        A one-way handler may be a coroutine function: it runs to its end
        (awaiting what it needs), and nothing is sent for it.
        """
        stored: list[Any] = []
        later: Deferred[str] = Deferred()

        @self.dispatcher.handler("STORE", oneWay=True)
        async def store(message: dict[str, Any], context: Any) -> None:
            stored.append(await later)

        logged = LogCatcher(self)
        proto, transport = connect(self.factory())
        proto.dataReceived(self.frame({"type": "STORE"}) + self.frame({"type": "SUM", "a": 1, "b": 1}))
        later.callback("kept")
        self.assertEqual((stored, self.read(transport.value())), (["kept"], [{"status": "OK", "result": 2}]))
        self.assertEqual(logged.matching("refused"), [])


class LineOneWayTests(_OneWay, SynchronousTestCase):
    framing = "line"
    frame = staticmethod(line)
    read = staticmethod(readLines)


class Int32OneWayTests(_OneWay, SynchronousTestCase):
    framing = "int32"
    frame = staticmethod(int32)
    read = staticmethod(readInt32)


class StreamOverTCPTests(TestCase):
    """
    Over a real socket, a device streams one-way readings and never reads:
    every one is handled and the connection stays open.
    """

    timeout = 60

    @inlineCallbacks
    def test_stream(self) -> None:
        service, [port] = yield startDaemon(
            self, "--port", "tcp:0:interface=127.0.0.1", "--handlers", "tests.onewayhandlers", "--send-timeout", "1"
        )
        count = 100_000
        from tests import onewayhandlers

        onewayhandlers.received.append(0)

        def device() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b'{"type":"READING","value":0.5}\n' * count)
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(s.recv(1), b"")

        yield deferToThread(device)
        self.assertEqual(service.connections.closedBy, {"peer_finished": 1})
        self.assertEqual(onewayhandlers.received[-1], count)


class ClientNotifyTests(TestCase):
    """
    Both clients send one-way messages with C{notify}: nothing waits for a
    reply to them, and the requests around them get their own replies.
    """

    timeout = 60

    @inlineCallbacks
    def test_blockingClient(self) -> None:
        from jsonproto.client.blocking import Client
        from tests import onewayhandlers

        service, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--handlers", "tests.onewayhandlers")
        onewayhandlers.received.append(0)

        def device() -> list[dict[str, Any]]:
            with Client("127.0.0.1", port) as client:
                first = client.request({"type": "SUM", "a": 1, "b": 2})
                for _ in range(10_000):
                    client.notify({"type": "READING", "value": 0.5})
                return [first, client.request({"type": "SUM", "a": 3, "b": 4})]

        replies = yield deferToThread(device)
        self.assertEqual([r["result"] for r in replies], [3, 7])
        self.assertEqual(onewayhandlers.received[-1], 10_000)

    @inlineCallbacks
    def test_twistedClient(self) -> None:
        from twisted.internet import reactor

        from jsonproto.client.protocol import connect as connectClient
        from tests import onewayhandlers

        service, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--handlers", "tests.onewayhandlers")
        onewayhandlers.received.append(0)
        client = yield connectClient(reactor, f"tcp:127.0.0.1:{port}")
        self.addCleanup(client.close)
        for _ in range(1000):
            client.notify({"type": "READING", "value": 0.5})
        reply = yield client.request({"type": "SUM", "a": 1, "b": 2})
        self.assertEqual(reply["result"], 3)
        self.assertEqual(onewayhandlers.received[-1], 1000)
        from twisted.internet.error import ConnectionLost

        closed = client.nextPush()
        client.close()
        yield self.assertFailure(closed, ConnectionLost)
        self.assertRaises(ConnectionLost, client.notify, {"type": "READING", "value": 0.5})
