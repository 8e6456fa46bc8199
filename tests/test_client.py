"""
The client library: the Twisted client in memory and over real sockets,
and the blocking client against a real daemon, on both framings.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.tools import certs
from jsonproto.client import Client, JSONClientProtocol, ProtocolError, RequestTimedOut, connect
from tests.e2e import startDaemon
from tests.support import line, readLines

LOCAL = "tcp:0:interface=127.0.0.1"


class TwistedClientInMemoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.client = JSONClientProtocol(clock=self.clock, timeout=5)
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)

    def test_pipelining(self) -> None:
        """
        Requests go out at once, without waiting; replies resolve them in
        order.
        """
        first = self.client.request({"type": "SUM", "a": 1, "b": 2})
        second = self.client.request({"type": "GREETING", "name": "A"})
        self.assertEqual(readLines(self.transport.value()), [{"type": "SUM", "a": 1, "b": 2}, {"type": "GREETING", "name": "A"}])
        self.client.dataReceived(line({"status": "OK", "result": 3}) + line({"status": "OK", "reply": "Hello, A!"}))
        self.assertEqual(self.successResultOf(first)["result"], 3)
        self.assertEqual(self.successResultOf(second)["reply"], "Hello, A!")

    def test_ids(self) -> None:
        """
        A reply carrying an id goes to the request with that id.
        """
        a = self.client.request({"type": "X", "id": "a"})
        b = self.client.request({"type": "X", "id": "b"})
        self.client.dataReceived(line({"status": "OK", "id": "b"}))
        self.assertNoResult(a)
        self.assertEqual(self.successResultOf(b)["id"], "b")
        self.client.dataReceived(line({"status": "OK", "id": "a"}))
        self.assertEqual(self.successResultOf(a)["id"], "a")

    def test_push(self) -> None:
        """
        A message without a status is a push, not a reply.
        """
        pushed: list[Any] = []
        self.client.onMessage = pushed.append
        pending = self.client.request({"type": "SUB"})
        self.client.dataReceived(line({"event": "tick"}) + line({"status": "OK"}))
        self.assertEqual(pushed, [{"event": "tick"}])
        self.assertEqual(self.successResultOf(pending), {"status": "OK"})

    def test_timeout(self) -> None:
        """
        A request without a reply in time fails with RequestTimedOut; its
        late reply is recognised and does not go to the next request.
        """
        late = self.client.request({"type": "SLOW"})
        self.clock.advance(5)
        self.failureResultOf(late, RequestTimedOut)
        nextOne = self.client.request({"type": "SUM"}, timeout=60)
        self.client.dataReceived(line({"status": "OK", "slow": True}) + line({"status": "OK", "result": 0}))
        self.assertEqual(self.successResultOf(nextOne), {"status": "OK", "result": 0})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connectionLost(self) -> None:
        """
        Every request still waiting fails when the connection is lost, and
        so does any made after.
        """
        pending = [self.client.request({"type": "X"}) for _ in range(3)]
        self.client.connectionLost(Failure(ConnectionLost("gone")))
        for d in pending:
            self.failureResultOf(d, ConnectionLost)
        self.failureResultOf(self.client.request({"type": "X"}), ConnectionLost)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_garbage(self) -> None:
        """
        A server that sends something not JSON is cut off, and the waiting
        requests fail with ProtocolError.
        """
        pending = self.client.request({"type": "X"})
        self.client.dataReceived(b"<html>\n")
        self.assertTrue(self.transport.disconnecting)
        self.client.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(pending, ProtocolError)

    def test_badRequest(self) -> None:
        """
        A request must be an object with a string type and a valid id.
        """
        for message in [[], {"a": 1}, {"type": 1}, {"type": "X", "id": True}]:
            self.assertRaises(ValueError, self.client.request, message)


class ClientTests(TestCase):
    """
    Both clients against a real daemon.
    """

    @inlineCallbacks
    def test_twistedPipelining(self) -> None:
        """
        The Twisted client pipelines 100 requests on one connection.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL)
        client = yield connect(reactor, f"tcp:127.0.0.1:{port}")
        replies = yield gatherResults([client.request({"type": "SUM", "a": i, "b": i}) for i in range(100)])
        self.assertEqual([r["result"] for r in replies], [2 * i for i in range(100)])
        client.close()

    @inlineCallbacks
    def test_twistedInt32(self) -> None:
        """
        The Twisted client speaks the length-prefixed framing.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL, "--framing", "int32")
        client = yield connect(reactor, f"tcp:127.0.0.1:{port}", framing="int32")
        reply = yield client.request({"type": "GREETING", "name": "int32", "id": 4})
        self.assertEqual(reply, {"status": "OK", "reply": "Hello, int32!", "id": 4})
        client.close()

    @inlineCallbacks
    def test_blockingBothFramings(self) -> None:
        """
        The blocking client, line and int32, single and pipelined.
        """
        _, [linePort] = yield startDaemon(self, "--port", LOCAL)
        _, [int32Port] = yield startDaemon(self, "--port", LOCAL, "--framing", "int32")

        def run() -> list[Any]:
            results = []
            for framing, port in [("line", linePort), ("int32", int32Port)]:
                with Client("127.0.0.1", port, framing=framing) as c:
                    results.append(c.request({"type": "SUM", "a": 10, "b": 20}))
                    results.append([r["result"] for r in c.pipeline([{"type": "SUM", "a": i, "b": 0} for i in range(50)])])
            return results

        results = yield deferToThread(run)
        self.assertEqual(results, [{"status": "OK", "result": 30}, list(range(50))] * 2)

    @inlineCallbacks
    def test_blockingHugePipeline(self) -> None:
        """
        A pipeline larger than the socket buffers on both sides completes:
        the client reads replies while it still has requests to send, so a
        server that stops reading until its replies are taken does not
        leave both waiting.  Over TLS too.
        """
        key = os.path.abspath(self.mktemp())
        certs.writeCertificate(key, ["localhost", "127.0.0.1"])
        _, [plainPort, tlsPort] = yield startDaemon(
            self, "--port", LOCAL, "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}"
        )
        count = 200_000
        requests = [{"type": "SUM", "a": i, "b": 1, "id": i} for i in range(count)]

        def run(port: int, tls: bool) -> list[Any]:
            with Client("localhost", port, tls=tls, ca=key if tls else None, timeout=30) as c:
                replies = c.pipeline(requests)
                # The connection is still usable, and back to blocking reads.
                return [len(replies), replies[0], replies[-1], c.request({"type": "SUM", "a": 1, "b": 1})]

        for port, tls in [(plainPort, False), (tlsPort, True)]:
            result = yield deferToThread(run, port, tls)
            self.assertEqual(
                result,
                [
                    count,
                    {"status": "OK", "result": 1, "id": 0},
                    {"status": "OK", "result": count, "id": count - 1},
                    {"status": "OK", "result": 2},
                ],
            )

    @inlineCallbacks
    def test_blockingTLSVerifiesByDefault(self) -> None:
        """
        tls=True verifies the certificate against the system's roots unless
        given a CA: a self-signed server is refused.
        """
        import ssl

        key = os.path.abspath(self.mktemp())
        certs.writeCertificate(key, ["localhost", "127.0.0.1"])
        _, [port] = yield startDaemon(self, "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}")
        yield self.assertFailure(deferToThread(lambda: Client("localhost", port, tls=True)), ssl.SSLCertVerificationError)

        def trusted() -> Any:
            with Client("localhost", port, tls=True, ca=key) as c:
                return c.request({"type": "SUM", "a": 1, "b": 1})

        self.assertEqual((yield deferToThread(trusted))["result"], 2)
