"""
What TLS costs pipelined traffic: the same load over C{ssl:} and over
C{tcp:}, from the same client (L{bench/loadclient.c}, which speaks both),
the two taking turns.
"""

from __future__ import annotations

import os
import tempfile
import time

from bench.daemon import Daemon, writeCertificate
from bench.loadgen import loadClient, runLoad
from bench.measures import waitingSeconds


def tlsAgainstPlain(quick: bool, rounds: int = 2) -> list[tuple[str, str]]:
    """
    Pipelined SUMs, 50 connections x 64 in flight, against a daemon
    listening on C{ssl:} and one on C{tcp:} (every limit on but the
    connection counts), C{rounds} times each, interleaved.
    """
    client = loadClient()
    seconds = ["--duration", "1" if quick else "4", "--warmup", "0.5" if quick else "1"]
    figures: dict[str, list[float]] = {"ssl:": [], "tcp:": []}
    cpu: dict[str, list[float]] = {"ssl:": [], "tcp:": []}
    waiting: dict[str, list[float]] = {"ssl:": [], "tcp:": []}
    with tempfile.TemporaryDirectory() as work:
        certificate, key = writeCertificate(work)
        message = os.path.join(work, "sum.json")
        with open(message, "wb") as f:
            f.write(b'{"type":"SUM","a":10,"b":20}')
        for _ in range(rounds):
            for kind in figures:
                if kind == "ssl:":
                    port = ["--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}"]
                    pattern = rb"\(TLS\) starting on (\d+)"
                else:
                    port, pattern = [], rb"starting on (\d+)"
                daemon = Daemon("--max-connections", "0", "--max-connections-per-ip", "0", *port, pattern=pattern, cpu=0)
                try:
                    waited, started = waitingSeconds(daemon.pid), time.monotonic()
                    run = runLoad([client, "--port", str(daemon.port), "--conns", "50", "--depth", "64", "--msg-file", message,
                                   "--expect", '"result":30', *seconds, *(["--tls"] if kind == "ssl:" else [])])
                    waiting[kind].append(100 * (waitingSeconds(daemon.pid) - waited) / (time.monotonic() - started))
                finally:
                    daemon.stop()
                if run["errors"]:
                    raise RuntimeError(f"pipelined over {kind}: {run['errors']} errors")
                figures[kind].append(run["rps"])
                cpu[kind].append(run["client_cpu"])
    tls, plain = (sum(figures[k]) / rounds for k in ("ssl:", "tcp:"))
    return [
        (f"pipelined SUM, 50 x 64, loadclient: requests/s over ssl: / tcp: (mean of {rounds} rounds)", f"{tls:,.0f} / {plain:,.0f}"),
        ("pipelined SUM, 50 x 64: each round over ssl: / tcp:", " / ".join(", ".join(f"{v:,.0f}" for v in figures[k]) for k in figures)),
        ("pipelined SUM, 50 x 64: the client's CPU; the daemon waiting for a CPU, over ssl: / tcp: (%, highest round)",
         f"{max(cpu['ssl:']):.0f} / {max(cpu['tcp:']):.0f}; {max(waiting['ssl:']):.0f} / {max(waiting['tcp:']):.0f}"),
        ("pipelined SUM, 50 x 64: TLS / plain", f"{tls / plain:.2f}x"),
    ]
