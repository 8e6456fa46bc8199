"""
Subscribers: the backoff, what they remember to resume (in memory), and
both subscribers and the C{subscribe} and C{publish} commands over real
sockets against an in-process channels server that goes away and comes
back on the same port.
"""

from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
from typing import Any, Callable

from twisted.internet import endpoints, protocol, reactor
from twisted.internet.defer import CancelledError, Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from jsonproto.channels import messages
from jsonproto.channels.broker import Broker
from jsonproto.channels.engine import MemoryEngine
from jsonproto.client.backoff import Backoff
from jsonproto.client.common import ProtocolError, ReplyTooLong
from jsonproto.client.resume import HISTORY_GONE, NEW_EPOCH, Missed, Positions, Publication, Refused, Resync, SubscribeError, SubscriberStopped
from jsonproto.client.subscriber import Subscriber
from jsonproto.client.subscriberservice import SubscriberService
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.tools import certs, cli
from jsonproto.tools import channels as channelsCommands
from tests.e2e import REPO
from tests.support import line, readLines
from tests.test_cli import _helpOf, _options


def publication(channel: str, data: Any, offset: int, epoch: str = "e1") -> dict[str, Any]:
    return {"type": "PUBLICATION", "channel": channel, "data": data, "offset": offset, "epoch": epoch}


class BackoffTests(SynchronousTestCase):
    def test_exponentialCappedJittered(self) -> None:
        """
        Each failure in a row waits twice as long, up to the cap; jitter
        takes up to half of each wait off; a working connection starts
        over.  Without this, thousands of subscribers of a restarted
        server would hammer it in lockstep, or wait ever longer.
        """
        draws = iter([0.0] * 8 + [1.0, 0.5, 0.5])
        backoff = Backoff(initial=0.5, maximum=4, random=lambda: next(draws))
        self.assertEqual([backoff.next() for _ in range(8)], [0.5, 1, 2, 4, 4, 4, 4, 4])
        self.assertEqual([backoff.next(), backoff.next()], [2.0, 3.0])
        backoff.reset()
        self.assertEqual(backoff.next(), 0.5 * (1 - 0.5 * 0.5))

    def test_neverOverflows(self) -> None:
        """
        However many failures, the wait is the cap.
        """
        backoff = Backoff(initial=1, maximum=60, factor=10, jitter=0)
        backoff.failures = 10_000
        self.assertEqual(backoff.next(), 60)

    def test_badSettings(self) -> None:
        """
        Settings that would make no sense are refused, saying which.
        """
        for settings, word in [
            ({"initial": 0}, "initial"),
            ({"initial": 2, "maximum": 1}, "maximum"),
            ({"factor": 0.5}, "factor"),
            ({"jitter": 2}, "jitter"),
            ({"initial": float("nan")}, "initial"),
        ]:
            self.assertIn(word, str(self.assertRaises(ValueError, Backoff, **settings)))


class PositionsTests(SynchronousTestCase):
    """
    What a subscriber remembers, and hands on, without I/O.
    """

    def setUp(self) -> None:
        self.positions = Positions()
        self.positions.want("room:1")

    def test_firstSubscription(self) -> None:
        """
        A first SUBSCRIBE has no since; its reply sets where the channel
        is, and each publication after it moves on.
        """
        self.assertEqual(self.positions.request("room:1"), {"type": "SUBSCRIBE", "channel": "room:1"})
        self.assertEqual(self.positions.subscribed("room:1", {"status": "OK", "offset": 4, "epoch": "e1"}), [])
        self.assertEqual(self.positions.pushed(publication("room:1", "x", 5)), [Publication("room:1", "x", 5, "e1")])
        self.assertEqual(
            self.positions.request("room:1"), {"type": "SUBSCRIBE", "channel": "room:1", "since": {"offset": 5, "epoch": "e1"}}
        )

    def test_duplicatesDropped(self) -> None:
        """
        A publication at or before the last one handed on (a replay that
        overlaps) is dropped: none is handed on twice or out of order.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 0, "epoch": "e1"})
        got = []
        for offset in [1, 2, 2, 1, 3]:
            got += self.positions.pushed(publication("room:1", offset, offset))
        self.assertEqual([e.offset for e in got], [1, 2, 3])

    def test_recovered(self) -> None:
        """
        A recovered resume leaves the position where it was: the replayed
        publications that follow the reply are handed on.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 2, "epoch": "e1"})
        reply = {"status": "OK", "offset": 5, "epoch": "e1", "recovered": True, "replayed": 3}
        self.assertEqual(self.positions.subscribed("room:1", reply), [])
        got = [e.offset for o in (3, 4, 5) for e in self.positions.pushed(publication("room:1", o, o))]
        self.assertEqual(got, [3, 4, 5])

    def test_notRecovered(self) -> None:
        """
        A resume the server cannot give is a Resync at that point, saying
        why; publications carry on after the server's offset.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 2, "epoch": "e1"})
        tooOld = {"status": "OK", "offset": 900, "epoch": "e1", "recovered": False, "replayed": 0}
        self.assertEqual(self.positions.subscribed("room:1", tooOld), [Resync("room:1", "e1", 900, HISTORY_GONE)])
        self.assertEqual(self.positions.pushed(publication("room:1", "old", 900)), [])
        newEpoch = {"status": "OK", "offset": 1, "epoch": "e2", "recovered": False, "replayed": 0}
        self.assertEqual(self.positions.subscribed("room:1", newEpoch), [Resync("room:1", "e2", 1, NEW_EPOCH)])
        self.assertEqual(self.positions.pushed(publication("room:1", "new", 2, "e2")), [Publication("room:1", "new", 2, "e2")])

    def test_newEpochMidStream(self) -> None:
        """
        A publication of another epoch than the last (the server lost its
        history while connected) is preceded by a Resync.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 7, "epoch": "e1"})
        self.assertEqual(
            self.positions.pushed(publication("room:1", "x", 1, "e2")),
            [Resync("room:1", "e2", 0, NEW_EPOCH), Publication("room:1", "x", 1, "e2")],
        )

    def test_publicationBeforeFirstReply(self) -> None:
        """
        A publication that overtakes the reply to a first SUBSCRIBE is
        handed on, and the reply does not move the position back.
        """
        self.assertEqual(len(self.positions.pushed(publication("room:1", "x", 5))), 1)
        self.positions.subscribed("room:1", {"status": "OK", "offset": 4, "epoch": "e1"})
        self.assertEqual(self.positions.position("room:1"), ("e1", 5))

    def test_otherMessages(self) -> None:
        """
        MISSED is handed on; other pushes, channels not wanted and
        malformed publications are not.
        """
        self.assertEqual(self.positions.pushed({"type": "MISSED", "channel": "room:1", "count": 3}), [Missed("room:1", 3)])
        for message in [
            publication("room:2", "x", 1),
            {"type": "TICK"},
            [1],
            {"type": "PUBLICATION", "channel": "room:1", "offset": "1", "epoch": "e1"},
            {"type": "JOIN", "channel": "room:1"},
        ]:
            self.assertEqual(self.positions.pushed(message), [])
        self.positions.forget("room:1")
        self.assertEqual(self.positions.pushed(publication("room:1", "x", 1)), [])

    def test_replyWithoutPosition(self) -> None:
        """
        An OK reply without offset and epoch is not jsonproto's.
        """
        self.assertRaises(ProtocolError, self.positions.subscribed, "room:1", {"status": "OK"})


class ChannelServer:
    """
    A channels server in the test's reactor on 127.0.0.1, port 0, that
    can go away (stop listening, close every connection) and come back on
    the same port, with its history, or as a new process would (a new
    engine: new epochs, no history).
    """

    def __init__(self, test: TestCase, historySize: int = 100, framing: str = "line") -> None:
        self.historySize = historySize
        self.framing = framing
        self._newBroker()
        self.listening: Any = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        test.addCleanup(self._cleanUp)

    def _newBroker(self) -> None:
        self.engine = MemoryEngine(reactor, size=self.historySize)
        self.broker = Broker(self.engine, reactor)
        dispatcher = defaultDispatcher()
        messages.register(dispatcher, self.broker)
        self.factory = JSONServerFactory(dispatcher, framing=self.framing, limits=Limits(idleTimeout=0, sendTimeout=0))

    def publish(self, channel: str, data: Any) -> Deferred[Any]:
        return self.broker.publish(channel, data)

    @inlineCallbacks
    def goAway(self) -> Any:
        """
        Stop listening and close every connection.
        """
        yield self.listening.stopListening()
        self.factory.connections.abortAll("the server is going away")
        yield self.factory.connections.whenEmpty()

    def comeBack(self, fresh: bool = False, factory: Any = None) -> None:
        """
        Listen again on the same port; C{fresh}: as a new process;
        C{factory}: with that factory (it must close its connections
        itself).
        """
        if fresh:
            self.engine.stop()
            self.broker.stop()
            self._newBroker()
        self.listening = reactor.listenTCP(self.port, factory or self.factory, interface="127.0.0.1")

    @inlineCallbacks
    def _cleanUp(self) -> Any:
        if self.listening.connected:
            yield self.goAway()
        self.engine.stop()
        self.broker.stop()


@inlineCallbacks
def waitFor(condition: Callable[[], Any], what: str, seconds: float = 2) -> Any:
    """
    Turn the reactor until C{condition()} holds (at most C{seconds}).
    """
    for _ in range(int(seconds * 100)):
        if condition():
            return
        yield deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class SubscriberServiceTests(TestCase):
    """
    The Twisted subscriber over real sockets; its waits between attempts
    on a Clock.
    """

    def setUp(self) -> None:
        self.server = ChannelServer(self)
        self.clock = Clock()
        self.subscriber = SubscriberService(
            reactor, f"tcp:127.0.0.1:{self.server.port}", clock=self.clock, backoff=Backoff(random=lambda: 0.0)
        )
        self.subscriber.startService()
        self.addCleanup(self.subscriber.stopService)

    def waitingToReconnect(self) -> Any:
        return waitFor(lambda: self.clock.getDelayedCalls(), "a wait before connecting again")

    @inlineCallbacks
    def events(self, count: int) -> Any:
        got = []
        for _ in range(count):
            got.append((yield self.subscriber.nextEvent().addTimeout(5, reactor)))
        return got

    @inlineCallbacks
    def test_resumeAcrossRestart(self) -> None:
        """
        The server goes away and comes back on the same port; the
        subscriber connects again after its backoff (longer after each
        failed attempt), resumes, and gets exactly what it missed, in
        order, then what comes next.
        """
        reply = yield self.subscriber.subscribe("room:1")
        self.assertEqual((reply["status"], reply["offset"]), ("OK", 0))
        yield self.server.publish("room:1", 1)
        [first] = yield self.events(1)
        self.assertEqual(first, Publication("room:1", 1, 1, reply["epoch"]))

        yield self.server.goAway()
        yield self.waitingToReconnect()
        for n in (2, 3, 4):
            yield self.server.publish("room:1", n)
        [wait] = self.clock.getDelayedCalls()
        self.assertEqual(wait.getTime(), 0.5)
        self.clock.advance(0.5)  # refused: the server is not back yet
        yield waitFor(lambda: self.clock.getDelayedCalls() and self.clock.getDelayedCalls()[0].getTime() > 0.5, "a longer wait")
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 0.5 + 1.0)

        self.server.comeBack()
        self.clock.advance(1.0)
        missed = yield self.events(3)
        self.assertEqual([(e.data, e.offset) for e in missed], [(2, 2), (3, 3), (4, 4)])
        yield self.server.publish("room:1", 5)
        [after] = yield self.events(1)
        self.assertEqual((after.data, after.offset), (5, 5))
        self.assertEqual(self.subscriber.backoff.failures, 0)

    @inlineCallbacks
    def test_resyncWhenHistoryLost(self) -> None:
        """
        A server that comes back without the channel's history (a new
        process: a new epoch) makes a Resync, then publications carry on.
        """
        reply = yield self.subscriber.subscribe("room:1")
        yield self.server.publish("room:1", 1)
        yield self.events(1)
        yield self.server.goAway()
        yield self.waitingToReconnect()
        self.server.comeBack(fresh=True)
        yield self.server.publish("room:1", "after")
        self.clock.advance(0.5)
        [resync] = yield self.events(1)
        self.assertIsInstance(resync, Resync)
        self.assertNotEqual(resync.epoch, reply["epoch"])
        self.assertEqual((resync.offset, resync.reason), (1, NEW_EPOCH))
        yield self.server.publish("room:1", "next")
        [nextOne] = yield self.events(1)
        self.assertEqual((nextOne.data, nextOne.offset, nextOne.epoch), ("next", 2, resync.epoch))

    @inlineCallbacks
    def test_asyncIterationAndStop(self) -> None:
        """
        async for takes the events and ends when the service stops.
        """
        yield self.subscriber.subscribe("room:1")
        for n in range(3):
            yield self.server.publish("room:1", n)

        async def take() -> list[Any]:
            got = []
            async for event in self.subscriber:
                got.append(event.data)
                if len(got) == 3:
                    self.subscriber.stopService()
            return got

        self.assertEqual((yield Deferred.fromCoroutine(take())), [0, 1, 2])
        self.failureResultOf(self.subscriber.nextEvent(), SubscriberStopped)

    @inlineCallbacks
    def test_refused(self) -> None:
        """
        A subscription the server refuses fails with SubscribeError, and
        is not tried again.
        """
        failure = yield self.assertFailure(self.subscriber.subscribe("no spaces"), SubscribeError)
        self.assertEqual(failure.reply["code"], "invalid_channel")
        self.assertEqual(self.subscriber.channels, [])

    @inlineCallbacks
    def test_refusedOnRenewal(self) -> None:
        """
        A server that comes back refusing the channel (its authorization
        changed) makes a Refused event; the channel is no longer tried.
        """
        yield self.subscriber.subscribe("room:1")
        yield self.server.goAway()
        yield self.waitingToReconnect()
        self.server.comeBack(fresh=True)
        self.server.broker.authorize(lambda context, action, channel: False)
        self.clock.advance(0.5)
        [refused] = yield self.events(1)
        self.assertEqual((refused.channel, refused.reply["code"]), ("room:1", "not_allowed"))
        self.assertIsInstance(refused, Refused)
        self.assertEqual(self.subscriber.channels, [])

    @inlineCallbacks
    def test_onEvent(self) -> None:
        """
        With onEvent set, events go to it as they arrive; one that raises
        is logged and the next still comes.
        """
        got: list[Any] = []

        def onEvent(event: Any) -> None:
            got.append(event.data)
            if event.data == "bad":
                raise RuntimeError("the application's bug")

        self.subscriber.onEvent = onEvent
        yield self.subscriber.subscribe("room:1")
        for data in ["bad", "good"]:
            yield self.server.publish("room:1", data)
        yield waitFor(lambda: len(got) == 2, "two events")
        self.assertEqual(got, ["bad", "good"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @inlineCallbacks
    def test_unsubscribe(self) -> None:
        """
        After unsubscribe, no publication of the channel is handed on, and
        a new connection does not subscribe to it again.
        """
        yield self.subscriber.subscribe("room:1")
        yield self.subscriber.subscribe("room:2")
        yield self.subscriber.unsubscribe("room:1")
        self.assertEqual(self.server.broker.subscribers("room:1"), [])
        yield self.server.publish("room:1", "dropped")
        yield self.server.publish("room:2", "kept")
        [event] = yield self.events(1)
        self.assertEqual(event.channel, "room:2")
        yield self.server.goAway()
        yield self.waitingToReconnect()
        self.server.comeBack()
        self.clock.advance(0.5)
        yield waitFor(lambda: self.server.broker.subscribers("room:2"), "the subscription renewed")
        self.assertEqual(self.server.broker.subscribers("room:1"), [])

    @inlineCallbacks
    def test_backoffGrowsWhileNothingWorks(self) -> None:
        """
        A server that takes connections and closes them at once is waited
        for longer each time: the waits start over only once a connection
        has renewed the subscriptions.
        """
        yield self.subscriber.subscribe("room:1")
        yield self.server.goAway()
        self.server.comeBack(factory=ClosingFactory())
        waits = []
        for n in range(3):
            yield waitFor(lambda: self.clock.getDelayedCalls(), "a wait")
            [call] = self.clock.getDelayedCalls()
            waits.append(call.getTime() - self.clock.seconds())
            self.clock.advance(waits[-1])
        self.assertEqual(waits, [0.5, 1.0, 2.0])

    @inlineCallbacks
    def test_tooLongStops(self) -> None:
        """
        A publication longer than maxReplySize stops the subscriber (it
        would come again on every connection): what waits fails with
        ReplyTooLong, and it does not try to connect again.
        """
        subscriber = SubscriberService(reactor, f"tcp:127.0.0.1:{self.server.port}", clock=self.clock, maxReplySize=100)
        subscriber.startService()
        self.addCleanup(subscriber.stopService)
        yield subscriber.subscribe("room:1")
        waiting = subscriber.nextEvent()
        yield self.server.publish("room:1", "x" * 200)
        yield self.assertFailure(waiting, ReplyTooLong)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(subscriber.running)


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    An endpoint whose every connection is made at once, on a
    StringTransport.
    """

    def __init__(self) -> None:
        self.connections: list[tuple[Any, StringTransport]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        connection = factory.buildProtocol(None)
        transport = StringTransport()
        connection.makeConnection(transport)
        self.connections.append((connection, transport))
        return succeed(connection)


class SubscriberServiceInMemoryTests(SynchronousTestCase):
    """
    The Twisted subscriber on connections in memory: what it sends, and
    what it makes of replies and pushes that come together.
    """

    def setUp(self) -> None:
        self.endpoint = MemoryEndpoint()
        self.clock = Clock()
        self.subscriber = SubscriberService(reactor, self.endpoint, clock=self.clock, backoff=Backoff(random=lambda: 0.0))

    def sent(self) -> list[Any]:
        _, transport = self.endpoint.connections[-1]
        sent = readLines(transport.value())
        transport.clear()
        return sent

    def receive(self, *messages: Any) -> None:
        connection, _ = self.endpoint.connections[-1]
        connection.dataReceived(b"".join(line(m) for m in messages))

    def test_unsubscribeDuringRenewal(self) -> None:
        """
        A channel unsubscribed before its renewal is answered does not
        keep the backoff from starting over once the others are renewed.
        """
        first, second = [self.subscriber.subscribe(channel) for channel in ["room:1", "room:2"]]
        self.subscriber.startService()
        self.assertEqual([m["channel"] for m in self.sent()], ["room:1", "room:2"])
        self.subscriber.backoff.failures = 3
        self.receive({"status": "OK", "channel": "room:1", "offset": 0, "epoch": "e1"})
        self.subscriber.unsubscribe("room:2")
        self.assertEqual(self.subscriber.backoff.failures, 0)
        self.assertEqual(self.successResultOf(first)["offset"], 0)
        self.failureResultOf(second, CancelledError)

    def test_orderWithinOneRead(self) -> None:
        """
        A reply saying the resume failed and the publications after it,
        read at once, are handed on in that order: the Resync first.
        """
        self.subscriber.subscribe("room:1")
        self.subscriber.startService()
        self.sent()
        self.receive({"status": "OK", "channel": "room:1", "offset": 2, "epoch": "e1"}, publication("room:1", "a", 3))
        connection, _ = self.endpoint.connections[-1]
        connection.connectionLost(Failure(ConnectionLost("gone")))
        self.clock.advance(0.5)
        [renewal] = self.sent()
        self.assertEqual(renewal["since"], {"offset": 3, "epoch": "e1"})
        self.receive(
            {"status": "OK", "channel": "room:1", "offset": 9, "epoch": "e2", "recovered": False, "replayed": 0},
            publication("room:1", "b", 10, "e2"),
        )
        events = [self.successResultOf(self.subscriber.nextEvent()) for _ in range(3)]
        self.assertEqual(
            events, [Publication("room:1", "a", 3, "e1"), Resync("room:1", "e2", 9, NEW_EPOCH), Publication("room:1", "b", 10, "e2")]
        )


class ClosingFactory(protocol.Factory):
    """
    A server that closes each connection as soon as it is made.
    """

    class protocol(protocol.Protocol):  # type: ignore[no-redef]
        def connectionMade(self) -> None:
            self.transport.loseConnection()


class ScriptedServer:
    """
    A server on 127.0.0.1, port 0, in a thread, that answers each
    connection's first line with the bytes its script gives for it, sent
    in one write, then closes the connection; it records the lines.
    """

    def __init__(self, test: SynchronousTestCase, *answers: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self._serve, args=(answers,), daemon=True)
        self.thread.start()
        test.addCleanup(self.listener.close)

    def _serve(self, answers: tuple[bytes, ...]) -> None:
        for answer in answers:
            connection, _ = self.listener.accept()
            with connection, connection.makefile("rb") as lines:
                self.received.append(json.loads(lines.readline()))
                connection.sendall(answer)


class BlockingSubscriberOrderTests(SynchronousTestCase):
    """
    The blocking subscriber against a server that sends exactly the bytes
    a test says, when it says.
    """

    def test_orderWithinOneRead(self) -> None:
        """
        A reply saying the resume failed and a publication after it, read
        at once, are handed on in that order: the Resync first, once.
        """
        server = ScriptedServer(
            self,
            line({"status": "OK", "channel": "room:1", "offset": 2, "epoch": "e1"}) + line(publication("room:1", "a", 3)),
            line({"status": "OK", "channel": "room:1", "offset": 9, "epoch": "e2", "recovered": False, "replayed": 0})
            + line(publication("room:1", "b", 10, "e2")),
        )
        with Subscriber("127.0.0.1", server.port, sleep=lambda seconds: None, timeout=5) as subscriber:
            subscriber.subscribe("room:1")
            events = [subscriber.nextEvent() for _ in range(3)]
            position = subscriber.position("room:1")
        self.assertEqual(position, ("e2", 10))
        self.assertEqual(
            events, [Publication("room:1", "a", 3, "e1"), Resync("room:1", "e2", 9, NEW_EPOCH), Publication("room:1", "b", 10, "e2")]
        )
        self.assertEqual(server.received[1]["since"], {"offset": 3, "epoch": "e1"})


class Enough(Exception):
    """
    Raised by a test's fake sleep to end a wait that would not end.
    """

    @classmethod
    def stop(cls) -> None:
        raise cls()


class BlockingSubscriberTests(TestCase):
    """
    The blocking subscriber, in a thread, over real sockets; its waits
    between attempts go to a fake sleep, which brings the server back.
    """

    def setUp(self) -> None:
        self.server = ChannelServer(self, historySize=3)
        self.sleeps: list[float] = []
        self.onSleep: dict[int, Callable[[], Any]] = {}
        self.notices: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        then = self.onSleep.get(len(self.sleeps))
        if then is not None:
            blockingCallFromThread(reactor, then)

    def subscriber(self, **options: Any) -> Subscriber:
        options.setdefault("backoff", Backoff(random=lambda: 0.0))
        return Subscriber("127.0.0.1", self.server.port, sleep=self.sleep, notify=self.notices.append, **options)

    def publish(self, channel: str, *data: Any) -> None:
        for value in data:
            blockingCallFromThread(reactor, self.server.publish, channel, value)

    @inlineCallbacks
    def test_resumeAcrossRestart(self) -> None:
        """
        The server goes away and comes back on the same port: the
        subscriber waits (longer after a failed attempt), connects again,
        resumes, and gets exactly what it missed, in order, then what
        comes next.
        """
        self.onSleep[1] = lambda: self.publishAll("room:1", [2, 3])
        self.onSleep[2] = self.server.comeBack

        def run() -> list[Any]:
            with self.subscriber() as subscriber:
                reply = subscriber.subscribe("room:1")
                self.publish("room:1", 1)
                first = subscriber.nextEvent()
                blockingCallFromThread(reactor, self.server.goAway)
                missed = [subscriber.nextEvent(), subscriber.nextEvent()]
                self.publish("room:1", 4)
                return [reply, first, *missed, subscriber.nextEvent(), subscriber.backoff.failures]

        reply, *events, failures = yield deferToThread(run)
        self.assertEqual(events, [Publication("room:1", n, n, reply["epoch"]) for n in (1, 2, 3, 4)])
        self.assertEqual((self.sleeps, failures), ([0.5, 1.0], 0))
        where = f"127.0.0.1:{self.server.port}"
        self.assertRegex(self.notices.pop(0), rf"^lost the connection to {where} \(.*\); connecting again in 0.5 s$")
        self.assertEqual(
            self.notices,
            [
                f"cannot connect to 127.0.0.1:{self.server.port}: Connection refused; trying again in 1.0 s",
                f"connected to 127.0.0.1:{self.server.port}; subscribing again to room:1",
                "resumed room:1 after offset 1: 2 publications it missed follow",
            ],
        )

    @inlineCallbacks
    def test_backoffGrowsWhileNothingWorks(self) -> None:
        """
        A server that takes connections and closes them at once is waited
        for longer each time, as one that refuses them is.
        """
        self.onSleep[1] = lambda: self.server.comeBack(factory=ClosingFactory())
        self.onSleep[5] = Enough.stop

        def run() -> None:
            with self.subscriber() as subscriber:
                subscriber.subscribe("room:1")
                blockingCallFromThread(reactor, self.server.goAway)
                self.assertRaises(Enough, subscriber.nextEvent, timeout=None)

        yield deferToThread(run)
        self.assertEqual(self.sleeps, [0.5, 1.0, 2.0, 4.0, 8.0])

    def publishAll(self, channel: str, data: list[Any]) -> Deferred[Any]:
        return gatherResults([self.server.publish(channel, value) for value in data])

    @inlineCallbacks
    def test_historyGone(self) -> None:
        """
        More was missed than the history keeps: a Resync, then the
        publications after the server's offset.
        """
        self.onSleep[1] = lambda: self.publishAll("room:1", [1, 2, 3, 4, 5])
        self.onSleep[2] = self.server.comeBack

        def run() -> list[Any]:
            with self.subscriber() as subscriber:
                subscriber.subscribe("room:1")
                blockingCallFromThread(reactor, self.server.goAway)
                resync = subscriber.nextEvent()
                self.publish("room:1", 6)
                return [resync, subscriber.nextEvent()]

        resync, after = yield deferToThread(run)
        self.assertEqual((resync.offset, resync.reason), (5, HISTORY_GONE))
        self.assertEqual((after.data, after.offset), (6, 6))

    @inlineCallbacks
    def test_waitsCountAgainstTimeout(self) -> None:
        """
        nextEvent's timeout holds while it waits to connect again: it
        raises TimeoutError in time, and the next call waits the rest.
        """
        self.onSleep[2] = self.server.comeBack

        def run() -> list[Any]:
            with self.subscriber() as subscriber:
                subscriber.subscribe("room:1")
                blockingCallFromThread(reactor, self.server.goAway)
                self.assertRaises(TimeoutError, subscriber.nextEvent, timeout=0.2)
                self.assertFalse(subscriber.connected)
                self.publish("room:1", "x")
                return [subscriber.nextEvent(timeout=5), subscriber.connected]

        event, connected = yield deferToThread(run)
        self.assertEqual((event.data, connected), ("x", True))
        self.assertEqual(len(self.sleeps), 2)
        self.assertLessEqual(self.sleeps[0], 0.2)
        self.assertAlmostEqual(sum(self.sleeps), 0.5, places=2)

    @inlineCallbacks
    def test_refusals(self) -> None:
        """
        A subscription the server refuses raises SubscribeError; one it
        refuses to renew on a new connection is a Refused event.
        """
        self.onSleep[1] = lambda: self.comeBackRefusing()

        def run() -> list[Any]:
            with self.subscriber() as subscriber:
                error = self.assertRaises(SubscribeError, subscriber.subscribe, "a b")
                subscriber.subscribe("room:1")
                blockingCallFromThread(reactor, self.server.goAway)
                return [error.reply["code"], subscriber.nextEvent(), subscriber.channels]

        code, refused, channels = yield deferToThread(run)
        self.assertEqual((code, refused.reply["code"], channels), ("invalid_channel", "not_allowed", []))

    def comeBackRefusing(self) -> None:
        self.server.comeBack(fresh=True)
        self.server.broker.authorize(lambda context, action, channel: False)

    @inlineCallbacks
    def test_firstConnectionFails(self) -> None:
        """
        Like Client, the first connection is made at once, and its failure
        raised: a wrong address is not retried for ever.
        """
        yield self.server.goAway()
        yield self.assertFailure(deferToThread(self.subscriber), ConnectionRefusedError)

    @inlineCallbacks
    def test_int32(self) -> None:
        """
        A subscriber speaks the length-prefixed framing when told, as
        Client does; so does the Twisted one.
        """
        server = ChannelServer(self, framing="int32")

        def run() -> Any:
            with Subscriber("127.0.0.1", server.port, framing="int32") as subscriber:
                subscriber.subscribe("room:1")
                blockingCallFromThread(reactor, server.publish, "room:1", "framed")
                return subscriber.nextEvent()

        self.assertEqual((yield deferToThread(run)).data, "framed")
        twisted = SubscriberService(reactor, f"tcp:127.0.0.1:{server.port}", framing="int32")
        twisted.startService()
        self.addCleanup(twisted.stopService)
        yield twisted.subscribe("room:1")
        yield server.publish("room:1", "again")
        self.assertEqual((yield twisted.nextEvent().addTimeout(5, reactor)).data, "again")

    @inlineCallbacks
    def test_closeAndTooLong(self) -> None:
        """
        close() ends events(); a publication longer than maxReplySize
        raises ReplyTooLong and stops the subscriber.
        """

        def run() -> list[Any]:
            with self.subscriber() as subscriber:
                subscriber.subscribe("room:1")
                self.publish("room:1", 1)
                taken = []
                for event in subscriber.events():
                    taken.append(event.data)
                    subscriber.close()
                self.assertRaises(SubscriberStopped, subscriber.nextEvent)
            with self.subscriber(maxReplySize=100) as subscriber:
                subscriber.subscribe("room:2")
                self.publish("room:2", "x" * 200)
                self.assertRaises(ReplyTooLong, subscriber.nextEvent)
                self.assertRaises(ReplyTooLong, subscriber.nextEvent)
            return taken

        self.assertEqual((yield deferToThread(run)), [1])
        self.assertEqual(self.sleeps, [])


class Command:
    """
    C{jsonproto ARGV...} run in a thread (it blocks; the server runs on the
    test's reactor), its output readable while it runs.
    """

    def __init__(self, *argv: str) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.done = deferToThread(cli.main, list(argv), io.StringIO(""), self.out, self.err)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    @inlineCallbacks
    def result(self) -> Any:
        status = yield self.done.addTimeout(10, reactor)
        return status, self.lines(), self.err.getvalue()


class SubscribeCommandTests(TestCase):
    """
    C{jsonproto subscribe} and C{jsonproto publish} against an in-process
    channels server.
    """

    def setUp(self) -> None:
        self.server = ChannelServer(self)
        self.endpoint = f"127.0.0.1:{self.server.port}"
        self.sleeps: list[float] = []
        self.onSleep: dict[int, Callable[[], Any]] = {}
        self.patch(channelsCommands, "sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        then = self.onSleep.get(len(self.sleeps))
        if then is not None:
            blockingCallFromThread(reactor, then)

    def subscribed(self, *channels: str) -> Any:
        return waitFor(lambda: all(self.server.broker.subscribers(c) for c in channels), f"subscribers to {channels}")

    @inlineCallbacks
    def test_prints(self) -> None:
        """
        Each publication of every channel named is one JSON line, as the
        server sent it; after --count of them, status 0.
        """
        command = Command("subscribe", self.endpoint, "room:1", "--count", "3", "room:2")
        yield self.subscribed("room:1", "room:2")
        published = []
        for channel, data in [("room:1", {"text": "hi"}), ("room:2", 2), ("room:1", "three")]:
            published.append((yield self.server.publish(channel, data)))
        status, lines, err = yield command.result()
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(lines, [json.loads(p.payload) for p in published])
        self.assertEqual([line["data"] for line in lines], [{"text": "hi"}, 2, "three"])

    @inlineCallbacks
    def test_resumes(self) -> None:
        """
        The server goes away and comes back: the command connects again,
        resumes, and prints what it missed, in order, each once; what it
        did is on standard error.
        """
        self.onSleep[1] = lambda: gatherResults([self.server.publish("room:1", n) for n in (2, 3)])
        self.onSleep[2] = self.server.comeBack
        command = Command("subscribe", self.endpoint, "room:1", "--count", "4")
        yield self.subscribed("room:1")
        yield self.server.publish("room:1", 1)
        yield waitFor(lambda: command.out.getvalue(), "the first publication printed")
        yield self.server.goAway()
        yield self.subscribed("room:1")
        yield self.server.publish("room:1", 4)
        status, lines, err = yield command.result()
        self.assertEqual((status, [(line["data"], line["offset"]) for line in lines]), (0, [(1, 1), (2, 2), (3, 3), (4, 4)]))
        notices = err.splitlines()
        self.assertEqual(len(notices), 4, err)
        self.assertIn("resumed room:1 after offset 1: 2 publications it missed follow", notices[-1])
        self.assertEqual(len(self.sleeps), 2)

    @inlineCallbacks
    def test_resync(self) -> None:
        """
        A server that comes back without the history (a new process) is
        one line on standard error, saying to resync; publications go on.
        """
        self.onSleep[1] = lambda: self.server.comeBack(fresh=True)
        command = Command("subscribe", self.endpoint, "room:1", "--count", "1")
        yield self.subscribed("room:1")
        yield self.server.goAway()
        yield self.subscribed("room:1")
        yield self.server.publish("room:1", "after")
        status, lines, err = yield command.result()
        self.assertEqual((status, [line["data"] for line in lines]), (0, ["after"]))
        self.assertIn("jsonproto: room:1 cannot be resumed: the channel started a new epoch", err)
        self.assertIn("resync", err)

    @inlineCallbacks
    def test_refused(self) -> None:
        """
        A channel the server refuses is one line on standard error and
        status 1; a server without channels says so too.
        """
        self.server.broker.authorize(lambda context, action, channel: channel != "secret")
        status, lines, err = yield Command("subscribe", self.endpoint, "room:1", "secret").result()
        self.assertEqual(
            (status, lines, err), (1, [], "jsonproto: cannot subscribe to secret: Not allowed (this connection may not subscribe to secret)\n")
        )
        plain = reactor.listenTCP(0, JSONServerFactory(defaultDispatcher()), interface="127.0.0.1")
        self.addCleanup(plain.stopListening)
        status, _, err = yield Command("subscribe", f"127.0.0.1:{plain.getHost().port}", "room:1").result()
        self.assertEqual(status, 1)
        self.assertTrue(err.endswith("(does the server serve channels?)\n"), err)

    @inlineCallbacks
    def test_firstConnectionFails(self) -> None:
        """
        A server that is not there at first is one line and status 2, as
        for send.
        """
        yield self.server.goAway()
        status, _, err = yield Command("subscribe", self.endpoint, "room:1").result()
        self.assertEqual((status, err), (2, f"jsonproto: cannot connect to {self.endpoint}: connection refused (is the server running?)\n"))

    @inlineCallbacks
    def test_publish(self) -> None:
        """
        publish prints the reply: status 0 when published, 1 when refused.
        """
        status, lines, err = yield Command("publish", self.endpoint, "room:1", '{"text":"hi"}').result()
        history = yield self.server.engine.history("room:1")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(lines, [{"status": "OK", "channel": "room:1", "offset": 1, "epoch": history.epoch}])
        self.assertEqual([json.loads(p.payload)["data"] for p in history.publications], [{"text": "hi"}])
        self.server.broker.authorize(lambda context, action, channel: False)
        status, lines, _ = yield Command("publish", self.endpoint, "room:1", "2").result()
        self.assertEqual((status, lines[0]["code"]), (1, "not_allowed"))

    @inlineCallbacks
    def test_overTLS(self) -> None:
        """
        Both commands speak TLS, verifying the server as send does: a
        certificate that does not verify is one line and status 2; with
        --ca they subscribe and publish.
        """
        key = os.path.abspath(self.mktemp())
        certs.writeCertificate(key, ["localhost", "127.0.0.1"])
        listening = yield endpoints.serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}").listen(self.server.factory)
        self.addCleanup(listening.stopListening)
        endpoint = f"tls:localhost:{listening.getHost().port}"
        status, _, err = yield Command("subscribe", endpoint, "room:1").result()
        self.assertEqual(status, 2)
        self.assertTrue(err.startswith("jsonproto: TLS verification of localhost failed:"), err)
        command = Command("subscribe", endpoint, "--ca", key, "room:1", "--count", "1")
        yield self.subscribed("room:1")
        status, lines, _ = yield Command("publish", endpoint, "--ca", key, "room:1", '"over TLS"').result()
        self.assertEqual((status, lines[0]["offset"]), (0, 1))
        status, lines, err = yield command.result()
        self.assertEqual((status, [line["data"] for line in lines], err), (0, ["over TLS"], ""))

    @inlineCallbacks
    def test_flushedThroughAPipe(self) -> None:
        """
        Through a real pipe, each publication is printed when it arrives,
        not when the command ends (jsonproto subscribe | consumer works).
        """
        script = os.path.join(os.path.dirname(sys.executable), "jsonproto")
        # As a user's shell runs it: standard output buffered, as Python
        # buffers a pipe unless told otherwise.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        process = subprocess.Popen(
            [script, "subscribe", self.endpoint, "room:1", "--count", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env, PYTHONPATH=REPO),
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())

        def firstLine() -> Any:
            assert process.stdout is not None
            if not select.select([process.stdout], [], [], 10)[0]:
                return None
            return json.loads(process.stdout.readline())

        yield waitFor(lambda: self.server.broker.subscribers("room:1"), "the command subscribed", seconds=10)
        yield self.server.publish("room:1", "first")
        first = yield deferToThread(firstLine)
        self.assertEqual(first["data"], "first")
        yield self.server.publish("room:1", "second")
        out, err = yield deferToThread(process.communicate, timeout=10)
        self.assertEqual((process.returncode, json.loads(out)["data"], err), (0, "second", b""))


class CommandUsageTests(SynchronousTestCase):
    """
    Bad command lines for subscribe and publish: one line, status 2,
    before anything is sent.
    """

    def test_usage(self) -> None:
        for argv, expected in [
            (["subscribe", "127.0.0.1:3001"], "the following arguments are required: CHANNEL"),
            (["subscribe", "127.0.0.1:3001", "a b"], "argument CHANNEL: 'a b' is not a channel name: channel may hold only"),
            (["subscribe", "127.0.0.1:3001", "ok", "--count", "0", ], "argument --count: '0' is not a whole number greater than 0"),
            (["subscribe", "127.0.0.1:3001", "ok", "--timeout", "1", "x" * 201], "is not a channel name: channel must be at most 200"),
            (["subscribe", "127.0.0.1:3001", "--ca", __file__, "ok"], "--ca applies only to a tls:HOST:PORT endpoint"),
            (["subscribe", "nowhere", "ok"], "argument endpoint:"),
            (["publish", "127.0.0.1:3001", "room:1"], "the following arguments are required: DATA"),
            (["publish", "127.0.0.1:3001", "room:1", "{nope"], "argument DATA: '{nope' is not JSON"),
            (["publish", "127.0.0.1:3001", "", "1"], "argument CHANNEL: '' is not a channel name: channel must not be empty"),
            (["publish", "127.0.0.1:3001", "room:1", "1", "2"], "unrecognized arguments: 2"),
        ]:
            err = io.StringIO()
            status = cli.main(argv, stdin=io.StringIO(""), out=io.StringIO(), err=err)
            self.assertEqual((status, err.getvalue().count("\n")), (2, 1), argv)
            self.assertTrue(err.getvalue().startswith(f"jsonproto {argv[0]}: error: "), err.getvalue())
            self.assertIn(expected, err.getvalue())

    def test_help(self) -> None:
        """
        --help keeps the examples' line breaks, and every option says what
        it does.
        """
        self.assertIn("\n  jsonproto subscribe localhost:3001 room:1\n", _helpOf("subscribe"))
        self.assertIn("\n  jsonproto publish localhost:3001 prices 101.5\n", _helpOf("publish"))
        for command in ["subscribe", "publish"]:
            for option, helpText in _options(_helpOf(command)):
                self.assertTrue(helpText, f"{command} {option} has no help text")

    def test_interrupted(self) -> None:
        """
        Ctrl-C is how a subscription at a terminal ends: status 0, and
        what was printed stays printed.
        """

        class Interrupted:
            channels = ["room:1"]

            def subscribe(self, channel: str) -> dict[str, Any]:
                return {"status": "OK"}

            def nextEvent(self, timeout: Any) -> Any:
                raise KeyboardInterrupt()

        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(channelsCommands.Follow(out, err).run(Interrupted(), ["room:1"]), 0)  # type: ignore[arg-type]
        self.assertEqual((out.getvalue(), err.getvalue()), ("", ""))
