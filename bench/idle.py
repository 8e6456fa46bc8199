"""
What an idle connection costs the daemon: its RSS with 10,000 connections
open and silent, less its RSS before them.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time

from bench.daemon import Daemon, pinToCpu
from bench.loadgen import LOADGEN, missingLoadgen
from bench.measures import openSockets, rssKiB


def idleConnections(count: int = 10_000, hold: float = 10) -> list[tuple[str, str]]:
    """
    C{count} connections opened by the load generator (256 connecting at a
    time) and held idle; once the daemon has accepted every one, its RSS
    is read.  Then each sends one request, whose answer the load generator
    checks: the connections were served, not merely queued.
    """
    name = f"{count:,} idle connections"
    missing = missingLoadgen()
    if missing:
        return [(name, f"not run: {missing}")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        # Raised by bench/run.py as far as the hard limit allows.
        return [(name, f"not run: ulimit -n is {soft}, {count + 100} are needed (the hard limit is {hard})")]
    daemon = Daemon("--max-connections", "0", "--max-connections-per-ip", "0", cpu=0)
    load = None
    try:
        listening = openSockets(daemon.pid)
        time.sleep(1)
        before = rssKiB(daemon.pid)
        load = subprocess.Popen(
            [LOADGEN, "--port", str(daemon.port), "--conns", str(count), "--connect-only", "--duration", str(hold), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: pinToCpu(0, 1),
        )
        deadline = time.monotonic() + 60
        while openSockets(daemon.pid) < listening + count:
            if load.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the daemon accepted {openSockets(daemon.pid) - listening} of {count}")
            time.sleep(0.2)
        # A moment for the last ones' first reads.
        time.sleep(1)
        held = rssKiB(daemon.pid)
        out, err = load.communicate(timeout=hold + 60)
        lines = out.strip().splitlines()
        summary = json.loads(lines[-1]) if lines else {}
        if load.returncode != 0 or summary.get("errors", 1) != 0:
            raise RuntimeError(f"{name}: the load generator failed ({load.returncode}): {err.strip()[-1000:]}")
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        daemon.stop()
    return [
        (f"{name}: daemon RSS before / with them (MiB)", f"{before / 1024:.1f} / {held / 1024:.1f}"),
        (f"{name}: daemon RSS per connection (KiB)", f"{(held - before) / count:.1f}"),
    ]
