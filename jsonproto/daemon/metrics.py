"""
What the daemon has been doing, for operators: Prometheus metrics over
HTTP (C{--metrics}), and the C{STATS} message type (C{--enable-stats}).

The counters themselves live where the work happens, as plain integers
(L{ConnectionRegistry} for connections, traffic and errors,
L{jsonproto.dispatch.dispatcher.HandlerLatency} for messages by type,
L{jsonproto.channels.broker.Broker} for channels); nothing here runs per
message.  A scrape reads them and builds the metric families.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from jsonproto.channels.broker import Broker
from jsonproto.server.registry import ConnectionRegistry
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.latency import INVALID, LATENCY_BUCKETS, UNKNOWN


class JSONProtoCollector:
    """
    A prometheus_client collector reading a service's counters at scrape
    time.  Labels are bounded: message types are the registered ones plus
    C{(unknown)} and C{(invalid)}; codes and close kinds are jsonproto's
    own (and those of the handlers' error codes).
    """

    def __init__(self, connections: ConnectionRegistry, dispatcher: Dispatcher) -> None:
        self.connections = connections
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        c = self.connections
        totals = c.totals()
        yield GaugeMetricFamily("jsonproto_connections_active", "Connections open now.", value=len(c))
        yield CounterMetricFamily("jsonproto_connections", "Connections accepted.", value=c.accepted)
        refused = CounterMetricFamily("jsonproto_connections_refused", "Connections refused by a limit.", labels=["reason"])
        for code, count in sorted(c.refusedBy.items()):
            refused.add_metric([code], count)
        yield refused
        closes = CounterMetricFamily(
            "jsonproto_server_closes",
            "Connections the server closed, by reason (peer_finished: after the client shut down its side).",
            labels=["reason"],
        )
        for kind, count in sorted(c.closedBy.items()):
            closes.add_metric([kind], count)
        yield closes
        yield CounterMetricFamily("jsonproto_messages_received", "Messages received.", value=totals["messagesIn"])
        yield CounterMetricFamily("jsonproto_messages_sent", "Replies sent.", value=totals["messagesOut"])
        yield CounterMetricFamily("jsonproto_bytes_received", "Bytes received.", value=totals["bytesIn"])
        yield CounterMetricFamily("jsonproto_bytes_sent", "Bytes sent.", value=totals["bytesOut"])
        yield CounterMetricFamily(
            "jsonproto_backpressure_pauses", "Times reading from a connection was paused.", value=totals["pauses"]
        )
        errorCount = sum(c.errorReplies.values())
        replies = CounterMetricFamily("jsonproto_replies", "Replies sent, by status.", labels=["status"])
        replies.add_metric(["OK"], totals["messagesOut"] - errorCount)
        replies.add_metric(["ERROR"], errorCount)
        yield replies
        errors = CounterMetricFamily("jsonproto_error_replies", "Error replies, by code.", labels=["code"])
        for code, count in sorted(c.errorReplies.items()):
            errors.add_metric([code], count)
        yield errors
        latency = self.dispatcher.latency
        counts = latency.counts
        byType = CounterMetricFamily("jsonproto_messages_dispatched", "Messages dispatched, by type.", labels=["type"])
        for messageType, count in sorted(counts.items()):
            byType.add_metric([messageType], count)
        yield byType
        failed = CounterMetricFamily(
            "jsonproto_request_errors", "Requests answered with an error, by type.", labels=["type"]
        )
        for messageType in sorted(counts):
            if messageType in (UNKNOWN, INVALID):
                failed.add_metric([messageType], counts[messageType])
            else:
                failed.add_metric([messageType], latency.errors.get(messageType, 0))
        yield failed
        histogram = HistogramMetricFamily(
            "jsonproto_handler_seconds", "How long handlers took, by message type.", labels=["type"]
        )
        for messageType, buckets in sorted(latency.buckets.items()):
            cumulative, points = 0, []
            for bound, count in zip([*LATENCY_BUCKETS, float("inf")], buckets):
                cumulative += count
                points.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            histogram.add_metric([messageType], points, latency.sums[messageType])
        yield histogram


class CertificateExpiryCollector:
    """
    When each TLS listener's certificate expires, so that an alert can
    fire days before clients start refusing it.  Read at scrape time, so a
    certificate reloaded on SIGHUP shows at once.

    @ivar listeners: The daemon's listener services (each with a
        C{description} and an C{endpoint}); those whose endpoint has a
        C{certificateNotAfter} are TLS listeners.
    """

    def __init__(self, listeners: Iterable[Any]) -> None:
        self.listeners = listeners

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        expiry = GaugeMetricFamily(
            "jsonproto_tls_certificate_not_after_timestamp_seconds",
            "When the certificate a TLS listener serves expires, in seconds since the epoch.",
            labels=["listener"],
        )
        for listener in self.listeners:
            notAfter = getattr(getattr(listener, "endpoint", None), "certificateNotAfter", None)
            if notAfter is not None:
                expiry.add_metric([listener.description], notAfter)
        yield expiry


class ChannelsCollector:
    """
    The channels of a daemon (C{--channels}): channels, subscribers,
    publications in and deliveries out, and what the slow-subscriber
    policies did, read from the broker's counters at scrape time.

    No label names a channel: clients choose channel names, and a label
    per name would grow the metrics without bound.  Every figure is a total
    over the process's channels.

    The engine's link to where offsets and history live (Redis) is read
    from two attributes of the engine: C{available} (a bool, every engine
    has it: whether publishing can succeed now) and, for an engine that
    connects somewhere, C{reconnects} (an int: how many times its link was
    re-established after being lost), reported if the engine has it.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        broker = self.broker
        counts = broker.counts()
        yield GaugeMetricFamily("jsonproto_channels_active", "Channels with a subscriber in this process.", value=counts["channels"])
        yield GaugeMetricFamily("jsonproto_channels_subscriptions", "Subscriptions, all channels together.", value=counts["subscriptions"])
        yield GaugeMetricFamily("jsonproto_channels_subscribers", "Connections subscribed to at least one channel.", value=counts["subscribers"])
        yield GaugeMetricFamily(
            "jsonproto_channels_slow_subscribers",
            "Subscribers whose publications wait because they read too slowly (their transport is full).",
            value=counts["slowSubscribers"],
        )
        yield GaugeMetricFamily(
            "jsonproto_channels_queued_bytes",
            "Bytes of publications waiting for slow subscribers (each bounded by --max-queued-bytes).",
            value=counts["queuedBytes"],
        )
        yield CounterMetricFamily(
            "jsonproto_channels_publications", "Publications accepted from this process's clients and code.", value=broker.publications
        )
        yield CounterMetricFamily(
            "jsonproto_channels_publications_received",
            "Publications handed to this process to deliver (through Redis, those of every process).",
            value=broker.received,
        )
        yield CounterMetricFamily(
            "jsonproto_channels_deliveries", "Publications queued for a subscriber (one per subscriber).", value=broker.deliveries
        )
        yield CounterMetricFamily(
            "jsonproto_channels_dropped", "Publications dropped for slow subscribers (--slow-subscriber drop).", value=counts["dropped"]
        )
        yield CounterMetricFamily(
            "jsonproto_channels_slow_disconnects",
            "Subscribers disconnected for falling behind by more than --max-queued-bytes.",
            value=broker.slowDisconnects,
        )
        engine = broker.engine
        yield GaugeMetricFamily(
            "jsonproto_channels_engine_available",
            "1 when publishing can succeed (the link to Redis is up, or channels are in memory), else 0.",
            value=1 if engine.available else 0,
        )
        reconnects = getattr(engine, "reconnects", None)
        if reconnects is not None:
            yield CounterMetricFamily(
                "jsonproto_channels_engine_reconnects", "Times the link to Redis was re-established after being lost.", value=reconnects
            )


def metricsSite(connections: ConnectionRegistry, dispatcher: Dispatcher, listeners: Iterable[Any] = ()) -> Any:
    """
    A twisted.web site serving C{/metrics} in the Prometheus text format.

    Rendered in the reactor thread (prometheus_client's own resource goes
    through WSGI and a thread pool, and cannot serve a Unix socket).

    @param listeners: The listener services, for the TLS certificates'
        expiry (L{CertificateExpiryCollector}); iterated at each scrape.

    The channels' metrics (L{ChannelsCollector}) are served when the
    dispatcher has channels.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    registry = CollectorRegistry(auto_describe=False)
    registry.register(JSONProtoCollector(connections, dispatcher))
    registry.register(CertificateExpiryCollector(listeners))
    if isinstance(dispatcher.channels, Broker):
        registry.register(ChannelsCollector(dispatcher.channels))

    class Metrics(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
            return generate_latest(registry)

    root = Resource()
    root.putChild(b"metrics", Metrics())
    site = Site(root)
    site.noisy = False
    return site


def registerStats(dispatcher: Dispatcher, connections: ConnectionRegistry, clock: Any) -> None:
    """
    Add the C{STATS} message type: uptime, connections and traffic, so that
    a plain client (or a load balancer's health check) can see the daemon
    is alive and answering.
    """
    startedAt = clock.seconds()

    @dispatcher.handler("STATS")
    def stats(message: dict[str, Any], context: Any) -> dict[str, Any]:
        totals = connections.totals()
        return {
            "uptime": round(clock.seconds() - startedAt, 3),
            "connections": {"active": len(connections), "accepted": connections.accepted, "refused": connections.refused},
            "messages": {"received": totals["messagesIn"], "sent": totals["messagesOut"]},
            "bytes": {"received": totals["bytesIn"], "sent": totals["bytesOut"]},
            "errors": dict(connections.errorReplies),
        }
