"""
The realistic service (L{bench.realistic}) served by jsonproto, through
its typed handlers (READING, and PUSH_READING one-way), and by its peers under C{bench/peers/}, Node and uvloop, written
for speed: ping-pong, pipelined, and a one-way stream, each server fresh,
on CPU 0, the load on CPU 1, the servers taking turns round after round.
The peers check the same rules by hand, as they check READING_CHECKED.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from typing import Callable

from bench.daemon import Daemon, PeerServer, missingPeer
from bench.loadgen import LOADGEN, loadClient, missingLoadgen, runLoad
from bench.measures import waitingSeconds
from bench.realistic import MESSAGES, PUSHED

SERVERS = ("jsonproto", "node", "uvloop")

LATEST = b'{"type":"LATEST","device":"pompe-7"}'
"""
The request that closes each connection's stream: its reply comes only
once every message before it has been handled.
"""


def startServer(kind: str) -> Daemon:
    """
    A fresh server of C{kind} on CPU 0: jsonproto at its default limits,
    but for the bound per address (all the load comes from 127.0.0.1), or
    a peer.
    """
    if kind == "jsonproto":
        return Daemon("--max-connections-per-ip", "0", "--handlers", "bench.realistic", cpu=0)
    return PeerServer(kind, cpu=0)


def readingsKept(port: int) -> int:
    """
    How many readings of the streamed device the server counts.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(LATEST + b"\n")
        reply = s.makefile("rb").readline()
    readings: int = json.loads(reply)["readings"]
    return readings


Measure = Callable[[Daemon], tuple[float, float | None]]
"""
A mode's measurement of a server: its figure, and the 99th percentile of
its requests' latency in microseconds where the mode has replies to time.
"""


def _requestLoad(files: dict[str, str], depth: int, seconds: list[str]) -> Measure:
    def measure(server: Daemon) -> tuple[float, float | None]:
        run = runLoad([LOADGEN, "--port", str(server.port), "--conns", "50", "--depth", str(depth),
                       "--msg-file", files["reading"], "--expect", '"OK"', "--quiet", *seconds])
        if run.get("errors"):
            raise RuntimeError(f"loadgen counted {run['errors']} errors")
        return float(run["rps"]), float(run["p99_us"])

    return measure


def _streamLoad(files: dict[str, str], count: int) -> Measure:
    client = loadClient()

    def measure(server: Daemon) -> tuple[float, float | None]:
        run = runLoad([client, "--port", str(server.port), "--conns", "50", "--stream", str(count),
                       "--msg-file", files["pushed"], "--final-file", files["latest"]])
        # Each connection's warm-up (a tenth) and its stream, every one handled.
        expected = 50 * (count // 10 + 1 + count)
        kept = readingsKept(server.port)
        if run["errors"] or kept != expected:
            raise RuntimeError(f"the stream: {run['errors']} errors; the server kept {kept} of {expected} readings")
        return float(run["messages_per_s"]), None

    return measure


def realisticPeers(quick: bool, rounds: int = 2) -> list[tuple[str, str]]:
    """
    Messages per second of each server in each mode, the mean of
    C{rounds} interleaved rounds, and jsonproto's ratio to the best peer.
    """
    missing = missingLoadgen()
    if missing:
        return [("realistic vs peers", f"not run: {missing}")]
    servers = [kind for kind in SERVERS if kind == "jsonproto" or missingPeer(kind) is None]
    rows = [(f"realistic vs peers: {kind}", f"not run: {missingPeer(kind)}") for kind in SERVERS if kind not in servers]
    seconds = ["--duration", "1" if quick else "4", "--warmup", "0.5" if quick else "1"]
    with tempfile.TemporaryDirectory() as work:
        files = {}
        for name, message in (("reading", MESSAGES["typed"]), ("pushed", PUSHED), ("latest", LATEST)):
            files[name] = os.path.join(work, f"{name}.json")
            with open(files[name], "wb") as f:
                f.write(message)
        modes: list[tuple[str, str, Measure]] = [
            ("ping-pong, 50 x 1", "requests/s", _requestLoad(files, 1, seconds)),
            ("pipelined, 50 x 64", "requests/s", _requestLoad(files, 64, seconds)),
            (f"one-way stream, 50 x {2_000 if quick else 8_000:,} then a request", "messages/s", _streamLoad(files, 2_000 if quick else 8_000)),
        ]
        for mode, unit, measure in modes:
            figures: dict[str, list[float]] = {kind: [] for kind in servers}
            waiting: dict[str, list[float]] = {kind: [] for kind in servers}
            p99s: dict[str, list[float]] = {kind: [] for kind in servers}
            for _ in range(rounds):
                for kind in servers:
                    server = startServer(kind)
                    try:
                        waited, started = waitingSeconds(server.pid), time.monotonic()
                        figure, p99 = measure(server)
                        figures[kind].append(figure)
                        if p99 is not None:
                            p99s[kind].append(p99)
                        waiting[kind].append(100 * (waitingSeconds(server.pid) - waited) / (time.monotonic() - started))
                    finally:
                        server.stop()
            rows += _rows(mode, unit, figures, waiting, p99s)
    return rows


def _rows(
    mode: str, unit: str, figures: dict[str, list[float]], waiting: dict[str, list[float]], p99s: dict[str, list[float]]
) -> list[tuple[str, str]]:
    """
    A mode's rows: each server's mean, jsonproto's ratio to the best peer,
    each server's 99th-percentile latency where the mode has replies to
    time (the mean of its rounds'), and, to judge how far to trust them, each
    round's figure and how long each server was kept from its CPU by other
    work on the machine.
    """
    means = {kind: sum(values) / len(values) for kind, values in figures.items()}
    peers = {kind: mean for kind, mean in means.items() if kind != "jsonproto"}
    rounds = len(next(iter(figures.values())))
    servers = " / ".join(means)
    rows = [(
        f"realistic, {mode}: {unit}, {servers} (mean of {rounds} rounds)",
        " / ".join(f"{mean:,.0f}" for mean in means.values()),
    )]
    if peers:
        best = max(peers, key=lambda kind: peers[kind])
        rows.append((f"realistic, {mode}: jsonproto / best peer ({best})", f"{means['jsonproto'] / peers[best]:.2f}x"))
    if all(p99s.values()):
        rows.append((
            f"realistic, {mode}: p99 latency (us), {servers} (mean of {rounds} rounds)",
            " / ".join(f"{sum(values) / len(values):,.0f}" for values in p99s.values()),
        ))
    rows.append((
        f"realistic, {mode}: each round, {servers}; the server waiting for a CPU, highest round (%)",
        " / ".join(", ".join(f"{v:,.0f}" for v in values) for values in figures.values())
        + "; " + " / ".join(f"{max(values):.0f}" for values in waiting.values()),
    ))
    return rows
