"""
Channels across processes through Redis: the engine against a real
C{redis-server} these tests start on a free port (and kill, by its pid,
and start again on the same port), then real daemons sharing it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import clientFromString
from twisted.internet.task import Clock, deferLater
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from jsonproto.channels import messages
from jsonproto.channels.broker import Broker
from jsonproto.channels.engine import ChannelsUnavailable, MemoryEngine, Publication, publicationPayload
from jsonproto.channels.redis import RedisEngine, completePayload, position, publicationHead
from jsonproto.channels.redislink import RedisLink
from jsonproto.channels.redisorder import HISTORY_GONE, NEW_EPOCH
from jsonproto.daemon.options import Options
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from tests.docrun import freePort
from tests.e2e import daemonLog, twistd
from tests.support import connect, line, readLines

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
DEADLINE = float(os.environ.get("JSONPROTO_TEST_DEADLINE", 20))


def waitUntil(condition: Callable[[], bool], what: str, seconds: float = DEADLINE) -> None:
    """
    Poll C{condition} (a blocking test: no reactor runs meanwhile) until
    it holds; fail, saying C{what} was waited for, after C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        time.sleep(0.02)


@inlineCallbacks
def eventually(condition: Callable[[], bool], what: str, seconds: float = DEADLINE) -> Any:
    """
    Let the reactor run until C{condition} holds; fail, saying C{what}
    was waited for, after C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        yield deferLater(reactor, 0.01, lambda: None)


class RedisServer:
    """
    A redis-server of the test's own on a free port of 127.0.0.1, killed
    (by its pid) when the test ends; it can be killed and started again
    on the same port meanwhile.
    """

    def __init__(self, test: SynchronousTestCase, durable: bool = False) -> None:
        """
        @param durable: Whether every write reaches its append-only file
            before it is answered, so that it comes back from a kill with
            all it had.
        """
        if not os.access(REDIS_SERVER, os.X_OK):
            raise SkipTest("redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)")
        self.directory = tempfile.mkdtemp(prefix="jsonproto-redis-")
        test.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)
        test.addCleanup(self.kill)
        self.port = freePort()
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def start(self) -> None:
        """
        Start it (again, on the same port, with what it last saved if
        anything), and wait until it answers.
        """
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self.persistence,
             "--dir", self.directory, "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory,
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                if self.command("PING") == b"+PONG\r\n":
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        """
        Kill it at once (SIGKILL, by pid): it saves nothing.
        """
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=DEADLINE)
        self.process = None

    def command(self, *words: str) -> bytes:
        """
        One command, and its reply's first line or bulk as bytes (enough
        for the tests' PING, DEL, SAVE and CLIENT KILL).
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words))
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply


class Recorder:
    """
    What an engine hands a broker, in order.
    """

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.available: list[bool] = []

    def deliver(self, publication: Publication) -> None:
        self.events.append((publication.offset, json.loads(publication.payload)["data"]))

    def engineAvailable(self, available: bool) -> None:
        self.available.append(available)

    def resync(self, channel: str, epoch: str, offset: int, reason: str) -> None:
        self.events.append(("resync", offset, reason))

    @property
    def data(self) -> list[Any]:
        return [e[1] for e in self.events if e[0] != "resync"]


class PayloadTests(SynchronousTestCase):
    def test_sameBytes(self) -> None:
        """
        The publication the Redis script completes is byte for byte the
        one this process would encode, and its offset and epoch are read
        back from its end whatever its data holds.
        """
        for data in [1, "x", {"offset": 3, "epoch": "e"}, [',"offset":9,"epoch":"z"}'], None, "zoë"]:
            head = publicationHead("room:1", data)
            payload = completePayload(head, 42, b"a1b2c3")
            self.assertEqual(payload, publicationPayload("room:1", data, 42, "a1b2c3"))
            self.assertEqual(position(payload), (42, "a1b2c3"))
        self.assertIsNone(position(b'{"type":"PUBLICATION"}'))


class _Engines:
    """
    Engines on the test's redis-server, each as one process would have.
    """

    def setUp(self) -> None:
        self.redis = RedisServer(self)

    def engine(self, **options: Any) -> tuple[RedisEngine, Recorder]:
        link = RedisLink(clientFromString(reactor, self.redis.endpoint), self.redis.endpoint, reconnectDelay=0.05, maxReconnectDelay=0.2)
        engine = RedisEngine(link, **options)
        recorder = Recorder()
        engine.attach(recorder)
        engine.start()
        self.addCleanup(engine.stop)
        return engine, recorder

    @inlineCallbacks
    def ready(self, *engines: RedisEngine) -> Any:
        yield eventually(lambda: all(e.available and e._link.subscriberUp for e in engines), "the engines to connect")

    @inlineCallbacks
    def listening(self, engine: RedisEngine, channel: str) -> Any:
        """
        Listen as the broker does for a first subscriber (then read the
        history), and wait until Redis has the subscription.
        """
        engine.listen(channel)
        history = yield engine.history(channel)
        yield eventually(lambda: engine._listening[channel].subscribed and not engine._listening[channel].catchingUp, "the subscription")
        return history


class RedisEngineTests(_Engines, TestCase):
    @inlineCallbacks
    def test_offsetsAgree(self) -> None:
        """
        Publications from two processes are numbered in one sequence under
        one epoch, and each process that listens gets every one, in order.
        """
        (a, ra), (b, rb) = self.engine(), self.engine()
        yield self.ready(a, b)
        history = yield self.listening(b, "room:1")
        self.assertEqual(history.offset, 0)
        published = []
        for n in range(10):
            publication = yield (a if n % 2 else b).publish("room:1", n)
            published.append(publication)
        self.assertEqual([p.offset for p in published], list(range(1, 11)))
        self.assertEqual({p.epoch for p in published}, {history.epoch})
        yield eventually(lambda: len(rb.events) == 10, "the deliveries")
        self.assertEqual(rb.events, [(n + 1, n) for n in range(10)])
        self.assertEqual(ra.events, [])
        # What a subscriber receives is exactly what the publisher was told.
        self.assertEqual(published[0].payload, publicationPayload("room:1", 0, 1, history.epoch))

    @inlineCallbacks
    def test_history(self) -> None:
        """
        A channel's history in Redis keeps its last N publications, no
        more bytes than its bound, none older than its age; the keys are
        under the prefix.
        """
        engine, _ = self.engine(size=3, maxBytes=10_000, prefix="test:")
        yield self.ready(engine)
        for n in range(5):
            yield engine.publish("c", n)
        history = yield engine.history("c")
        self.assertEqual([p.offset for p in history.publications], [3, 4, 5])
        self.assertEqual(history.since(history.epoch, 3), tuple(history.publications[1:]))
        self.assertIsNone(history.since(history.epoch, 1))
        self.assertEqual(self.redis.command("EXISTS", "test:channel:{c}", "test:history:{c}"), b":2\r\n")
        yield engine.publish("c", "x" * 6000)
        yield engine.publish("c", "y" * 6000)
        history = yield engine.history("c")
        self.assertEqual([p.offset for p in history.publications], [7])
        aged, _ = self.engine(seconds=0.2, prefix="aged:")
        yield self.ready(aged)
        yield aged.publish("c", 1)
        yield deferLater(reactor, 0.3, lambda: None)
        yield aged.publish("c", 2)
        history = yield aged.history("c")
        self.assertEqual([p.offset for p in history.publications], [2])

    @inlineCallbacks
    def test_subscriberConnectionLost(self) -> None:
        """
        When Redis drops a process's subscriber connection (here CLIENT
        KILL; in production, a subscriber that fell behind), what was
        published meanwhile is read from the history and delivered, in
        order, before what follows.
        """
        (a, ra), (b, rb) = self.engine(), self.engine()
        yield self.ready(a, b)
        yield self.listening(b, "c")
        yield a.publish("c", 1)
        yield eventually(lambda: ra.events == [] and rb.data == [1], "the first delivery")
        self.redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        for n in (2, 3, 4):
            yield a.publish("c", n)
        yield eventually(lambda: rb.data == [1, 2, 3, 4], "the missed publications")
        yield a.publish("c", 5)
        yield eventually(lambda: rb.data == [1, 2, 3, 4, 5], "the next publication")
        self.assertEqual([e[0] for e in rb.events], [1, 2, 3, 4, 5])

    @inlineCallbacks
    def test_redisRestarted(self) -> None:
        """
        While Redis is away, publishing fails with ChannelsUnavailable and
        the broker is told; when it is back (without its data), the engine
        is connected again, and the subscribers are told to resync: the
        channel starts a new epoch.
        """
        (a, ra), (b, rb) = self.engine(), self.engine()
        yield self.ready(a, b)
        first = yield self.listening(b, "c")
        yield a.publish("c", 1)
        yield eventually(lambda: rb.data == [1], "the first delivery")
        self.redis.kill()
        yield eventually(lambda: not a.available, "the engine to see Redis gone")
        self.assertEqual(ra.available, [True, False])
        yield self.assertFailure(a.publish("c", 2), ChannelsUnavailable)
        yield self.assertFailure(a.history("c"), ChannelsUnavailable)
        self.redis.start()
        yield self.ready(a, b)
        self.assertEqual(ra.available, [True, False, True])
        yield eventually(lambda: rb.events[-1:] == [("resync", 0, NEW_EPOCH)], "the resync")
        publication = yield a.publish("c", 3)
        self.assertNotEqual(publication.epoch, first.epoch)
        self.assertEqual(publication.offset, 1)
        yield eventually(lambda: rb.data == [1, 3], "the publication after")

    @inlineCallbacks
    def test_epochLost(self) -> None:
        """
        A channel whose keys were lost in Redis (expired, or deleted) while
        a process listens starts a new epoch; that process's subscribers
        are told to resync from its start, then get all its publications.
        """
        (a, _), (b, rb) = self.engine(), self.engine()
        yield self.ready(a, b)
        yield self.listening(b, "c")
        yield a.publish("c", 1)
        self.redis.command("DEL", "jsonproto:channel:{c}")
        yield a.publish("c", 2)
        yield eventually(lambda: len(rb.events) == 3, "the deliveries")
        self.assertEqual(rb.events, [(1, 1), ("resync", 0, NEW_EPOCH), (1, 2)])

    @inlineCallbacks
    def test_historyGone(self) -> None:
        """
        When what a process missed has already left the history, its
        subscribers are told to resync, from the channel's offset now.
        """
        (a, _), (b, rb) = self.engine(size=2), self.engine(size=2)
        yield self.ready(a, b)
        yield self.listening(b, "c")
        self.redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        for n in range(5):
            yield a.publish("c", n)
        yield eventually(lambda: rb.events == [("resync", 5, HISTORY_GONE)], "the resync")

    @inlineCallbacks
    def test_offsetsWentBack(self) -> None:
        """
        Redis restarted from an older copy of its data: the offsets of a
        channel went back under its epoch.  The channel starts a new
        epoch, so that no client takes the publications that follow for
        those it has; the subscribers are told to resync.
        """
        (a, _), (b, rb) = self.engine(), self.engine()
        yield self.ready(a, b)
        yield self.listening(b, "c")
        first = yield a.publish("c", 1)
        self.assertEqual(self.redis.command("SAVE"), b"+OK\r\n")
        yield a.publish("c", 2)
        yield eventually(lambda: rb.data == [1, 2], "the deliveries")
        self.redis.kill()
        self.redis.start()
        yield eventually(lambda: rb.events[-1:] == [("resync", 0, NEW_EPOCH)], "the resync")
        # By now both have seen Redis go (b has connected again since): a
        # connects again on its own backoff.
        yield self.ready(a, b)
        after = yield a.publish("c", 3)
        self.assertNotEqual(after.epoch, first.epoch)

    @inlineCallbacks
    def test_unlisten(self) -> None:
        """
        A process with no subscriber left to a channel gets no more of its
        publications.
        """
        (a, _), (b, rb) = self.engine(), self.engine()
        yield self.ready(a, b)
        yield self.listening(b, "c")
        yield self.listening(b, "d")
        b.unlisten("c")
        yield a.publish("c", 1)
        yield a.publish("d", 2)
        yield eventually(lambda: rb.data == [2], "the other channel's delivery")
        self.assertEqual(rb.data, [2])


class BrokerResyncTests(SynchronousTestCase):
    """
    What a broker tells its subscribers when the engine says they must
    resync.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        dispatcher = defaultDispatcher()
        self.broker = Broker(MemoryEngine(self.clock, seconds=0), self.clock)
        messages.register(dispatcher, self.broker)
        self.factory = JSONServerFactory(dispatcher, limits=Limits(idleTimeout=0, sendTimeout=0), clock=self.clock)

    def send(self, proto: Any, transport: Any, message: Any) -> list[Any]:
        proto.dataReceived(line(message))
        self.clock.advance(0)
        got = readLines(transport.value())
        transport.clear()
        return got

    def test_resyncPush(self) -> None:
        """
        Each subscriber of the channel gets a RESYNC message with the
        channel's epoch and offset now and why; publications follow.
        """
        sub, ts = connect(self.factory)
        other, to = connect(self.factory, port=40001)
        self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "c"})
        self.send(other, to, {"type": "SUBSCRIBE", "channel": "d"})
        self.broker.resync("c", "e2", 7, NEW_EPOCH)
        self.clock.advance(0)
        self.assertEqual(readLines(ts.value()), [{"type": "RESYNC", "channel": "c", "epoch": "e2", "offset": 7, "reason": NEW_EPOCH}])
        self.assertEqual(to.value(), b"")

    def test_subscribeUnavailable(self) -> None:
        """
        A SUBSCRIBE while the engine cannot say where the channel is gets
        channels_unavailable, and leaves the connection unsubscribed.
        """
        from twisted.internet.defer import fail

        self.patch(self.broker.engine, "history", lambda channel: fail(ChannelsUnavailable()))
        sub, ts = connect(self.factory)
        [reply] = self.send(sub, ts, {"type": "SUBSCRIBE", "channel": "c", "id": 1})
        self.assertEqual((reply["status"], reply["code"]), ("ERROR", "channels_unavailable"))
        self.assertEqual(self.broker.counts()["subscriptions"], 0)


class OptionsTests(SynchronousTestCase):
    def parse(self, *arguments: str) -> Options:
        config = Options()
        config.parseOptions(list(arguments))
        return config

    def test_redisOptions(self) -> None:
        """
        --redis takes a client endpoint string and is for --channels;
        --channels with --workers needs it, and says so in one line.
        """
        config = self.parse("--channels", "--redis", "unix:/run/redis/redis.sock", "--redis-prefix", "app1:")
        self.assertEqual((config["redis"], config["redis-prefix"]), ("unix:/run/redis/redis.sock", "app1:"))
        self.assertEqual(self.parse("--channels", "--workers", "2", "--redis", "tcp:127.0.0.1:6379")["workers"], 2)
        for arguments, phrase in [
            (["--channels", "--workers", "2"], "--channels with --workers needs --redis ENDPOINT"),
            (["--channels", "--redis", "tcp:localhost"], "is not a client endpoint description"),
            (["--redis", "tcp:127.0.0.1:6379"], "give --channels too"),
            (["--channels", "--redis", "tcp:127.0.0.1:1", "--redis-prefix", "a b"], "--redis-prefix must be"),
        ]:
            e = self.assertRaises(usage.UsageError, self.parse, *arguments)
            self.assertIn(phrase, str(e))
            self.assertNotIn("\n", str(e))


class Peer:
    """
    A client of a daemon, on a blocking socket: replies and pushes in the
    order they come.
    """

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.lines = self.socket.makefile("rb")
        self.pushed: list[dict[str, Any]] = []
        self.ids = 0

    def close(self) -> None:
        self.lines.close()
        self.socket.close()

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """
        Send C{message} and return its reply; pushes meanwhile are kept.
        """
        self.ids += 1
        self.socket.sendall(json.dumps(dict(message, id=self.ids)).encode() + b"\n")
        while True:
            received = self.read()
            if received.get("id") == self.ids:
                return received
            self.pushed.append(received)

    def read(self) -> dict[str, Any]:
        data = self.lines.readline()
        if not data:
            raise AssertionError("the daemon closed the connection")
        return json.loads(data)

    def publications(self, count: int) -> list[dict[str, Any]]:
        """
        The next C{count} pushes (with any kept already).
        """
        while len(self.pushed) < count:
            self.pushed.append(self.read())
        taken, self.pushed = self.pushed[:count], self.pushed[count:]
        return taken


class DaemonTests(SynchronousTestCase):
    """
    Real daemons (twistd processes) sharing the test's redis-server.
    """

    def setUp(self) -> None:
        self.redis = RedisServer(self)

    def daemon(self, *options: str, port: int = 0, ports: int = 1) -> tuple[subprocess.Popen[bytes], int]:
        """
        Start C{twistd jsonproto --channels --redis ...}; return it and its
        port once C{ports} listeners (one per worker) have started.
        """
        from tests.test_twistd import readUntil

        process = twistd(
            "-n", "--pidfile=", "jsonproto", "--channels", "--redis", self.redis.endpoint,
            "--port", f"tcp:{port}:interface=127.0.0.1", "--handlers", "tests.peerhandlers", *options,
        )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=DEADLINE)
            log = daemonLog(process)
            os.unlink(process.logPath)  # type: ignore[attr-defined]
            # Nothing crashed meanwhile.
            self.assertNotIn(b"Traceback", log, log.decode(errors="replace"))

        self.addCleanup(stop)
        for _ in range(ports):
            found = int(readUntil(process, rb"JSONServerFactory starting on (\d+)", DEADLINE).group(1))
        return process, port or found

    def peer(self, port: int) -> Peer:
        peer = Peer(port)
        self.addCleanup(peer.close)
        return peer

    def test_acrossDaemonsAndWorkers(self) -> None:
        """
        A publication on one daemon reaches the subscribers of another
        daemon and of both --workers processes of a third, each with the
        same offset and epoch as its publisher was told.
        """
        _, one = self.daemon()
        _, two = self.daemon()
        _, workers = self.daemon("--workers", "2", port=freePort(), ports=2)
        subscribers = [self.peer(two)]
        seen: set[int] = set()
        for _ in range(60):  # the kernel spreads connections over the workers
            peer = Peer(workers)
            pid = peer.ask({"type": "PID"})["pid"]
            if pid in seen:
                peer.close()
                continue
            seen.add(pid)
            self.addCleanup(peer.close)
            subscribers.append(peer)
            if len(seen) == 2:
                break
        self.assertEqual(len(subscribers), 3, "no connection reached the second worker")
        for subscriber in subscribers:
            self.assertEqual(subscriber.ask({"type": "SUBSCRIBE", "channel": "room:1"})["status"], "OK")
        publishers = [self.peer(one), subscribers[1], self.peer(workers)]
        published = [publishers[n % 3].ask({"type": "PUBLISH", "channel": "room:1", "data": {"n": n}}) for n in range(6)]
        self.assertEqual([p["offset"] for p in published], [1, 2, 3, 4, 5, 6])
        self.assertEqual(len({p["epoch"] for p in published}), 1)
        expected = [
            {"type": "PUBLICATION", "channel": "room:1", "data": {"n": n}, "offset": p["offset"], "epoch": p["epoch"]}
            for n, p in enumerate(published)
        ]
        for subscriber in subscribers:
            self.assertEqual(subscriber.publications(6), expected)

    def test_redisGoesAwayAndComesBack(self) -> None:
        """
        Redis killed, then started again on the same port (from its
        append-only file): meanwhile PUBLISH gets channels_unavailable and
        the daemons keep serving; once it is back, publishing goes on
        under the same epoch, subscribers keep receiving, and one that
        had lost its connection resumes with what it missed from before
        the stop.
        """
        self.redis.kill()
        self.redis = RedisServer(self, durable=True)
        _, one = self.daemon()
        _, two = self.daemon()
        subscriber, leaving, publisher = self.peer(two), self.peer(one), self.peer(one)
        epoch = subscriber.ask({"type": "SUBSCRIBE", "channel": "news"})["epoch"]
        leaving.ask({"type": "SUBSCRIBE", "channel": "news"})
        self.assertEqual(publisher.ask({"type": "PUBLISH", "channel": "news", "data": 1})["offset"], 1)
        self.assertEqual(leaving.publications(1)[0]["data"], 1)
        leaving.close()
        self.assertEqual(publisher.ask({"type": "PUBLISH", "channel": "news", "data": 2})["offset"], 2)
        self.assertEqual([p["data"] for p in subscriber.publications(2)], [1, 2])

        self.redis.kill()
        reply = publisher.ask({"type": "PUBLISH", "channel": "news", "data": "lost"})
        self.assertEqual((reply["status"], reply["code"]), ("ERROR", "channels_unavailable"))
        self.assertEqual(self.peer(two).ask({"type": "SUBSCRIBE", "channel": "other"})["code"], "channels_unavailable")
        self.assertEqual(self.peer(one).ask({"type": "SUM", "a": 1, "b": 2})["result"], 3)

        self.redis.start()
        deadline = time.monotonic() + DEADLINE
        while (reply := publisher.ask({"type": "PUBLISH", "channel": "news", "data": 3}))["status"] != "OK":
            self.assertEqual(reply["code"], "channels_unavailable")
            self.assertLess(time.monotonic(), deadline, "PUBLISH kept failing with Redis back")
            time.sleep(0.05)
        self.assertEqual((reply["offset"], reply["epoch"]), (3, epoch))
        self.assertEqual(subscriber.publications(1), [{"type": "PUBLICATION", "channel": "news", "data": 3, "offset": 3, "epoch": epoch}])
        back = self.peer(one)
        reply = back.ask({"type": "SUBSCRIBE", "channel": "news", "since": {"offset": 1, "epoch": epoch}})
        self.assertEqual((reply["recovered"], reply["replayed"]), (True, 2))
        self.assertEqual([(p["offset"], p["data"]) for p in back.publications(2)], [(2, 2), (3, 3)])

    def test_redisLostItsData(self) -> None:
        """
        Redis killed and started again empty: a subscriber of another
        daemon (the blocking client library, connected all along) is told
        to resync, with a Resync event, then gets the publications of the
        channel's new epoch.
        """
        from jsonproto.client import Publication as Received
        from jsonproto.client import Resync, Subscriber

        _, one = self.daemon()
        _, two = self.daemon()
        publisher = self.peer(one)
        with Subscriber("127.0.0.1", two) as subscriber:
            epoch = subscriber.subscribe("news")["epoch"]
            publisher.ask({"type": "PUBLISH", "channel": "news", "data": 1})
            self.assertEqual(subscriber.nextEvent(DEADLINE), Received("news", 1, 1, epoch))
            self.redis.kill()
            self.redis.start()
            deadline = time.monotonic() + DEADLINE
            while (reply := publisher.ask({"type": "PUBLISH", "channel": "news", "data": 2}))["status"] != "OK":
                self.assertLess(time.monotonic(), deadline, "PUBLISH kept failing with Redis back")
                time.sleep(0.05)
            self.assertNotEqual(reply["epoch"], epoch)
            self.assertEqual(subscriber.nextEvent(DEADLINE), Resync("news", reply["epoch"], 0, NEW_EPOCH))
            self.assertEqual(subscriber.nextEvent(DEADLINE), Received("news", 2, 1, reply["epoch"]))


class ClientResyncTests(SynchronousTestCase):
    def test_resyncPushed(self) -> None:
        """
        Both client libraries hand a RESYNC push on as a Resync event, and
        carry on from its epoch and offset: the next publication is handed
        on, and a new connection resumes from there.
        """
        from jsonproto.client.resume import Positions, Resync
        from jsonproto.client.resume import Publication as Received

        positions = Positions()
        positions.want("c")
        positions.subscribed("c", {"status": "OK", "offset": 4, "epoch": "e1"})
        resync = {"type": "RESYNC", "channel": "c", "epoch": "e2", "offset": 0, "reason": NEW_EPOCH}
        self.assertEqual(positions.pushed(resync), [Resync("c", "e2", 0, NEW_EPOCH)])
        self.assertEqual(positions.position("c"), ("e2", 0))
        publication = {"type": "PUBLICATION", "channel": "c", "data": 1, "offset": 1, "epoch": "e2"}
        self.assertEqual(positions.pushed(publication), [Received("c", 1, 1, "e2")])
