"""
A probe's reply times while many connections flood the daemon.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.daemon import Daemon, loadOnCpu1, pinToCpu, stopLoadProcess
from bench.measures import cpuPercent, cpuTicks, openSockets, percentile, rssKiB, waitingSeconds
from bench.probe import PROBE_REQUEST, Probe, serveEvent


def _flood(port: int, count: int, request: bytes, control: Connection) -> None:
    """
    The flooders, in a process of their own: C{count} connections, each
    keeping its send buffer full of C{request}s and reading and discarding
    every reply (so the server is never paused by backpressure).  Over
    C{control} they say C{"connected"}, wait for C{"go"}, flood until told
    C{"stop"} (or for a minute at most), then report what they saw.
    """
    chunk = memoryview(request * max(1, 65536 // len(request)))  # whole requests only
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        sockets.append(s)
    control.send("connected")
    if control.recv() != "go":
        return
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    offsets = {}
    for s in sockets:
        selector.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        offsets[s] = 0
    replies = closed = 0
    started = time.monotonic()
    running = True
    while running and time.monotonic() < started + 60:
        for key, events in selector.select(1):
            if key.fileobj is control:
                running = False
                break
            s = key.fileobj
            data, sent, over = serveEvent(s, events, chunk[offsets[s]:])
            offsets[s] = (offsets[s] + sent) % len(chunk)
            replies += data.count(b"\n")
            if over:  # the server closed it
                closed += 1
                selector.unregister(s)
                s.close()
    seconds = time.monotonic() - started
    for s in sockets:
        s.close()
    control.send({"replies": replies, "closed": closed, "seconds": seconds})


def _fairnessRun(request: bytes, flooders: int, seconds: float, warmup: float, probeTimeout: float) -> dict[str, Any]:
    """
    One probe measured against a fresh daemon while C{flooders} connections
    flood it with C{request}s.
    """
    daemon = Daemon(
        "--max-connections", "0",
        "--max-connections-per-ip", str(flooders + 1),
        "--max-errors", "0",
        "--send-timeout", "0",
    )
    load = None
    try:
        pinToCpu(daemon.pid, 0)
        listening = openSockets(daemon.pid)
        if flooders:
            control, theirs = multiprocessing.get_context("fork").Pipe()
            load = multiprocessing.get_context("fork").Process(
                target=_flood, args=(daemon.port, flooders, request, theirs), daemon=True
            )
            load.start()
            if not control.poll(30) or control.recv() != "connected":
                raise RuntimeError(f"{flooders} flooders did not connect")
        probe = Probe(daemon.port, probeTimeout)
        if probe.roundTrip() is None:
            raise RuntimeError(f"the probe got no first reply: {probe.failure}")
        for _ in range(200):
            if openSockets(daemon.pid) >= listening + flooders + 1:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the daemon did not accept all {flooders} flooders")
        if load:
            control.send("go")
            time.sleep(warmup)
        samples: list[float] = []
        peak = rssKiB(daemon.pid)
        daemonTicks, daemonWaiting = cpuTicks(daemon.pid), waitingSeconds(daemon.pid)
        loadTicks = cpuTicks(load.pid) if load else 0
        started = lastLook = time.monotonic()
        # The request in flight when the period ends is still waited for.
        while len(samples) < 100_000:
            elapsed = probe.roundTrip()
            if elapsed is None:
                break
            samples.append(elapsed)
            now = time.monotonic()
            if now - lastLook > 0.05:
                peak, lastLook = max(peak, rssKiB(daemon.pid)), now
            if now >= started + seconds:
                break
        elapsed = time.monotonic() - started
        run: dict[str, Any] = {
            "samples": sorted(samples),
            "failure": probe.failure,
            "daemon_cpu": cpuPercent(cpuTicks(daemon.pid) - daemonTicks, elapsed),
            "daemon_waiting": 100 * (waitingSeconds(daemon.pid) - daemonWaiting) / elapsed,
            "load_cpu": cpuPercent(cpuTicks(load.pid) - loadTicks, elapsed) if load else 0.0,
            "peak_rss_mib": max(peak, rssKiB(daemon.pid)) / 1024,
            "flood": {"replies": 0, "closed": 0, "seconds": 1.0},
        }
        probe.close()
        if load:
            control.send("stop")
            if control.poll(30):
                run["flood"] = control.recv()
        return run
    finally:
        if load:
            # A second "stop", after the one that asked for the report, is never read.
            stopLoadProcess(load, control)
        daemon.stop()


def fairness(seconds: float, warmup: float, probeTimeout: float = 5.0) -> list[tuple[str, str]]:
    """
    A probe's reply times while 0, 8, 32 and 128 connections flood the
    daemon as fast as it reads, with valid requests and with cheap invalid
    ones.  Fair turns keep the probe's times near the baseline's.
    """
    rows = []
    with loadOnCpu1():
        for variant, request in (("valid SUM", PROBE_REQUEST), ("invalid `x`", b"x\n")):
            for flooders in (0, 8, 32, 128):
                run = _fairnessRun(request, flooders, seconds, warmup, probeTimeout)
                name = f"fairness, {variant} floods, {flooders} flooders" + (" (baseline)" if not flooders else "")
                samples = run["samples"]
                times = f"{percentile(samples, 50) * 1e3:,.1f} / {percentile(samples, 99) * 1e3:,.1f}" if samples else "-"
                if run["failure"]:
                    times = f"probe failed: {run['failure']} (replies before it: {times})"
                bound = " (load-bound)" if run["load_cpu"] > run["daemon_cpu"] else ""
                flood = run["flood"]
                rows.append((f"{name}: probe p50 / p99 reply time (ms)", times))
                rows.append((
                    f"{name}: probe replies / flood replies per s / flooders closed / "
                    f"daemon CPU, daemon waiting for a CPU, flooders CPU (%){bound} / daemon peak RSS (MiB)",
                    f"{len(samples):,} / {flood['replies'] / flood['seconds']:,.0f} / {flood['closed']} / "
                    f"{run['daemon_cpu']:.0f}, {run['daemon_waiting']:.0f}, {run['load_cpu']:.0f} / {run['peak_rss_mib']:.0f}",
                ))
    return rows
