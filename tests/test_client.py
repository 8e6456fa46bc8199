"""
The client library: the Twisted client in memory, over iosim against the
real server and over real sockets; the blocking client against an
in-process server (its slow handlers on a L{Clock}) and a real daemon.
"""

from __future__ import annotations

import os
import selectors
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, gatherResults, inlineCallbacks
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto import ConnectionInfo, JSONServerFactory, Limits, defaultDispatcher
from jsonproto.client import Client, JSONClientProtocol, ProtocolError, ReplyTooLong, RequestTimedOut, connect
from jsonproto.tools import certs
from tests.clienthandlers import addTypes
from tests.e2e import startDaemon
from tests.support import connect as connectServer
from tests.support import line, readLines

LOCAL = "tcp:0:interface=127.0.0.1"


class TwistedClientInMemoryTests(SynchronousTestCase):
    """
    The Twisted client on a StringTransport: it never hands a reply to the
    wrong request, and tells pushes from replies by C{status} alone.
    """

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

    def test_timeoutWithIds(self) -> None:
        """
        A timed-out request with an id keeps its place: its late reply is
        dropped, and the next request (with its own id) gets its own.
        """
        slow = self.client.request({"type": "LATER", "id": "slow"})
        self.clock.advance(5)
        self.failureResultOf(slow, RequestTimedOut)
        nextOne = self.client.request({"type": "SUM", "id": 7})
        self.client.dataReceived(line({"status": "OK", "slept": 2, "id": "slow"}))
        self.assertNoResult(nextOne)
        self.client.dataReceived(line({"status": "OK", "result": 0, "id": 7}))
        self.assertEqual(self.successResultOf(nextOne), {"status": "OK", "result": 0, "id": 7})

    def test_cancelGivesUp(self) -> None:
        """
        Cancelling a request gives up on it as a timeout does: its reply is
        dropped, and its timer does not linger.
        """
        cancelled = self.client.request({"type": "LATER"})
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        nextOne = self.client.request({"type": "SUM"})
        self.client.dataReceived(line({"status": "OK", "slept": 2}) + line({"status": "OK", "result": 0}))
        self.assertEqual(self.successResultOf(nextOne), {"status": "OK", "result": 0})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unknownId(self) -> None:
        """
        A reply whose id no waiting request has is not guessed at: the
        connection ends with ProtocolError.
        """
        pending = self.client.request({"type": "SUM", "id": 1})
        self.client.dataReceived(line({"status": "OK", "id": 2}))
        self.assertTrue(self.transport.disconnecting)
        self.client.connectionLost(Failure(ConnectionLost()))
        self.assertIn("id 2", str(self.failureResultOf(pending, ProtocolError).value))

    def test_replyToNothing(self) -> None:
        """
        A reply when no request waits (a server refusing the connection)
        ends the connection, and later requests fail saying why.
        """
        self.client.dataReceived(line({"status": "ERROR", "message": "Server busy", "code": "server_busy"}))
        self.assertTrue(self.transport.disconnecting)
        self.client.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(self.client.request({"type": "SUM"}), ConnectionLost)
        self.assertIn("Server busy", str(failure.value))

    def test_pushQueue(self) -> None:
        """
        Pushes, status-less, wait in a queue for nextPush, in order, while
        replies go to their requests; nextPush waits when none is queued.
        """
        pending = self.client.request({"type": "PUSH"})
        self.client.dataReceived(line({"type": "STATE", "n": 0}) + line({"status": "OK"}) + line({"type": "STATE", "n": 1}))
        self.assertEqual(self.successResultOf(pending), {"status": "OK"})
        self.assertEqual(self.successResultOf(self.client.nextPush()), {"type": "STATE", "n": 0})
        self.assertEqual(self.successResultOf(self.client.nextPush()), {"type": "STATE", "n": 1})
        waiting = self.client.nextPush()
        self.assertNoResult(waiting)
        self.client.dataReceived(line([1, 2]))
        self.assertEqual(self.successResultOf(waiting), [1, 2])

    def test_nextPushCancelAndClose(self) -> None:
        """
        A cancelled nextPush gives its place to the next; when the
        connection ends, waiting ones fail with ConnectionLost, and so do
        later ones.
        """
        cancelled = self.client.nextPush()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        waiting = self.client.nextPush()
        self.client.dataReceived(line({"n": 1}))
        self.assertEqual(self.successResultOf(waiting), {"n": 1})
        waiting = self.client.nextPush()
        self.client.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(waiting, ConnectionLost)
        self.failureResultOf(self.client.nextPush(), ConnectionLost)

    def test_onMessage(self) -> None:
        """
        With onMessage set, pushes go to it as they arrive, not the queue.
        """
        pushed: list[Any] = []
        self.client.onMessage = pushed.append
        self.client.dataReceived(line({"n": 1}))
        self.assertEqual(pushed, [{"n": 1}])
        self.assertNoResult(self.client.nextPush())


def _serverFactory(clock: Clock, framing: str = "line", **limits: Any) -> JSONServerFactory:
    dispatcher = defaultDispatcher()
    addTypes(dispatcher, clock)
    return JSONServerFactory(dispatcher, framing=framing, limits=Limits(**limits), clock=clock)


class ServerWire:
    """
    A client protocol and the real server protocol, each on a
    StringTransport, with what one writes handed to the other on
    L{flush}, closes included.  (iosim's transport drops what a protocol
    writes after C{loseConnection}, which the server's reply batch does
    and a real transport delivers.)
    """

    def __init__(self, factory: JSONServerFactory, client: JSONClientProtocol) -> None:
        self.server, self.serverTransport = connectServer(factory)
        self.client = client
        self.clientTransport = StringTransport()
        client.makeConnection(self.clientTransport)
        self.closed = False

    def flush(self) -> None:
        while not self.closed:
            toServer, toClient = self.clientTransport.value(), self.serverTransport.value()
            self.clientTransport.clear()
            self.serverTransport.clear()
            if toServer:
                self.server.dataReceived(toServer)
            if toClient:
                self.client.dataReceived(toClient)
            if toServer or toClient:
                continue
            if self.serverTransport.disconnecting or self.clientTransport.disconnecting:
                self.closed = True
                self.serverTransport.finishClose()
                self.client.connectionLost(Failure(ConnectionDone()))
            return


class TwistedClientWithServerTests(SynchronousTestCase):
    """
    The Twisted client against the real server protocol, in memory, time
    on a Clock.
    """

    def connect(self, framing: str = "line", maxReplySize: int | None = None, **limits: Any) -> JSONClientProtocol:
        self.clock = Clock()
        sizes = {} if maxReplySize is None else {"maxReplySize": maxReplySize}
        client = JSONClientProtocol(framing=framing, clock=self.clock, **sizes)
        self.pump = ServerWire(_serverFactory(self.clock, framing, **limits), client)
        return client

    def test_lateReplyDropped(self) -> None:
        """
        A request whose handler outlasts its timeout fails with
        RequestTimedOut; the two SUMs after it get their own replies.
        """
        client = self.connect()
        slow = client.request({"type": "LATER", "seconds": 2}, timeout=1)
        self.pump.flush()
        self.clock.advance(1)
        self.failureResultOf(slow, RequestTimedOut)
        sums = [client.request({"type": "SUM", "a": n, "b": n}) for n in (1, 2)]
        self.clock.advance(1)
        self.pump.flush()
        self.assertEqual([self.successResultOf(d)["result"] for d in sums], [2, 4])

    def test_tooManyErrorsIsNotAReply(self) -> None:
        """
        The server's "Too many errors", sent after the reply to the bad
        message that exhausted the budget, answers no request: the request
        after it fails with ConnectionLost saying so.
        """
        client = self.connect(maxErrors=1)
        replies = [client.request({"type": "NOPE"}) for _ in range(2)]
        after = client.request({"type": "SUM", "a": 1, "b": 1})
        self.pump.flush()
        self.assertEqual([self.successResultOf(d)["code"] for d in replies], ["unknown_type"] * 2)
        failure = self.failureResultOf(after, ConnectionLost)
        self.assertIn("Too many errors", str(failure.value))

    def test_pushesAndReply(self) -> None:
        """
        What a handler pushes before replying reaches nextPush, the reply
        its request; a push after the reply comes with no request waiting.
        """
        client = self.connect()
        reply = client.request({"type": "PUSH", "count": 2})
        later = client.request({"type": "PUSH_LATER", "seconds": 3})
        self.pump.flush()
        self.assertEqual(self.successResultOf(reply), {"status": "OK", "pushed": 2})
        self.assertEqual(self.successResultOf(later), {"status": "OK", "scheduled": 3})
        pushes = [client.nextPush() for _ in range(3)]
        self.assertNoResult(pushes[2])
        self.clock.advance(3)
        self.pump.flush()
        self.assertEqual(
            [self.successResultOf(d) for d in pushes],
            [{"type": "STATE", "state": "playing", "n": 0}, {"type": "STATE", "state": "playing", "n": 1}, {"type": "STATE", "state": "later"}],
        )

    def test_pushWithStatusRefused(self) -> None:
        """
        A handler that pushes a message with a status gets a ValueError
        (so its client sees Internal error), and nothing is pushed.
        """
        client = self.connect()
        reply = client.request({"type": "PUSH_STATUS"})
        self.pump.flush()
        self.assertEqual(self.successResultOf(reply)["code"], "internal_error")
        self.assertNoResult(client.nextPush())
        [error] = self.flushLoggedErrors(ValueError)
        self.assertIn("status", str(error.value))

    def test_maxReplySize(self) -> None:
        """
        A reply over 1 MiB is refused by default with a clear error, on
        both framings, and taken when maxReplySize allows it.
        """
        size = 1536 * 1024
        for framing in ["line", "int32"]:
            client = self.connect(framing)
            refused = client.request({"type": "BIG", "bytes": size})
            self.pump.flush()
            error = self.failureResultOf(refused, ReplyTooLong).value
            self.assertEqual(str(error), "the server sent a message longer than 1,048,576 bytes, this client's maximum reply size")

            client = self.connect(framing, maxReplySize=2 * 1024 * 1024)
            taken = client.request({"type": "BIG", "bytes": size})
            self.pump.flush()
            self.assertEqual(len(self.successResultOf(taken)["data"]), size)


class ConnectionInfoSendTests(SynchronousTestCase):
    def test_refusesStatus(self) -> None:
        """
        context.send refuses a message with a status, saying why: clients
        would take it for a reply.
        """
        info = ConnectionInfo(id=1, peer="127.0.0.1:40000", host="127.0.0.1", connectedAt=0.0, lastActivity=0.0)
        error = self.assertRaises(ValueError, info.send, {"type": "STATE", "status": "playing"})
        self.assertIn("take every message with a status for a reply", str(error))
        info.send({"type": "STATE", "state": "playing"})


class InProcessServer:
    """
    A server in the test's reactor on 127.0.0.1, port 0, whose LATER and
    PUSH_LATER wait on C{clock}; closed when the test ends.
    """

    def __init__(self, test: TestCase, framing: str = "line", **limits: Any) -> None:
        self.clock = Clock()
        self.factory = _serverFactory(self.clock, framing, **limits)
        self.factory.clock = reactor
        listening = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.port = listening.getHost().port
        test.addCleanup(self._stop, listening)

    def _stop(self, listening: Any) -> Any:
        self.factory.connections.abortAll("the test is over")
        return self.factory.connections.whenEmpty().addCallback(lambda _: listening.stopListening())

    def advance(self, seconds: float) -> None:
        """
        From the client's thread: move the handlers' clock on.
        """
        blockingCallFromThread(reactor, self.clock.advance, seconds)


class BlockingClientTests(TestCase):
    """
    The blocking client (in a thread) against an in-process server.
    """

    def inThread(self, function: Any, *args: Any) -> Any:
        return deferToThread(function, *args)

    @inlineCallbacks
    def test_lateReplyDropped(self) -> None:
        """
        A request whose handler outlasts the timeout raises TimeoutError;
        when its reply comes late it is dropped, and the two SUMs after it
        get their own replies.
        """
        server = InProcessServer(self)

        def run() -> list[Any]:
            with Client("127.0.0.1", server.port, timeout=0.3) as c:
                self.assertRaises(TimeoutError, c.request, {"type": "LATER", "seconds": 2})
                server.advance(2)
                return [c.request({"type": "SUM", "a": n, "b": n}) for n in (1, 2)]

        self.assertEqual((yield self.inThread(run)), [{"status": "OK", "result": 2}, {"status": "OK", "result": 4}])

    @inlineCallbacks
    def test_lateReplyDroppedWithIds(self) -> None:
        """
        The same with ids, and with the requests sent before any reply
        came: send() and receive() give each reply to its own request.
        """
        server = InProcessServer(self)

        def run() -> list[Any]:
            with Client("127.0.0.1", server.port, timeout=0.3) as c:
                c.send({"type": "LATER", "seconds": 2, "id": "slow"})
                c.send({"type": "SUM", "a": 1, "b": 1, "id": 1})
                c.send({"type": "SUM", "a": 2, "b": 2})
                self.assertRaises(TimeoutError, c.receive)
                server.advance(2)
                replies = [c.receive(), c.receive()]
                self.assertRaises(RuntimeError, c.receive)
                return replies

        self.assertEqual((yield self.inThread(run)), [{"status": "OK", "result": 2, "id": 1}, {"status": "OK", "result": 4}])

    @inlineCallbacks
    def test_requestKeepsEarlierReplies(self) -> None:
        """
        request() after send() returns its own reply; the earlier one waits
        for receive().
        """
        server = InProcessServer(self)

        def run() -> list[Any]:
            with Client("127.0.0.1", server.port) as c:
                c.send({"type": "SUM", "a": 1, "b": 1})
                own = c.request({"type": "SUM", "a": 2, "b": 2})
                return [own, c.replyReady, c.receive()]

        self.assertEqual((yield self.inThread(run)), [{"status": "OK", "result": 4}, True, {"status": "OK", "result": 2}])

    @inlineCallbacks
    def test_tooManyErrorsIsNotAReply(self) -> None:
        """
        The server's "Too many errors" after the reply to the last bad
        message answers no request: the request after it raises
        ConnectionError saying so, and so does any later call.
        """
        server = InProcessServer(self, maxErrors=1)

        def run() -> list[Any]:
            with Client("127.0.0.1", server.port) as c:
                for message in [{"type": "NOPE"}, {"type": "NOPE"}, {"type": "SUM", "a": 1, "b": 1}]:
                    c.send(message)
                codes = [c.receive()["code"], c.receive()["code"]]
                errors = [self.assertRaises(ConnectionError, c.receive), self.assertRaises(ConnectionError, c.request, {"type": "SUM"})]
                return codes + [str(e) for e in errors]

        message = "the server closed the connection: Too many errors (more than 1 bad messages, with 10 forgiven a second)"
        self.assertEqual((yield self.inThread(run)), ["unknown_type", "unknown_type", message, message])

    @inlineCallbacks
    def test_receivePushWithoutRequest(self) -> None:
        """
        receivePush waits for a push with no request outstanding, and
        raises TimeoutError when none comes in time.
        """
        server = InProcessServer(self)

        def run() -> list[Any]:
            with Client("127.0.0.1", server.port) as c:
                scheduled = c.request({"type": "PUSH_LATER", "seconds": 5})
                self.assertRaises(TimeoutError, c.receivePush, timeout=0.1)
                server.advance(5)
                return [scheduled, c.receivePush(timeout=10)]

        self.assertEqual((yield self.inThread(run)), [{"status": "OK", "scheduled": 5}, {"type": "STATE", "state": "later"}])

    @inlineCallbacks
    def test_pushesIterator(self) -> None:
        """
        pushes() yields what was pushed, those read while waiting for a
        reply first, and ends when the server closes the connection.
        """
        server = InProcessServer(self)

        def run() -> list[Any]:
            with Client("127.0.0.1", server.port) as c:
                reply = c.request({"type": "PUSH", "count": 3})
                reactor.callFromThread(server.factory.connections.closeAll, "done")
                return [reply, [p["n"] for p in c.pushes()]]

        self.assertEqual((yield self.inThread(run)), [{"status": "OK", "pushed": 3}, [0, 1, 2]])

    @inlineCallbacks
    def test_onMessage(self) -> None:
        """
        With onMessage set, pushes go to it as they are read, and
        receivePush says they do.
        """
        server = InProcessServer(self)
        pushed: list[Any] = []

        def run() -> Any:
            with Client("127.0.0.1", server.port) as c:
                c.onMessage = pushed.append
                reply = c.request({"type": "PUSH", "count": 2})
                self.assertRaises(RuntimeError, c.receivePush)
                return reply

        self.assertEqual((yield self.inThread(run)), {"status": "OK", "pushed": 2})
        self.assertEqual([p["n"] for p in pushed], [0, 1])

    @inlineCallbacks
    def test_poll(self) -> None:
        """
        A program that waits on fileno() itself takes what came with
        poll(); replyReady says a reply is there to receive.
        """
        server = InProcessServer(self)

        def run() -> list[Any]:
            with Client("127.0.0.1", server.port) as c, selectors.DefaultSelector() as selector:
                c.send({"type": "PUSH", "count": 1})
                selector.register(c.fileno(), selectors.EVENT_READ)
                for _ in range(100):
                    if c.replyReady:
                        break
                    selector.select(10)
                    c.poll()
                return [c.receive(), c.receivePush()]

        self.assertEqual((yield self.inThread(run)), [{"status": "OK", "pushed": 1}, {"type": "STATE", "state": "playing", "n": 0}])

    @inlineCallbacks
    def test_maxReplySize(self) -> None:
        """
        A reply over 1 MiB is refused by default with a clear error (and
        the connection ends), on both framings; taken when maxReplySize
        allows it.
        """
        size = 1536 * 1024
        servers = {framing: InProcessServer(self, framing) for framing in ["line", "int32"]}

        def run(framing: str) -> list[Any]:
            port = servers[framing].port
            with Client("127.0.0.1", port, framing=framing) as c:
                error = self.assertRaises(ReplyTooLong, c.request, {"type": "BIG", "bytes": size})
                self.assertRaises(ReplyTooLong, c.request, {"type": "SUM", "a": 1, "b": 1})
            with Client("127.0.0.1", port, framing=framing, maxReplySize=2 * 1024 * 1024) as c:
                return [str(error), len(c.request({"type": "BIG", "bytes": size})["data"])]

        for framing in servers:
            self.assertEqual(
                (yield self.inThread(run, framing)),
                ["the server sent a message longer than 1,048,576 bytes, this client's maximum reply size", size],
            )

    @inlineCallbacks
    def test_twistedConnectMaxReplySize(self) -> None:
        """
        connect() passes maxReplySize on.
        """
        server = InProcessServer(self)
        client = yield connect(reactor, f"tcp:127.0.0.1:{server.port}", maxReplySize=2 * 1024 * 1024)
        reply = yield client.request({"type": "BIG", "bytes": 1536 * 1024})
        self.assertEqual(len(reply["data"]), 1536 * 1024)
        client.close()

    def test_badArguments(self) -> None:
        """
        A timeout that is not positive, a size that is not, and a port out
        of range are refused before connecting.
        """
        for arguments in [{"timeout": 0}, {"timeout": -1}, {"timeout": float("nan")}, {"maxReplySize": 0}, {"framing": "xml"}]:
            self.assertRaises(ValueError, Client, "127.0.0.1", 1, **arguments)
        self.assertRaises(ValueError, Client, "127.0.0.1", 106555)
        self.assertRaises(ValueError, JSONClientProtocol, maxReplySize=-1)


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
