"""
Channels in one process: subscribe, publish, unsubscribe; one encoding per
publication; slow subscribers bounded; history and resume; presence; who
may subscribe and publish.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.channels import engine as engineModule
from jsonproto.channels import messages
from jsonproto.channels.broker import Broker
from jsonproto.channels.engine import MemoryEngine
from jsonproto.channels.outbox import DROP
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from tests.e2e import startDaemon
from tests.support import connect, connectBuffering, int32, line, readInt32, readLines


class _Channels:
    framing = "line"
    frame = staticmethod(line)
    read = staticmethod(readLines)

    def setUp(self) -> None:
        self.clock = Clock()
        self.dispatcher = defaultDispatcher()
        self.engine = MemoryEngine(self.clock, size=3, seconds=0)
        self.broker = Broker(self.engine, self.clock, maxQueuedBytes=2000)
        messages.register(self.dispatcher, self.broker)
        self.factory = JSONServerFactory(self.dispatcher, framing=self.framing, limits=Limits(idleTimeout=0, sendTimeout=0), clock=self.clock)

    def client(self, port: int = 40000, buffering: bool = False) -> tuple[Any, Any]:
        return (connectBuffering if buffering else connect)(self.factory, port=port) if buffering else connect(self.factory, port=port)

    def send(self, proto: Any, transport: Any, *messages_: Any) -> list[Any]:
        proto.dataReceived(b"".join(self.frame(m) for m in messages_))
        self.clock.advance(0)
        got = self.read(transport.value())
        transport.clear()
        return got


class ChannelTests(_Channels, SynchronousTestCase):
    def test_subscribeAndPublish(self) -> None:
        """
        A subscriber gets each publication as a PUBLICATION message with
        its offset and epoch; the publisher's reply says them too.
        """
        sub, ts = connect(self.factory)
        pub, tp = connect(self.factory, port=40001)
        [reply] = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "room:1", "id": 1})
        epoch = reply["epoch"]
        self.assertEqual(reply, {"status": "OK", "channel": "room:1", "offset": 0, "epoch": epoch, "id": 1})
        [published] = self.send(pub, tp, {"type": "PUBLISH", "channel": "room:1", "data": {"text": "hi"}})
        self.assertEqual(published, {"status": "OK", "channel": "room:1", "offset": 1, "epoch": epoch})
        self.clock.advance(0)
        self.assertEqual(
            self.read(ts.value()), [{"type": "PUBLICATION", "channel": "room:1", "data": {"text": "hi"}, "offset": 1, "epoch": epoch}]
        )

    def test_names(self) -> None:
        """
        A channel name is short and printable; anything else is refused
        with invalid_channel, saying why.
        """
        sub, ts = connect(self.factory)
        for name, why in [("", "empty"), ("x" * 201, "at most 200"), ("a b", "only letters"), (7, "a string")]:
            [reply] = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": name})
            self.assertEqual(reply["code"], "invalid_channel")
            self.assertIn(why, reply["detail"])

    def test_encodedOnce(self) -> None:
        """
        A publication to many subscribers is encoded once, and the same
        bytes go to every one of them.
        """
        encoded: list[Any] = []
        original = engineModule.encode
        self.patch(engineModule, "encode", lambda value: encoded.append(value) or original(value))
        clients = [connect(self.factory, port=41000 + i) for i in range(50)]
        for proto, transport in clients:
            self.send(proto, transport, {"type": "SUBSCRIBE", "channel": "news"})
        self.broker.publish("news", {"n": 1})
        self.clock.advance(0)
        self.assertEqual(len(encoded), 1)
        frames = {transport.value() for _, transport in clients}
        self.assertEqual(len(frames), 1)

    def test_unsubscribeAndClose(self) -> None:
        """
        Unsubscribing, or closing, ends the deliveries.
        """
        a, ta = connect(self.factory)
        b, tb = connect(self.factory, port=40001)
        self.send(a, ta, {"type": "SUBSCRIBE", "channel": "c"})
        self.send(b, tb, {"type": "SUBSCRIBE", "channel": "c"})
        self.assertEqual(self.send(a, ta, {"type": "UNSUBSCRIBE", "channel": "c"})[0]["was"], True)
        tb.finishClose()
        self.broker.publish("c", 1)
        self.clock.advance(0)
        self.assertEqual((ta.value(), tb.value()), (b"", b""))
        self.assertEqual(self.broker.counts()["channels"], 0)

    def test_slowSubscriberDisconnected(self) -> None:
        """
        A subscriber that does not read is disconnected once its waiting
        publications pass the bound, with a logged reason; the others keep
        receiving every publication.
        """
        slow, tslow = connectBuffering(self.factory)
        tslow.bufferSize = 500
        fast, tfast = connect(self.factory, port=40001)
        for proto, transport in ((slow, tslow), (fast, tfast)):
            proto.dataReceived(self.frame({"type": "SUBSCRIBE", "channel": "feed"}))
        tfast.clear()
        for n in range(100):
            self.broker.publish("feed", {"n": n, "pad": "p" * 50})
            self.clock.advance(0)
        self.assertTrue(tslow.disconnecting)
        self.assertEqual(self.factory.connections.closedBy.get("slow_subscriber"), 1)
        self.assertEqual([m["data"]["n"] for m in self.read(tfast.value())], list(range(100)))
        self.assertLessEqual(tslow.peak, 500 + 2000 + 200)

    def test_burstReachesReader(self) -> None:
        """
        A subscriber that keeps up gets a burst of publications made in one
        turn, and a publication larger than the bound, however they compare
        with the bound: only one whose connection cannot take them is slow.
        """
        sub, ts = connectBuffering(self.factory)
        sub.dataReceived(self.frame({"type": "SUBSCRIBE", "channel": "feed"}))
        self.clock.advance(0)
        ts.peerReads()
        for n in range(30):
            self.broker.publish("feed", {"n": n, "pad": "p" * 100})
        self.broker.publish("feed", {"n": 30, "pad": "p" * 5000})
        self.clock.advance(0)
        self.assertFalse(ts.disconnecting)
        self.assertEqual([m["data"]["n"] for m in self.read(ts.peerReads())], list(range(31)))
        self.assertEqual(self.broker.slowDisconnects, 0)

    def test_orderWithinTurn(self) -> None:
        """
        What one turn brings reaches each subscriber in the order it
        happened, across channels and around presence notices; a
        subscriber that joins in the turn gets only what follows its
        subscription, one that leaves what preceded its leaving.
        """
        a, ta = connect(self.factory)
        b, tb = connect(self.factory, port=40001)
        c, tc = connect(self.factory, port=40002)
        self.send(a, ta, {"type": "SUBSCRIBE", "channel": "x", "presence": True}, {"type": "SUBSCRIBE", "channel": "y"})
        self.send(c, tc, {"type": "SUBSCRIBE", "channel": "x"})
        ta.clear()
        self.broker.publish("x", 1)
        self.broker.publish("y", 2)
        self.broker.publish("x", 3)
        b.dataReceived(self.frame({"type": "SUBSCRIBE", "channel": "x"}))
        self.broker.publish("x", 4)
        c.dataReceived(self.frame({"type": "UNSUBSCRIBE", "channel": "x"}))
        self.broker.publish("x", 5)
        self.clock.advance(0)
        seen = [m.get("data", m["type"]) for m in self.read(ta.value())]
        self.assertEqual(seen, [1, 2, 3, "JOIN", 4, "LEAVE", 5])
        self.assertEqual([m.get("data", m.get("status")) for m in self.read(tb.value())], ["OK", 4, 5])
        # Its reply is written at once, the publications at the end of the
        # turn: a reply may overtake pushes, never a push another push.
        self.assertEqual([m.get("data", m.get("status")) for m in self.read(tc.value())], ["OK", 1, 3, 4])

    def test_slowSubscriberDrops(self) -> None:
        """
        Under the drop policy, the oldest waiting publications are dropped
        and the subscriber, when it reads again, is told how many it missed.
        """
        self.broker.policyFor = lambda channel: DROP
        slow, tslow = connectBuffering(self.factory)
        tslow.bufferSize = 500
        slow.dataReceived(self.frame({"type": "SUBSCRIBE", "channel": "ticker"}))
        for n in range(100):
            self.broker.publish("ticker", {"n": n, "pad": "p" * 50})
            self.clock.advance(0)
        self.assertFalse(tslow.disconnecting)
        seen = self.read(tslow.peerReads())
        self.clock.advance(0)
        seen += self.read(tslow.peerReads())
        missed = [m for m in seen if m.get("type") == "MISSED"]
        numbers = [m["data"]["n"] for m in seen if m.get("type") == "PUBLICATION"]
        self.assertEqual(len(missed), 1)
        self.assertEqual(missed[0]["count"] + len(numbers), 100)
        self.assertEqual(numbers, sorted(numbers))
        self.assertEqual(numbers[-1], 99)

    def test_resume(self) -> None:
        """
        A client that resubscribes with its last offset and epoch is sent
        what it missed, in order, after the reply; with another epoch, or
        from further back than the history holds, it is told it must
        resync.
        """
        sub, ts = connect(self.factory)
        epoch = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "c"})[0]["epoch"]
        self.send(sub, ts, {"type": "UNSUBSCRIBE", "channel": "c"})
        for n in range(1, 6):
            self.broker.publish("c", n)
        [reply, *replayed] = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "c", "since": {"offset": 3, "epoch": epoch}})
        self.assertEqual((reply["recovered"], reply["replayed"], reply["offset"]), (True, 2, 5))
        self.assertEqual([p["data"] for p in replayed], [4, 5])
        self.send(sub, ts, {"type": "UNSUBSCRIBE", "channel": "c"})
        [reply] = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "c", "since": {"offset": 1, "epoch": epoch}})
        self.assertEqual(reply["recovered"], False)
        self.send(sub, ts, {"type": "UNSUBSCRIBE", "channel": "c"})
        [reply] = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "c", "since": {"offset": 4, "epoch": "other"}})
        self.assertEqual(reply["recovered"], False)

    def test_presence(self) -> None:
        """
        PRESENCE lists who subscribes; those who ask are told of others
        joining and leaving.
        """
        a, ta = connect(self.factory)
        b, tb = connect(self.factory, port=40001)
        self.send(a, ta, {"type": "SUBSCRIBE", "channel": "lobby", "presence": True})
        self.send(b, tb, {"type": "SUBSCRIBE", "channel": "lobby"})
        [joined] = self.read(ta.value())
        ta.clear()
        self.assertEqual((joined["type"], joined["subscriber"]["id"]), ("JOIN", b.info.id))
        [listed] = self.send(a, ta, {"type": "PRESENCE", "channel": "lobby"})
        self.assertEqual(sorted(s["id"] for s in listed["subscribers"]), sorted([a.info.id, b.info.id]))
        tb.finishClose()
        self.clock.advance(0)
        self.assertEqual(self.read(ta.value())[0]["type"], "LEAVE")

    def test_engineAvailability(self) -> None:
        """
        The log says when the engine's store goes and comes back, not when
        it first comes.
        """
        from twisted.logger import Logger

        from jsonproto.channels import broker as brokerModule

        said: list[Any] = []
        self.patch(brokerModule, "log", Logger(observer=said.append))
        self.broker.engineAvailable(True)
        self.broker.engineAvailable(False)
        self.broker.engineAvailable(True)
        self.assertEqual([e["state"] for e in said], ["unavailable: publishing is refused", "available again"])


        """
        The authorization hook decides, per connection and channel, who may
        subscribe (and see who is subscribed) and publish; a refusal says so.
        """
        asked: list[Any] = []
        decision: Deferred[bool] = Deferred()

        @self.broker.authorize
        def mayI(context: Any, action: str, channel: str) -> Any:
            asked.append((action, channel))
            return channel.startswith("public:") or (decision if action == "publish" else False)

        sub, ts = connect(self.factory)
        [refused] = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "private:x"})
        self.assertEqual((refused["code"], refused["message"]), ("not_allowed", "Not allowed"))
        self.assertEqual(self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "public:x"})[0]["status"], "OK")
        sub.dataReceived(self.frame({"type": "PUBLISH", "channel": "private:y", "data": 1}))
        self.assertEqual(ts.value(), b"")
        decision.callback(False)
        self.assertEqual(self.read(ts.value())[0]["code"], "not_allowed")
        self.assertEqual(asked, [("subscribe", "private:x"), ("subscribe", "public:x"), ("publish", "private:y")])
        # Who is in a channel is for those who may subscribe to it.
        other, to = connect(self.factory, port=40001)
        [refused] = self.send(other, to, {"type": "PRESENCE", "channel": "private:x"})
        self.assertEqual(refused["code"], "not_allowed")
        [allowed] = self.send(other, to, {"type": "PRESENCE", "channel": "public:x"})
        self.assertEqual([s["id"] for s in allowed["subscribers"]], [sub.info.id])
        self.assertEqual(asked[-2:], [("subscribe", "private:x"), ("subscribe", "public:x")])


class MemoryEngineBoundTests(SynchronousTestCase):
    """
    All channels of a process together hold no more than the engine's
    memory bound, however many channel names clients make up.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.engine = MemoryEngine(self.clock, size=100, seconds=0, maxMemory=64 * 1024)

    def test_manyChannelsBounded(self) -> None:
        """
        Publishing to 10,000 new channels, with no time limit on history,
        leaves the engine within its bound, holding the most recent.
        """
        for n in range(10_000):
            self.engine.publish(f"c{n}", "x" * 100)
            self.assertLessEqual(self.engine.memory, 64 * 1024)
        history = self.successResultOf(self.engine.history("c9999"))
        self.assertEqual([p.offset for p in history.publications], [1])
        self.assertLess(len(self.engine._channels), 10_000)

    def test_listenedChannelKept(self) -> None:
        """
        A channel listened to keeps its epoch and offsets when the bound
        takes its history (its subscribers are told to resync); one nobody
        listens to starts a new epoch.
        """
        self.engine.listen("watched")
        watched = self.successResultOf(self.engine.publish("watched", 1))
        idle = self.successResultOf(self.engine.publish("idle", 1))
        for n in range(2_000):
            self.engine.publish(f"c{n}", "x" * 100)
        history = self.successResultOf(self.engine.history("watched"))
        self.assertEqual((history.epoch, history.offset, history.publications), (watched.epoch, 1, ()))
        self.assertIsNone(history.since(watched.epoch, 0))
        self.assertNotEqual(self.successResultOf(self.engine.history("idle")).epoch, idle.epoch)

    def test_daemonOption(self) -> None:
        """
        C{--channel-memory} is the bound of the daemon's engine, and
        defaults to 64 MiB.
        """
        from jsonproto.daemon.options import Options
        from jsonproto.daemon.tap import channelsFor

        for argv, expected in [([], 64 * 1024 * 1024), (["--channel-memory", "4096"], 4096)]:
            config = Options()
            config.parseOptions(["--channels", *argv])
            broker = channelsFor(config, self.clock)
            assert broker is not None
            self.assertEqual(broker.engine._maxMemory, expected)

    def test_recentHistoryKept(self) -> None:
        """
        Within the bound, nothing is taken: every channel keeps its own
        history.
        """
        for n in range(10):
            for k in range(5):
                self.engine.publish(f"c{n}", k)
        for n in range(10):
            history = self.successResultOf(self.engine.history(f"c{n}"))
            self.assertEqual([p.offset for p in history.publications], [1, 2, 3, 4, 5])


class Int32ChannelTests(ChannelTests):
    framing = "int32"
    frame = staticmethod(int32)
    read = staticmethod(readInt32)


class DaemonChannelsTests(TestCase):
    """
    twistd jsonproto --channels, over real sockets: one client subscribes,
    another publishes; a resubscription resumes.
    """

    timeout = 60

    @inlineCallbacks
    def test_subscribePublishResume(self) -> None:
        _, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--channels", "--channel-history", "10")

        def clients() -> list[Any]:
            sub = socket.create_connection(("127.0.0.1", port), timeout=10)
            pub = socket.create_connection(("127.0.0.1", port), timeout=10)
            subIn, pubIn = sub.makefile("rb"), pub.makefile("rb")
            sub.sendall(line({"type": "SUBSCRIBE", "channel": "t", "id": 1}))
            subscribed = json.loads(subIn.readline())
            pub.sendall(b"".join(line({"type": "PUBLISH", "channel": "t", "data": n}) for n in range(3)))
            published = [json.loads(pubIn.readline()) for _ in range(3)]
            received = [json.loads(subIn.readline()) for _ in range(3)]
            sub.sendall(line({"type": "UNSUBSCRIBE", "channel": "t"}))
            json.loads(subIn.readline())
            pub.sendall(line({"type": "PUBLISH", "channel": "t", "data": 3}))
            json.loads(pubIn.readline())
            sub.sendall(line({"type": "SUBSCRIBE", "channel": "t", "since": {"offset": 3, "epoch": subscribed["epoch"]}}))
            resumed = [json.loads(subIn.readline()) for _ in range(2)]
            for f in (subIn, pubIn, sub, pub):
                f.close()
            return [subscribed, published, received, resumed]

        subscribed, published, received, resumed = yield deferToThread(clients)
        self.assertEqual((subscribed["status"], subscribed["offset"], subscribed["id"]), ("OK", 0, 1))
        self.assertEqual([p["offset"] for p in published], [1, 2, 3])
        self.assertEqual([(r["type"], r["data"], r["offset"]) for r in received], [("PUBLICATION", n, n + 1) for n in range(3)])
        self.assertEqual((resumed[0]["recovered"], resumed[0]["replayed"]), (True, 1))
        self.assertEqual(resumed[1]["data"], 3)
