"""
The load generators in C the peer scenarios drive, each run on CPU 1: the
request/reply load generator C{loadgen} (epoll, closed loop: ping-pong,
pipelined, idle connections), and L{bench/loadclient.c} for what it does
not do (one-way streams, TLS), built here on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

from bench.daemon import HERE, pinToCpu

LOADGEN = os.environ.get("JSONPROTO_LOADGEN", "/tmp/jsonproto-perf/loadgen")
"""
The request/reply load generator's executable, unless C{JSONPROTO_LOADGEN}
names another.
"""

LOADCLIENT_SOURCE = os.path.join(HERE, "loadclient.c")


def missingLoadgen() -> str | None:
    """
    Why L{LOADGEN} cannot run here, or L{None} when it can.
    """
    if not os.access(LOADGEN, os.X_OK):
        return f"no load generator at {LOADGEN} (set JSONPROTO_LOADGEN)"
    return None


def loadClient() -> str:
    """
    The path of L{LOADCLIENT_SOURCE} compiled, building it when its source
    has changed (the build is named by the source's hash, so a stale one is
    never run).

    @raise RuntimeError: No C compiler, or no OpenSSL headers.
    """
    with open(LOADCLIENT_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    built = os.path.join(tempfile.gettempdir(), f"jsonproto-bench-loadclient-{digest}")
    if os.access(built, os.X_OK):
        return built
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("bench/loadclient.c needs a C compiler (gcc or cc)")
    partial = f"{built}.{os.getpid()}"
    result = subprocess.run(
        [compiler, "-O2", "-o", partial, LOADCLIENT_SOURCE, "-lssl", "-lcrypto", "-lpthread"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench/loadclient.c did not build (OpenSSL's headers: libssl-dev):\n{result.stderr[-2000:]}")
    os.replace(partial, built)
    return built


def runLoad(argv: list[str], timeout: float = 300) -> dict[str, Any]:
    """
    Run one load generator to its end on CPU 1, and return the JSON line it
    printed last.

    @raise RuntimeError: It failed, or printed no JSON.
    """
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=lambda: pinToCpu(0, 1))
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{os.path.basename(argv[0])} failed ({result.returncode}): {result.stderr.strip()[-1000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary
