"""
What operators see: Prometheus metrics scraped from a live daemon after
known traffic, and the STATS message.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from jsonproto.channels import messages
from jsonproto.channels.broker import Broker
from jsonproto.channels.engine import MemoryEngine
from jsonproto.daemon.metrics import ChannelsCollector
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from tests.e2e import exchange, lines, startDaemon
from tests.support import connectBuffering, line, readLines

LOCAL = "tcp:0:interface=127.0.0.1"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


class MetricsTests(TestCase):
    @inlineCallbacks
    def test_scrapeMatchesTraffic(self) -> None:
        """
        After a known exchange, every counter says exactly what happened.
        """
        service, [port, metricsPort] = yield startDaemon(self, "--port", LOCAL, "--metrics", LOCAL)
        sent = (
            line({"type": "SUM", "a": 1, "b": 2}) * 2
            + line({"type": "SUM", "a": "1", "b": 2})
            + line({"type": "NOPE"}) * 2
            + b"not json\n"
            + line({"type": "GREETING", "name": "M"})
        )
        received = yield exchange(f"tcp:127.0.0.1:{port}", sent, lines(7))
        yield service.connections.whenEmpty()
        body = yield readBody((yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{metricsPort}/metrics".encode())))
        got = samples(body.decode())
        expected: dict[Any, float] = {
            ("jsonproto_connections_total", ()): 1,
            ("jsonproto_connections_active", ()): 0,
            ("jsonproto_messages_received_total", ()): 7,
            ("jsonproto_messages_sent_total", ()): 7,
            ("jsonproto_bytes_received_total", ()): len(sent),
            ("jsonproto_bytes_sent_total", ()): len(received),
            ("jsonproto_replies_total", (("status", "OK"),)): 3,
            ("jsonproto_replies_total", (("status", "ERROR"),)): 4,
            ("jsonproto_request_errors_total", (("type", "SUM"),)): 1,
            ("jsonproto_request_errors_total", (("type", "GREETING"),)): 0,
            ("jsonproto_request_errors_total", (("type", "(unknown)"),)): 2,
            ("jsonproto_error_replies_total", (("code", "invalid_field"),)): 1,
            ("jsonproto_error_replies_total", (("code", "unknown_type"),)): 2,
            ("jsonproto_error_replies_total", (("code", "invalid_json"),)): 1,
            ("jsonproto_messages_dispatched_total", (("type", "SUM"),)): 3,
            ("jsonproto_messages_dispatched_total", (("type", "GREETING"),)): 1,
            ("jsonproto_messages_dispatched_total", (("type", "(unknown)"),)): 2,
        }
        for key, value in expected.items():
            self.assertEqual(got.get(key), value, key)
        self.assertEqual(len(readLines(received)), 7)

    @inlineCallbacks
    def test_refusalsAndCloses(self) -> None:
        """
        Refused connections are counted by reason, server closes by kind.
        """
        service, [port, metricsPort] = yield startDaemon(
            self, "--port", LOCAL, "--metrics", LOCAL, "--max-connections", "1", "--max-errors", "1",
        )
        # Two bad messages in a row: told, then closed.
        yield exchange(f"tcp:127.0.0.1:{port}", line({"type": "NOPE"}) * 2, lambda d: False)
        yield service.connections.whenEmpty()
        body = yield readBody((yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{metricsPort}/metrics".encode())))
        got = samples(body.decode())
        self.assertEqual(got[("jsonproto_server_closes_total", (("reason", "too_many_errors"),))], 1)
        self.assertEqual(got[("jsonproto_error_replies_total", (("code", "unknown_type"),))], 2)


    @inlineCallbacks
    def test_asyncLatency(self) -> None:
        """
        Every call of an asynchronous handler is timed into its histogram.
        """
        service, [port, metricsPort] = yield startDaemon(
            self, "--port", LOCAL, "--metrics", LOCAL, "--handlers", "tests.slowhandlers",
        )
        yield exchange(f"tcp:127.0.0.1:{port}", line({"type": "SLOW", "seconds": 0.05}) * 2, lines(2))
        yield service.connections.whenEmpty()
        body = yield readBody((yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{metricsPort}/metrics".encode())))
        got = samples(body.decode())
        self.assertEqual(got[("jsonproto_handler_seconds_count", (("type", "SLOW"),))], 2)
        self.assertEqual(got[("jsonproto_handler_seconds_bucket", (("le", "0.01"), ("type", "SLOW")))], 0)
        self.assertEqual(got[("jsonproto_handler_seconds_bucket", (("le", "0.5"), ("type", "SLOW")))], 2)
        self.assertGreaterEqual(got[("jsonproto_handler_seconds_sum", (("type", "SLOW"),))], 0.1)


@inlineCallbacks
def scrape(metricsPort: int) -> Any:
    response = yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{metricsPort}/metrics".encode())
    return samples((yield readBody(response)).decode())


class _Stalled:
    """
    Plain-socket clients of a channels daemon, run in a thread: a reader
    and a subscriber that never reads subscribe to C{news}, and a publisher
    publishes publications of C{size} bytes to it, one at a time, each once
    the reader has it (so that only the stalled one falls behind), until
    C{enough()} says so.
    """

    def __init__(self, port: int, enough: Any, size: int = 65536, most: int = 1000) -> None:
        self.port = port
        self.enough = enough
        self.size = size
        self.most = most
        self.published = 0
        self.stalled = socket.socket()
        # A small receive window: the daemon's buffers fill sooner.
        self.stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.stalled.settimeout(10)
        self.files: list[Any] = [self.stalled]

    def _subscribe(self, s: socket.socket, *channels: str) -> Any:
        s.sendall(b"".join(line({"type": "SUBSCRIBE", "channel": c}) for c in channels))
        stream = s.makefile("rb")
        self.files.append(stream)
        for _ in channels:
            assert json.loads(stream.readline())["status"] == "OK"
        return stream

    def run(self) -> list[Any]:
        """
        @return: The offsets of the publications the reader received.
        """
        reader = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        publisher = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.files += [reader, publisher]
        self.stalled.connect(("127.0.0.1", self.port))
        readerIn = self._subscribe(reader, "news")
        self.stalledIn = self._subscribe(self.stalled, "news", "other")
        publisherIn = publisher.makefile("rb")
        self.files.append(publisherIn)
        publish = line({"type": "PUBLISH", "channel": "news", "data": "x" * self.size})
        received = []
        while self.published < self.most and not self.enough():
            publisher.sendall(publish)
            reply = json.loads(publisherIn.readline())
            assert reply["status"] == "OK", reply
            self.published += 1
            received.append(json.loads(readerIn.readline())["offset"])
        return received

    def readAll(self) -> list[Any]:
        """
        The stalled subscriber reads at last: everything it was sent.
        """
        messages = []
        while len(messages) <= self.published:
            messages.append(json.loads(self.stalledIn.readline()))
            if messages[-1].get("offset") == self.published:
                break
        return messages

    def close(self) -> None:
        for f in reversed(self.files):
            f.close()
        self.files = []


def brokerOf(service: Any) -> Any:
    [channels] = [child for child in service if hasattr(child, "broker")]
    return channels.broker


class ChannelMetricsTests(TestCase):
    """
    The channels' metrics of a live daemon, after known traffic with one
    subscriber that does not read.
    """

    timeout = 60

    @inlineCallbacks
    def test_slowSubscriberDisconnected(self) -> None:
        """
        Publications in and deliveries out are counted, and so is the
        subscriber disconnected for falling behind; once it has gone the
        gauges count only who is left, and nothing waits.
        """
        service, [port, metricsPort] = yield startDaemon(
            self, "--port", LOCAL, "--metrics", LOCAL, "--channels", "--max-queued-bytes", "200000",
        )
        broker = brokerOf(service)
        clients = _Stalled(port, lambda: broker.slowDisconnects)
        self.addCleanup(clients.close)
        received = yield deferToThread(clients.run)
        published = clients.published
        self.assertEqual(received, list(range(1, published + 1)))
        got = yield scrape(metricsPort)
        self.assertEqual(got[("jsonproto_channels_slow_disconnects_total", ())], 1)
        self.assertEqual(got[("jsonproto_server_closes_total", (("reason", "slow_subscriber"),))], 1)
        self.assertEqual(got[("jsonproto_channels_publications_total", ())], published)
        self.assertEqual(got[("jsonproto_channels_publications_received_total", ())], published)
        # The reader's, and the stalled one's until it fell behind.
        self.assertGreater(got[("jsonproto_channels_deliveries_total", ())], published)
        self.assertLessEqual(got[("jsonproto_channels_deliveries_total", ())], 2 * published)
        self.assertEqual(got[("jsonproto_channels_dropped_total", ())], 0)
        self.assertEqual(got[("jsonproto_channels_engine_available", ())], 1)
        self.assertNotIn(("jsonproto_channels_engine_reconnects_total", ()), got)
        clients.close()
        for _ in range(100):
            got = yield scrape(metricsPort)
            if got[("jsonproto_channels_subscribers", ())] == 0:
                break
            yield deferLater(reactor, 0.05)
        self.assertEqual(got[("jsonproto_channels_subscribers", ())], 0)
        self.assertEqual(got[("jsonproto_channels_active", ())], 0)
        self.assertEqual(got[("jsonproto_channels_subscriptions", ())], 0)
        self.assertEqual(got[("jsonproto_channels_queued_bytes", ())], 0)
        self.assertEqual(got[("jsonproto_channels_slow_disconnects_total", ())], 1)

    @inlineCallbacks
    def test_slowSubscriberDrops(self) -> None:
        """
        Under the drop policy, the subscriber that does not read shows as
        slow, with its publications waiting (within the bound) and those
        dropped counted: as many as it is told it missed when it reads.
        """
        service, [port, metricsPort] = yield startDaemon(
            self, "--port", LOCAL, "--metrics", LOCAL, "--channels", "--max-queued-bytes", "200000", "--slow-subscriber", "drop",
        )
        broker = brokerOf(service)
        clients = _Stalled(port, lambda: broker.tally.dropped >= 3)
        self.addCleanup(clients.close)
        yield deferToThread(clients.run)
        published = clients.published
        got = yield scrape(metricsPort)
        self.assertEqual(got[("jsonproto_channels_active", ())], 2)
        self.assertEqual(got[("jsonproto_channels_subscriptions", ())], 3)
        self.assertEqual(got[("jsonproto_channels_subscribers", ())], 2)
        self.assertEqual(got[("jsonproto_channels_slow_subscribers", ())], 1)
        self.assertGreater(got[("jsonproto_channels_queued_bytes", ())], 0)
        self.assertLessEqual(got[("jsonproto_channels_queued_bytes", ())], 200000)
        self.assertEqual(got[("jsonproto_channels_deliveries_total", ())], 2 * published)
        self.assertEqual(got[("jsonproto_channels_slow_disconnects_total", ())], 0)
        dropped = got[("jsonproto_channels_dropped_total", ())]
        self.assertGreaterEqual(dropped, 3)
        messages = yield deferToThread(clients.readAll)
        [missed] = [m for m in messages if m["type"] == "MISSED"]
        self.assertEqual(missed["count"], dropped)
        self.assertEqual(len(messages) - 1 + dropped, published)
        got = yield scrape(metricsPort)
        self.assertEqual(got[("jsonproto_channels_slow_subscribers", ())], 0)
        self.assertEqual(got[("jsonproto_channels_queued_bytes", ())], 0)


class ChannelsCollectorTests(SynchronousTestCase):
    def collect(self, broker: Broker) -> dict[Any, float]:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(ChannelsCollector(broker))  # type: ignore[arg-type]
        return samples(generate_latest(registry).decode())

    def test_queuedForSlowOnly(self) -> None:
        """
        The queued bytes and slow subscribers are those of subscribers whose
        connections cannot take more, not the publications of this turn
        that wait for its end to be written to subscribers that keep up.
        """
        clock = Clock()
        dispatcher = defaultDispatcher()
        broker = Broker(MemoryEngine(clock), clock)
        messages.register(dispatcher, broker)
        factory = JSONServerFactory(dispatcher, limits=Limits(idleTimeout=0, sendTimeout=0), clock=clock)
        fast, fastTransport = connectBuffering(factory)
        slow, slowTransport = connectBuffering(factory, port=40001)
        slowTransport.bufferSize = 1000
        for proto in (fast, slow):
            proto.dataReceived(line({"type": "SUBSCRIBE", "channel": "c"}))
        clock.advance(0)
        fastTransport.peerReads()
        for n in range(5):
            broker.publish("c", "x" * 500)
            clock.advance(0)
            fastTransport.peerReads()
        # Scraped in the turn of a publication, before it is written.
        broker.publish("c", "x" * 500)
        got = self.collect(broker)
        self.assertEqual(got[("jsonproto_channels_slow_subscribers", ())], 1)
        self.assertEqual(got[("jsonproto_channels_queued_bytes", ())], broker._members[slow.info.id].outbox.queuedBytes)
        self.assertEqual(broker.counts()["queuedBytes"], got[("jsonproto_channels_queued_bytes", ())])
        self.assertGreater(got[("jsonproto_channels_queued_bytes", ())], 0)
        clock.advance(0)
        # It reads again, and keeps up.
        slowTransport.bufferSize = 64 * 1024
        slowTransport.peerReads()
        broker.publish("c", "x" * 500)
        self.assertEqual(self.collect(broker)[("jsonproto_channels_queued_bytes", ())], 0)

    def test_engineLink(self) -> None:
        """
        The engine's link is read from its C{available} attribute, and its
        C{reconnects} count where it has one: an operator sees Redis down,
        and how often it came back.
        """
        engine = MemoryEngine(Clock())
        broker = Broker(engine, Clock())
        engine.available = False  # type: ignore[misc]
        engine.reconnects = 3  # type: ignore[attr-defined]
        got = self.collect(broker)
        self.assertEqual(got[("jsonproto_channels_engine_available", ())], 0)
        self.assertEqual(got[("jsonproto_channels_engine_reconnects_total", ())], 3)


class StatsTests(TestCase):
    @inlineCallbacks
    def test_stats(self) -> None:
        """
        With --enable-stats, STATS answers with uptime, connections and
        traffic; without it, STATS is an unknown type.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL, "--enable-stats")
        received = yield exchange(f"tcp:127.0.0.1:{port}", line({"type": "SUM", "a": 1, "b": 1}) + line({"type": "STATS", "id": 9}), lines(2))
        stats = readLines(received)[1]
        self.assertEqual((stats["status"], stats["id"]), ("OK", 9))
        self.assertEqual(stats["connections"], {"active": 1, "accepted": 1, "refused": 0})
        self.assertEqual(stats["messages"]["received"], 2)
        self.assertGreaterEqual(stats["uptime"], 0)
        _, [plain] = yield startDaemon(self, "--port", LOCAL)
        received = yield exchange(f"tcp:127.0.0.1:{plain}", line({"type": "STATS"}), lines(1))
        self.assertEqual(readLines(received)[0]["code"], "unknown_type")
