"""
The channel scenarios: fan-out beside the Node peer (and with Redis), and
slow subscribers under each policy.
"""

from __future__ import annotations

import time
from typing import Any

from bench.daemon import NodeServer, Workers, freePort, jsonprotoChannels, pinToCpu, redisServer
from bench.fanoutload import fanoutLoad
from bench.measures import percentile, rssKiB


def _channelMetrics(port: int) -> dict[str, float]:
    """
    A daemon's channel metrics (and its closes by reason), scraped once.
    """
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith(("jsonproto_channels_", "jsonproto_server_closes_total")):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _label(sample: str) -> str:
    """
    The value of the one label of a sample's name: C{x{reason="idle"}}, C{idle}.
    """
    return sample.split('"')[1] if '"' in sample else sample


def _fanoutRow(name: str, run: dict[str, Any]) -> list[tuple[str, str]]:
    times = run["latencies"]
    latency = (
        f"{percentile(times, 50) * 1e3:,.1f} / {percentile(times, 99) * 1e3:,.1f}" if times else "-"
    ) + (f" ({run['undelivered']} of {run['steady']} not delivered to all)" if run["undelivered"] else "")
    bound = " (load-bound)" if run["server_cpu"] < 85 and run["load_cpu"] > 90 else ""
    return [
        (f"{name}: deliveries/s{bound}", f"{run['deliveries_per_s']:,.0f}"),
        (f"{name}: publications/s / server CPU, server waiting for a CPU, load CPU (%) / subscribers closed",
         f"{run['publications_per_s']:,.0f} / {run['server_cpu']:.0f}, {run['server_waiting']:.0f}, {run['load_cpu']:.0f} / {run['closed']}"),
        (f"{name}: publish-to-last-delivery p50 / p99 (ms) at {run['rate']:g} publications/s", latency),
    ]


def fanout(quick: bool, rounds: int = 2) -> list[tuple[str, str]]:
    """
    One publisher fanning out to 1,000 and to 10,000 subscribers of one
    channel: jsonproto (every limit on but the connection counts) beside
    bench/node_fanout.js, interleaved, C{rounds} times; then jsonproto with
    C{--workers 2} and Redis, when a redis-server is at hand and jsonproto
    has C{--redis}.

    Deliveries per second are measured with the publisher keeping 16
    publications in flight (as fast as the server answers); latency at a
    steady rate that either server keeps up with (100,000 deliveries/s).
    """
    rows: list[tuple[str, str]] = []
    seconds = 2.0 if quick else 4.0
    sizes = (1_000, 2_000) if quick else (1_000, 10_000)
    for subscribers in sizes:
        rate = 100_000 / subscribers
        figures: dict[str, list[float]] = {"jsonproto": [], "node": []}
        for round_ in range(1, rounds + 1):
            for kind in ("jsonproto", "node"):
                server = jsonprotoChannels() if kind == "jsonproto" else NodeServer()
                try:
                    pinToCpu(server.pid, 0)
                    run = fanoutLoad(server, subscribers, rate=rate, steady=seconds, window=16, saturate=seconds)
                finally:
                    server.stop()
                run["rate"] = rate
                figures[kind].append(run["deliveries_per_s"])
                label = "jsonproto --channels" if kind == "jsonproto" else "node_fanout.js"
                rows += _fanoutRow(f"fan-out to {subscribers:,}, {label}, round {round_}", run)
            rows.append((
                f"fan-out to {subscribers:,}, round {round_}: jsonproto / node deliveries/s",
                f"{figures['jsonproto'][-1] / figures['node'][-1]:.2f}x" if figures["node"][-1] else "-",
            ))
    redis = redisServer()
    if isinstance(redis, str):
        rows.append(("fan-out, --workers 2 with Redis", f"not run: {redis}"))
        return rows
    process, redisPort = redis
    try:
        for subscribers in sizes:
            rate = 100_000 / subscribers
            server = Workers(redisPort)
            try:
                run = fanoutLoad(server, subscribers, rate=rate, steady=seconds, window=16, saturate=seconds, pin=False)
            finally:
                server.stop()
            run["rate"] = rate
            rows += _fanoutRow(f"fan-out to {subscribers:,}, jsonproto --workers 2 --redis, unpinned", run)
    finally:
        process.terminate()
        process.wait()
    return rows


def _slowSubscribersRun(subscribers: int, stalled: int, policy: str, queued: int, seconds: float) -> dict[str, Any]:
    """
    One run of L{slowSubscribers}: the load's figures, the daemon's RSS and
    its channel metrics, scraped two seconds before the publisher stops.
    """
    metricsPort = freePort()
    daemon = jsonprotoChannels(
        "--max-queued-bytes", str(queued), "--slow-subscriber", policy, "--metrics", f"tcp:{metricsPort}:interface=127.0.0.1",
    )
    rss: dict[str, int] = {}
    scraped: dict[str, dict[str, float]] = {}

    def watch(elapsed: float) -> None:
        now = rssKiB(daemon.pid)
        rss.setdefault("before", now)
        rss["peak"] = max(rss.get("peak", 0), now)
        if elapsed < seconds:
            rss["during"] = now
        if elapsed >= seconds - 2 and "during" not in scraped:
            scraped["during"] = _channelMetrics(metricsPort)

    try:
        pinToCpu(daemon.pid, 0)
        run = fanoutLoad(daemon, subscribers, stalled=stalled, rate=10, steady=seconds, pad=4000, watch=watch)
        # The disconnected ones are let go after the close grace period (5 s).
        time.sleep(6)
        rss["after"] = rssKiB(daemon.pid)
        scraped["after"] = _channelMetrics(metricsPort)
    finally:
        daemon.stop()
    return {**run, "rss": rss, "metrics": scraped}


def slowSubscribers(quick: bool) -> list[tuple[str, str]]:
    """
    10,000 subscribers of one channel, 10 of which never read, while a
    publisher publishes 10 publications of 4 KB a second: the 9,990 must
    keep receiving every publication at that rate, and the daemon's memory
    must stay within what the bounds allow, under each slow-subscriber
    policy.  A run with no stalled subscriber gives the growth of the
    daemon's memory that is not theirs (the channel's history, the
    allocator).

    The expected bound on the rest: for each stalled subscriber, its
    outbox (C{--max-queued-bytes}; the frames are shared with every other
    subscriber's, so this counts them more than once) and its transport's
    buffer (64 KiB before it pauses the outbox, plus the one write that
    took it past that: one turn's publications, a publication or two here).
    The kernel's socket buffers are not the daemon's RSS.
    """
    subscribers, stalled = (2_000, 4) if quick else (10_000, 10)
    queued = 256 * 1024
    seconds = 12 if quick else 30
    control = _slowSubscribersRun(subscribers, 0, "disconnect", queued, seconds)
    baseline = (control["rss"]["peak"] - control["rss"]["before"]) * 1024
    bound = stalled * (queued + 64 * 1024 + 2 * 4096)
    readers = subscribers - stalled
    rows: list[tuple[str, str]] = [(
        f"slow subscribers: none of {subscribers:,} stalled (the control): daemon RSS before / peak / after (MiB)",
        f"{control['rss']['before'] / 1024:.1f} / {control['rss']['peak'] / 1024:.1f} / {control['rss']['after'] / 1024:.1f}",
    )]
    for policy in ("disconnect", "drop"):
        run = _slowSubscribersRun(subscribers, stalled, policy, queued, seconds)
        rss, during, after = run["rss"], run["metrics"]["during"], run["metrics"]["after"]
        steadySeconds = run["per_second"][1:]  # the first second starts part-way
        growth = (rss["peak"] - rss["before"]) * 1024 - baseline
        name = f"slow subscribers ({stalled} of {subscribers:,} never read, --slow-subscriber {policy}, --max-queued-bytes {queued:,})"
        closes = ", ".join(
            f"{_label(k)} {v:.0f}" for k, v in sorted(after.items()) if k.startswith("jsonproto_server_closes_total")
        )
        rows += [
            (f"{name}: readers' deliveries/s, expected / lowest second / highest second",
             f"{readers * 10:,.0f} / {min(steadySeconds):,} / {max(steadySeconds):,}"),
            (f"{name}: publications not delivered to every reader / readers closed", f"{run['undelivered']} of {run['steady']} / {run['closed']}"),
            (f"{name}: publish-to-last-delivery p50 / p99 (ms) at 10 publications/s",
             f"{percentile(run['latencies'], 50) * 1e3:,.1f} / {percentile(run['latencies'], 99) * 1e3:,.1f}" if run["latencies"] else "-"),
            (f"{name}: near the end: slow subscribers / queued bytes / dropped so far / disconnected so far",
             f"{during.get('jsonproto_channels_slow_subscribers', 0):.0f} / {during.get('jsonproto_channels_queued_bytes', 0):,.0f} / "
             f"{during.get('jsonproto_channels_dropped_total', 0):,.0f} / {during.get('jsonproto_channels_slow_disconnects_total', 0):.0f}"),
            (f"{name}: closes by reason, by the end", closes or "none"),
            (f"{name}: daemon RSS before / during / peak / after (MiB)",
             f"{rss['before'] / 1024:.1f} / {rss['during'] / 1024:.1f} / {rss['peak'] / 1024:.1f} / {rss['after'] / 1024:.1f}"),
            (f"{name}: peak growth less the control's / expected bound (MiB)",
             f"{growth / 2**20:.1f} / {bound / 2**20:.1f}: {'within' if growth <= bound else 'EXCEEDED'}"),
        ]
    return rows
