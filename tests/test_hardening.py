"""
What a broken or hostile peer cannot do to the server: make it buffer
without bound, hold requests forever, flood it with errors, trickle bytes,
or open too many connections; and what a client sees when the server stops.
All in memory, with time driven by a Clock, on both framings.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.server.addresses import Networks
from jsonproto.server.registry import ConnectionRegistry
from jsonproto.server.echo import EchoFactory
from jsonproto.limits import Limits
from jsonproto.core.pipeline import BATCH_BYTES
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.drain import DRAIN_TURN
from jsonproto.daemon.service import JSONProtoService
from jsonproto.dispatch.threads import WorkerPool
from tests.support import (
    LogCatcher,
    connect,
    connectBuffering,
    int32,
    line,
    noPendingCalls,
    readInt32,
    readLines,
)


class _Hardening:
    """
    Limits both framings keep; subclasses say how to frame.
    """

    framing: str
    frame: Callable[[Any], bytes]
    read: Callable[[bytes], list[Any]]
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any
    assertLess: Any
    assertLessEqual: Any
    assertIn: Any
    assertNoResult: Any
    successResultOf: Any

    def setUp(self) -> None:
        self.clock = Clock()
        self.dispatcher = defaultDispatcher()
        self.slow: list[Deferred[dict[str, Any]]] = []
        self.dispatcher.register("SLOW", lambda m, c: self.slow.append(Deferred()) or self.slow[-1])

    def factory(self, **limits: Any) -> JSONServerFactory:
        return JSONServerFactory(self.dispatcher, framing=self.framing, limits=Limits(**limits), clock=self.clock)

    def sums(self, count: int, start: int = 0) -> bytes:
        return b"".join(self.frame({"type": "SUM", "a": i, "b": 0, "id": i}) for i in range(start, start + count))

    def registered(self, **limits: Any) -> tuple[ConnectionRegistry, JSONServerFactory]:
        """
        A factory with these limits, and the registry of its connections,
        which the service drains as it stops.
        """
        connections = ConnectionRegistry()
        factory = JSONServerFactory(
            self.dispatcher, framing=self.framing, connections=connections, clock=self.clock, limits=Limits(**limits)
        )
        return connections, factory

    def closesAfterAQuietTurn(self, transport: Any) -> None:
        """
        A draining connection that has just read something stays open for
        one more turn, and closes when a turn passes with nothing read.
        """
        self.clock.advance(DRAIN_TURN)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(DRAIN_TURN)
        self.assertTrue(transport.disconnecting)

    def peerReadsAll(self, transport: Any, most: int) -> list[Any]:
        """
        The peer reads until nothing more comes (at most C{most} times): the
        replies it got.
        """
        replies: list[Any] = []
        for _ in range(most):
            data = transport.peerReads()
            if not data:
                break
            replies.extend(self.read(data))
        return replies

    def assertAnsweredInOrder(self, replies: list[Any], count: int) -> None:
        """
        The C{count} requests of L{sums} have their replies, in order, none
        twice.  On failure it shows the first replies that differ: a diff of
        thousands of replies would take minutes.
        """
        expected = [{"status": "OK", "result": i, "id": i} for i in range(count)]
        wrong = [(i, got) for i, (got, want) in enumerate(zip(replies, expected)) if got != want]
        self.assertEqual((len(replies), wrong[:3]), (count, []))

    # Backpressure

    def test_registeredAsProducer(self) -> None:
        """
        The protocol is a streaming producer for its transport, so a full
        write buffer can pause it.
        """
        proto, transport = connect(self.factory())
        self.assertTrue(transport.producer is proto and transport.streaming)

    def test_pausesMidRead(self) -> None:
        """
        When the peer stops reading, the server stops handling requests,
        even in the middle of one read, and stops reading; what it holds
        for the peer stays near the transport's buffer size.  As the peer
        reads, every request gets its reply, in order, none twice.
        """
        proto, transport = connectBuffering(self.factory())
        count = 20_000
        proto.dataReceived(self.sums(count))
        self.assertEqual(transport.producerState, "paused")
        self.assertLess(proto.info.messagesIn, count)
        bound = transport.bufferSize + BATCH_BYTES + 100
        self.assertLessEqual(transport.peak, bound)
        replies = self.peerReadsAll(transport, count)
        self.assertAnsweredInOrder(replies, count)
        self.assertEqual(transport.producerState, "producing")
        self.assertLessEqual(transport.peak, bound)
        self.assertTrue(proto.info.pauses > 0)

    def test_sendTimeout(self) -> None:
        """
        A peer that takes none of its replies for the send timeout is
        aborted; one that reads in time is not.
        """
        proto, transport = connectBuffering(self.factory(sendTimeout=60))
        proto.dataReceived(self.sums(20_000))
        self.clock.advance(59)
        transport.peerReads()
        self.clock.advance(59)
        self.assertFalse(transport.aborted)
        while transport.producerState != "paused":
            proto.dataReceived(self.sums(5_000))
        logged = LogCatcher(self)
        self.clock.advance(60)
        self.assertTrue(transport.aborted)
        self.assertIn("took none of its replies for 60 seconds", logged.matching("aborting")[0]["reason"])
        noPendingCalls(self, self.clock)

    # Requests in flight

    def test_maxPending(self) -> None:
        """
        At most max-pending requests are in flight per connection: past it,
        the server stops reading and handling until one completes, and the
        replies keep their order.
        """
        proto, transport = connect(self.factory(maxPending=3, requestTimeout=0))
        proto.dataReceived(b"".join(self.frame({"type": "SLOW", "id": i}) for i in range(6)) + self.sums(1, 6))
        self.assertEqual((len(self.slow), transport.producerState), (3, "paused"))
        self.slow[1].callback({})
        self.assertEqual((len(self.slow), transport.producerState), (3, "paused"))
        self.slow[0].callback({})
        self.assertEqual((len(self.slow), transport.producerState), (5, "paused"))
        self.slow[2].callback({})
        self.assertEqual((len(self.slow), transport.producerState), (6, "paused"))
        for d in self.slow[3:]:
            d.callback({})
        self.assertEqual([r["id"] for r in self.read(transport.value())], [0, 1, 2, 3, 4, 5, 6])
        self.assertEqual(transport.producerState, "producing")

    def test_halfCloseBehindMaxPending(self) -> None:
        """
        A peer that sends more than max-pending requests and shuts down its
        sending side gets every reply, and then the connection closes: the
        close waits for the requests the limit held back, and happens once
        they are answered.
        """
        proto, transport = connect(self.factory(maxPending=1, requestTimeout=0, idleTimeout=0))
        proto.dataReceived(self.frame({"type": "SLOW", "id": "s"}) + self.sums(2, 1))
        proto.readConnectionLost()
        self.assertFalse(proto.closing)
        self.slow[0].callback({})
        self.assertEqual([r["id"] for r in self.read(transport.value())], ["s", 1, 2])
        self.assertTrue(proto.closing)

    def test_requestTimeout(self) -> None:
        """
        A handler slower than the request timeout is cancelled and its
        request answered "Request timed out", in order; the requests after
        it are answered and the connection goes on.
        """
        proto, transport = connect(self.factory(requestTimeout=30, idleTimeout=0))
        proto.dataReceived(self.frame({"type": "SLOW", "id": "s"}) + self.sums(1, 7))
        self.clock.advance(29)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(1)
        self.assertEqual(
            self.read(transport.value()),
            [{"status": "ERROR", "message": "Request timed out", "code": "request_timed_out", "id": "s"}, {"status": "OK", "result": 7, "id": 7}],
        )
        self.assertTrue(self.slow[0].called)
        self.assertFalse(transport.disconnecting)
        noPendingCalls(self, self.clock)

    def test_requestTimeoutCoroutine(self) -> None:
        """
        A coroutine handler is cancelled at the await it is stuck in.
        """
        cancelled = []

        @self.dispatcher.handler("STUCK")
        async def stuck(message: Any, context: Any) -> dict[str, Any]:
            try:
                await Deferred()
            except CancelledError:
                cancelled.append(True)
                raise
            return {}

        proto, transport = connect(self.factory(requestTimeout=5))
        proto.dataReceived(self.frame({"type": "STUCK"}))
        self.clock.advance(5)
        self.assertEqual(self.read(transport.value())[0]["code"], "request_timed_out")
        self.assertEqual(cancelled, [True])

    # Error budget

    def test_errorBudget(self) -> None:
        """
        Bad messages adding up to more than max-errors: the client is told
        why, then the connection closes.  Good messages between them do not
        refill the budget; only time does.
        """
        proto, transport = connect(self.factory(maxErrors=3, errorDecay=1))
        bad = self.frame({"type": "NOPE"})
        proto.dataReceived(bad * 2 + self.sums(1) + bad)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(self.sums(1) + bad + self.sums(1))
        replies = self.read(transport.value())
        self.assertEqual(
            replies[-2:],
            [
                {"status": "ERROR", "message": "Unknown type", "code": "unknown_type"},
                {
                    "status": "ERROR",
                    "message": "Too many errors",
                    "code": "too_many_errors",
                    "detail": "more than 3 bad messages, with 1 forgiven a second",
                },
            ],
        )
        self.assertEqual(len(replies), 7)
        self.assertTrue(transport.disconnecting)

    def test_errorBudgetDecays(self) -> None:
        """
        A client whose mistakes are spread out in time is forgiven them: at
        one bad message a second, with one forgiven a second, it never runs
        out.
        """
        proto, transport = connect(self.factory(maxErrors=3, errorDecay=1, idleTimeout=0))
        bad = self.frame({"type": "NOPE"})
        for _ in range(100):
            proto.dataReceived(bad)
            self.clock.advance(1)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.read(transport.value())), 100)

    def test_errorBudgetInterleaved(self) -> None:
        """
        A client that is mostly wrong is closed however it interleaves good
        messages among its bad ones: one good one in every 50 does not keep
        it alive.
        """
        proto, transport = connect(self.factory(maxErrors=100, idleTimeout=0))
        bad = self.frame({"type": "NOPE"})
        for _ in range(20):
            proto.dataReceived(bad * 49 + self.sums(1))
            self.clock.advance(0.01)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.read(transport.value())[-1]["code"], "too_many_errors")

    def test_serverErrorsNotCounted(self) -> None:
        """
        The server's own failures are not the client's bad messages.
        """
        self.dispatcher.register("CRASH", lambda m, c: 1 / 0)
        proto, transport = connect(self.factory(maxErrors=1))
        proto.dataReceived(self.frame({"type": "CRASH"}) * 5)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 5)  # type: ignore[attr-defined]

    # Slow senders

    def test_slowloris(self) -> None:
        """
        A message that takes longer than the message timeout to arrive
        closes the connection, however steadily its bytes trickle in.
        """
        proto, transport = connect(self.factory(messageTimeout=30, idleTimeout=0))
        message = self.frame({"type": "GREETING", "name": "x" * 50})
        for i in range(6):
            self.clock.advance(5 if i else 0)
            proto.dataReceived(message[i : i + 1])
        self.assertFalse(transport.disconnecting)
        self.clock.advance(5)
        self.assertTrue(transport.disconnecting)
        transport.finishClose()
        noPendingCalls(self, self.clock)

    def test_messagesInTimeAreFine(self) -> None:
        """
        Messages split across reads but each completed in time never trip
        the message timeout, however long the connection lives.
        """
        proto, transport = connect(self.factory(messageTimeout=30, idleTimeout=0))
        stream = self.sums(200)
        for i in range(0, len(stream), 7):
            proto.dataReceived(stream[i : i + 7])
            self.clock.advance(1)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.read(transport.value())), 200)

    def test_pausedIsNotSlow(self) -> None:
        """
        Complete messages waiting while reading is paused are not a slow
        sender: once handled, the connection is not closed for them.
        """
        proto, transport = connect(self.factory(messageTimeout=30, maxPending=1, requestTimeout=0, idleTimeout=0))
        proto.dataReceived(self.frame({"type": "SLOW"}) + self.sums(3) + self.frame({"type": "SUM"})[:3])
        self.clock.advance(20)
        self.slow[0].callback({})
        proto.dataReceived(self.frame({"type": "SUM", "a": 1, "b": 1})[3:])
        self.clock.advance(100)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.read(transport.value())), 5)

    # Shutting down

    def drainOwingSlowReply(self, replyInFirstTurn: bool) -> None:
        """
        Drain a connection that owes a slow reply, computed within the
        drain's first turn or only once its turns have run out, and check
        what the client gets and how the close is counted.
        """
        connections, factory = self.registered()
        proto, transport = connect(factory)
        proto.dataReceived(self.frame({"type": "SLOW", "id": 1}))
        drained = connections.closeAll("the server is shutting down")
        if replyInFirstTurn:
            self.slow[0].callback({})
        proto.dataReceived(self.sums(1, 2))  # already waiting in the socket
        self.clock.advance(DRAIN_TURN)
        proto.dataReceived(self.sums(1, 3))  # sent after the drain began
        self.clock.advance(DRAIN_TURN)
        self.clock.advance(DRAIN_TURN)
        if not replyInFirstTurn:
            self.assertFalse(transport.disconnecting)
            self.slow[0].callback({})
        self.assertEqual(
            self.read(transport.value()),
            [
                {"status": "OK", "id": 1},
                {"status": "OK", "result": 2, "id": 2},
                {"status": "ERROR", "message": "Shutting down", "code": "shutting_down", "id": 3},
            ],
        )
        self.assertTrue(transport.disconnecting)
        self.assertEqual(connections.closedBy, {"shutdown": 1})
        transport.finishClose()
        self.successResultOf(drained)
        noPendingCalls(self, self.clock)

    def test_drain(self) -> None:
        """
        As the server stops: requests read in the first turn are answered
        normally; later ones get "Shutting down" (with their id); the
        connection closes once the slow reply it owes is written.
        """
        self.drainOwingSlowReply(replyInFirstTurn=False)

    def test_drainOutlastsOwedWork(self) -> None:
        """
        A connection whose owed work is done before the drain's first turn
        ends stays open for the rest of that turn: a request still waiting
        in the socket is answered, not thrown away unanswered, and one sent
        later gets "Shutting down".  The close counts as C{shutdown} in
        C{jsonproto_server_closes_total}, not as C{server}.
        """
        self.drainOwingSlowReply(replyInFirstTurn=True)

    def test_drainAnswersWhatWasReadWhilePaused(self) -> None:
        """
        Requests read before the drain's first turn ended are answered
        normally even if the connection could not answer them by then (its
        client was not reading its replies): "read" is when they arrived,
        not when their turn came.  Only what is read after that gets
        "Shutting down".
        """
        connections, factory = self.registered()
        proto, transport = connect(factory)
        proto.pauseProducing()  # the client's receive window is full
        proto.dataReceived(self.sums(3))
        connections.closeAll("the server is shutting down")
        for _ in range(3):
            self.clock.advance(DRAIN_TURN)
        proto.resumeProducing()  # the client reads again
        proto.dataReceived(self.sums(1, 3))
        self.assertEqual(
            self.read(transport.value()),
            [{"status": "OK", "result": i, "id": i} for i in range(3)]
            + [{"status": "ERROR", "message": "Shutting down", "code": "shutting_down", "id": 3}],
        )

    def test_drainTurnPartlyPaused(self) -> None:
        """
        A turn during part of which the connection could not read does not
        end the drain, though nothing was read in it: the reactor may not
        yet have read what waits in the socket.  A whole turn of reading
        with nothing read does.
        """
        connections, factory = self.registered()
        proto, transport = connect(factory)
        proto.pauseProducing()
        connections.closeAll("the server is shutting down")
        self.clock.advance(DRAIN_TURN / 2)
        proto.resumeProducing()
        self.clock.advance(DRAIN_TURN / 2)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(DRAIN_TURN)
        self.assertTrue(transport.disconnecting)

    def test_drainAnswersWhatWasReadMidRead(self) -> None:
        """
        A read the connection stopped answering part-way through, because
        its client stopped taking replies, is answered in full once the
        client reads again, though the drain's first turn ended in between;
        while it waits, the drain sets no timer to look at it again (for
        thousands of stalled clients, turns rearmed every 10 ms would take a
        core).  What is read after gets "Shutting down"; then the close.
        """
        connections, factory = self.registered()
        proto, transport = connectBuffering(factory)
        count = 20_000
        proto.dataReceived(self.sums(count))
        self.assertEqual(transport.producerState, "paused")
        drained = connections.closeAll("the server is shutting down")
        for _ in range(5):
            self.clock.advance(DRAIN_TURN)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds() + DRAIN_TURN], [])
        replies = self.peerReadsAll(transport, count)
        self.assertAnsweredInOrder(replies, count)
        proto.dataReceived(self.sums(1, count))
        self.closesAfterAQuietTurn(transport)
        self.assertEqual(
            self.read(transport.peerReads()),
            [{"status": "ERROR", "message": "Shutting down", "code": "shutting_down", "id": count}],
        )
        self.assertEqual(connections.closedBy, {"shutdown": 1})
        transport.finishClose()
        self.successResultOf(drained)
        noPendingCalls(self, self.clock)

    def test_drainAnswersWhatWasHeldBehindSlowReplies(self) -> None:
        """
        A request held behind as many slow ones as C{maxPending} allows is
        answered normally, though the first turn ended while it waited and
        the connection takes up, then puts down, its reading in between.
        """
        connections, factory = self.registered(maxPending=1)
        proto, transport = connect(factory)
        proto.dataReceived(self.frame({"type": "SLOW", "id": "a"}) + self.frame({"type": "SLOW", "id": "b"}) + self.sums(1))
        connections.closeAll("the server is shutting down")
        for _ in range(3):
            self.clock.advance(DRAIN_TURN)
        self.slow[0].callback({})
        self.slow[1].callback({})
        self.assertEqual(
            self.read(transport.value()),
            [{"status": "OK", "id": "a"}, {"status": "OK", "id": "b"}, {"status": "OK", "result": 0, "id": 0}],
        )

    def test_drainReadsPastAPause(self) -> None:
        """
        A connection that cannot read (its client is not taking its
        replies) is not closed for having read nothing: requests still
        waiting in the socket would be thrown away unanswered.  Once it
        reads again, it closes after a turn in which it reads nothing, and
        everything it read has its reply.
        """
        connections, factory = self.registered()
        proto, transport = connect(factory)
        proto.pauseProducing()
        proto.dataReceived(self.sums(1))
        drained = connections.closeAll("the server is shutting down")
        for _ in range(5):
            self.clock.advance(DRAIN_TURN)
        self.assertFalse(transport.disconnecting)
        proto.resumeProducing()
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(self.sums(1, 1))  # was waiting in the socket
        self.closesAfterAQuietTurn(transport)
        self.assertEqual(
            self.read(transport.value()),
            [
                {"status": "OK", "result": 0, "id": 0},
                {"status": "ERROR", "message": "Shutting down", "code": "shutting_down", "id": 1},
            ],
        )
        self.assertEqual(connections.closedBy, {"shutdown": 1})
        transport.finishClose()
        self.successResultOf(drained)
        noPendingCalls(self, self.clock)

    def test_shutdownTimeout(self) -> None:
        """
        Connections still open when the shutdown timeout passes are
        aborted, and the service's stop completes.
        """
        connections, factory = self.registered(requestTimeout=0)
        service = JSONProtoService(connections, shutdownTimeout=10, clock=self.clock)
        service.startService()
        proto, transport = connect(factory)
        proto.dataReceived(self.frame({"type": "SLOW"}))
        stopped = service.stopService()
        self.clock.advance(9.9)
        self.assertNoResult(stopped)
        self.clock.advance(0.1)
        self.assertTrue(transport.aborted)
        self.successResultOf(stopped)


class LineHardeningTests(_Hardening, SynchronousTestCase):
    framing = "line"
    frame = staticmethod(line)
    read = staticmethod(readLines)

    def test_endlessLine(self) -> None:
        """
        A line that never ends is discarded as it arrives and, not being
        finished within the message timeout, closes the connection.
        """
        proto, transport = connect(self.factory(messageTimeout=30, maxMessageSize=100, idleTimeout=0))
        for _ in range(29):
            proto.dataReceived(b"z" * 10_000)
            self.clock.advance(1)
        self.assertLessEqual(proto.pipeline.bufferedBytes, 100)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)


class Int32HardeningTests(_Hardening, SynchronousTestCase):
    framing = "int32"
    frame = staticmethod(int32)
    read = staticmethod(readInt32)


class PerAddressLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.connections = ConnectionRegistry(maxConnections=0, maxConnectionsPerHost=2)
        self.factory = JSONServerFactory(connections=self.connections, clock=self.clock)

    def test_perAddress(self) -> None:
        """
        Past the per-address limit, a client is told so and closed; other
        addresses are unaffected; a closed connection frees its place.
        """
        _, first = connect(self.factory, host="10.0.0.1")
        connect(self.factory, host="10.0.0.1")
        _, third = connect(self.factory, host="10.0.0.1")
        self.assertEqual(
            readLines(third.value()),
            [{"status": "ERROR", "message": "Too many connections from your address", "code": "too_many_connections"}],
        )
        self.assertTrue(third.disconnecting)
        _, other = connect(self.factory, host="10.0.0.2")
        self.assertFalse(other.disconnecting)
        self.assertEqual((self.connections.countFrom("10.0.0.1"), self.connections.refused), (2, 1))
        first.finishClose()
        _, again = connect(self.factory, host="10.0.0.1")
        self.assertFalse(again.disconnecting)

    def test_exemptAddresses(self) -> None:
        """
        An address in the registry's C{exempt} networks is not counted
        against the per-address limit; the others still are.
        """
        self.connections.exempt = Networks(["127.0.0.0/8", "::1"])
        for host in ("127.0.0.1",) * 3 + ("::1",) * 3:
            _, transport = connect(self.factory, host=host)
            self.assertFalse(transport.disconnecting)
        self.assertEqual(self.connections.countFrom("127.0.0.1"), 0)
        connect(self.factory, host="10.0.0.1")
        connect(self.factory, host="10.0.0.1")
        _, third = connect(self.factory, host="10.0.0.1")
        self.assertTrue(third.disconnecting)

    def test_unixSocketsUncounted(self) -> None:
        """
        Unix-socket clients have no address to count.
        """
        from twisted.internet.testing import StringTransport

        for _ in range(5):
            proto = self.factory.buildProtocol(None)
            transport = StringTransport(peerAddress=UNIXAddress(b"/run/x.sock"))
            proto.makeConnection(transport)
            self.assertFalse(transport.disconnecting)


class EchoBackpressureTests(SynchronousTestCase):
    def test_echoStopsReading(self) -> None:
        """
        The echo transport is its own producer: it stops reading while its
        write buffer is full, so a peer that does not read cannot grow it.
        """
        proto, transport = connect(EchoFactory(clock=Clock()))
        self.assertTrue(transport.producer is transport and transport.streaming)


class WorkerPoolTests(TestCase):
    """
    Handlers in threads, on the real reactor.
    """

    def setUp(self) -> None:
        self.workers = WorkerPool(maxThreads=1, maxQueued=1)
        self.addCleanup(self.workers.stop)
        self.release = threading.Event()
        self.addCleanup(self.release.set)
        self.dispatcher = defaultDispatcher()

        @self.dispatcher.handler("BLOCK")
        @self.workers.handler
        def block(message: Any, context: Any) -> dict[str, Any]:
            self.release.wait(30)
            return {"thread": threading.current_thread().name}

    @inlineCallbacks
    def test_inThreadInOrder(self) -> None:
        """
        A threaded handler runs off the reactor thread; the replies after
        it wait for it, in order.
        """
        factory = JSONServerFactory(self.dispatcher, clock=reactor)
        proto, transport = connect(factory)
        running: list[Deferred[Any]] = []
        run = self.workers.run
        self.patch(self.workers, "run", lambda *a: running.append(run(*a)) or running[-1])
        proto.dataReceived(line({"type": "BLOCK", "id": 1}) + line({"type": "SUM", "a": 1, "b": 1, "id": 2}))
        self.assertEqual(transport.value(), b"")
        self.release.set()
        # Fires once the thread's result reaches the reactor thread, after
        # the protocol's own callbacks have written the replies.
        yield running[0]
        replies = readLines(transport.value())
        self.assertEqual([r["id"] for r in replies], [1, 2])
        self.assertNotEqual(replies[0]["thread"], threading.current_thread().name)
        transport.finishClose()

    def test_queueFull(self) -> None:
        """
        With every thread busy and the queue full, the next request is
        refused with "Server busy" at once.
        """
        factory = JSONServerFactory(self.dispatcher, clock=reactor)
        proto, transport = connect(factory)
        for i in range(3):
            proto.dataReceived(line({"type": "BLOCK", "id": i}))
        self.assertEqual(self.workers.inFlight, 2)
        other, otherTransport = connect(factory)
        other.dataReceived(line({"type": "BLOCK", "id": "x"}))
        self.assertEqual(
            readLines(otherTransport.value()),
            [{"status": "ERROR", "message": "Server busy", "code": "server_busy", "detail": "every worker thread is busy and the queue is full", "id": "x"}],
        )
        transport.finishClose()
        otherTransport.finishClose()
