"""
What operators see: Prometheus metrics scraped from a live daemon after
known traffic, and the STATS message.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from tests.e2e import exchange, lines, startDaemon
from tests.support import line, readLines

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
