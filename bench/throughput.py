"""
The C{jsonproto bench} scenarios: the standard runs, and the realistic
reading typed and untyped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from bench.daemon import Daemon, freePort, pinToCpu, writeCertificate
from bench.realistic import MESSAGES


def throughput(
    name: str, daemonOptions: list[str], clientOptions: list[str], tls: tuple[str, str] | None = None, pin: bool = True
) -> dict[str, Any]:
    """
    One jsonproto bench run against a fresh daemon, server on CPU 0 and the
    client on CPU 1 (unless C{pin} is false: then both float over every core).

    @param tls: Listen on C{jsonproto-tls:} with this certificate and key
        (L{writeCertificate}), and connect over TLS.
    """
    if tls:
        port = ["--port", f"jsonproto-tls:0:interface=127.0.0.1:privateKey={tls[1]}:certKey={tls[0]}"]
    elif "--workers" in daemonOptions:
        # Workers share one port, which must be fixed in advance.
        port = ["--port", f"tcp:{freePort()}:interface=127.0.0.1"]
    else:
        port = []
    # All the load comes from 127.0.0.1: the per-address bound is off.
    daemon = Daemon("--max-connections", "0", "--max-connections-per-ip", "0", *port, *daemonOptions, pattern=rb"starting on (\d+)" if not tls else rb"\(TLS\) starting on (\d+)")
    try:
        if pin:
            pinToCpu(daemon.pid, 0)
        endpoint = f"tls:localhost:{daemon.port}" if tls else f"127.0.0.1:{daemon.port}"
        command = [os.path.join(os.path.dirname(sys.executable), "jsonproto"), "bench", endpoint, "--json", *clientOptions]
        if "--workers" not in daemonOptions:
            # With workers the daemon's own process only supervises.
            command += ["--server-pid", str(daemon.pid)]
        if tls:
            command += ["--ca", tls[0]]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=300, preexec_fn=(lambda: pinToCpu(0, 1)) if pin else None
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name}: jsonproto bench failed: {result.stderr.strip()}")
        summary = json.loads(result.stdout)
        summary["name"] = name
        return summary
    finally:
        daemon.stop()


def realistic(quick: bool, rounds: int = 2) -> list[tuple[str, str]]:
    """
    The reading of L{bench.realistic} (about 200 bytes: floats, a nested
    object, a list, non-ASCII text), answered by a typed handler and by the
    same handler untyped, in ping-pong and pipelined, interleaved
    C{rounds} times; what the checks cost a message is the difference of
    the server's CPU per reply between the two.
    """
    seconds = ["--duration", "1" if quick else "4", "--warmup", "0.5" if quick else "1"]
    rows: list[tuple[str, str]] = []
    perReply: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(1, rounds + 1):
            for mode, pipeline in (("ping-pong, 50 connections", "1"), ("pipelined, 50 x 64", "64")):
                for kind, message in MESSAGES.items():
                    path = os.path.join(work, f"{kind}.json")
                    with open(path, "wb") as f:
                        f.write(message)
                    name = f"realistic {kind}, {mode}, round {round_}"
                    run = throughput(
                        name, ["--handlers", "bench.realistic"], ["--conns", "50", "--pipeline", pipeline, "--message-file", path, *seconds]
                    )
                    bound = " (client-bound)" if run.get("client_bound") else ""
                    rows.append((f"{name}: requests/s{bound}", f"{run['rps']:,.0f}"))
                    rows.append((f"{name}: p50 / p99 latency (us)", f"{run['p50_us']:,.0f} / {run['p99_us']:,.0f}"))
                    if run.get("server_cpu_s") and run.get("replies"):
                        perReply.setdefault((mode, kind), []).append(1e6 * run["server_cpu_s"] / run["replies"])
    for mode in ("ping-pong, 50 connections", "pipelined, 50 x 64"):
        typed, untyped = perReply.get((mode, "typed")), perReply.get((mode, "untyped"))
        if typed and untyped:
            rows.append((
                f"realistic, {mode}: server CPU per reply, typed / untyped (us); the checks' cost",
                f"{min(typed):.2f} / {min(untyped):.2f}; {min(typed) - min(untyped):.2f} us a message",
            ))
    return rows


def throughputScenarios(quick: bool) -> list[tuple[str, str]]:
    """
    The standard C{jsonproto bench} runs, and the ratios between them.
    """
    seconds = ["--duration", "1" if quick else "4", "--warmup", "0.5" if quick else "1"]
    with tempfile.TemporaryDirectory() as work:
        big = os.path.join(work, "big.json")
        with open(big, "w") as f:
            json.dump({"type": "GREETING", "name": "x" * 204800}, f)
        key = writeCertificate(work)
        runs = [
            throughput("ping-pong, 50 connections", [], ["--conns", "50", "--pipeline", "1", *seconds]),
            throughput("pipelined, 50 x 64", [], ["--conns", "50", "--pipeline", "64", *seconds]),
            throughput("int32 pipelined, 50 x 64", ["--framing", "int32"], ["--conns", "50", "--pipeline", "64", "--framing", "int32", *seconds]),
            throughput("2,000 connections", [], ["--conns", "200" if quick else "2000", "--pipeline", "1", *seconds]),
            throughput("200 KiB messages, 10 connections", [], ["--conns", "10", "--pipeline", "1", "--message-file", big, *seconds]),
            throughput("TLS pipelined, 50 x 64", [], ["--conns", "50", "--pipeline", "64", *seconds], tls=key),
            throughput("pipelined, --workers 1, unpinned", [], ["--conns", "50", "--pipeline", "64", *seconds], pin=False),
            throughput("pipelined, --workers 2, unpinned", ["--workers", "2"], ["--conns", "50", "--pipeline", "64", *seconds], pin=False),
        ]
    rows: list[tuple[str, str]] = []
    for run in runs:
        bound = " (client-bound)" if run.get("client_bound") else ""
        rows.append((f"{run['name']}: requests/s{bound}", f"{run['rps']:,.0f}"))
        rows.append((f"{run['name']}: p50 / p99 / p99.9 latency (us)", f"{run['p50_us']:,.0f} / {run['p99_us']:,.0f} / {run['p999_us']:,.0f}"))
    rows.append(("TLS pipelined / plain pipelined", f"{runs[5]['rps'] / runs[1]['rps']:.2f}x"))
    rows.append((
        "--workers 2 / --workers 1 (2 cores, the load generator on them too)",
        f"{runs[7]['rps'] / runs[6]['rps']:.2f}x",
    ))
    return rows
