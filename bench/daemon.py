"""
The servers a scenario starts: a twistd jsonproto on a free port, the
peers it is measured against (the Node fan-out server, the realistic
service for Node and for uvloop), a redis-server, workers; and where each
process runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


class Daemon:
    """
    A twistd jsonproto started for one scenario, on a free port.
    """

    def __init__(
        self, *options: str, pattern: bytes = rb"JSONServerFactory starting on (\d+)", cpu: int | None = None
    ) -> None:
        """
        @param cpu: The one CPU the daemon runs on, from its start (so that
            every thread it starts runs there too), or L{None}: any.
        """
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self._start([twistd, "--pidfile=", "-n", "jsonproto", *(options if "--port" in options else ("--port", "tcp:0:interface=127.0.0.1", *options))], cpu)
        self.port = int(self.waitFor(pattern).group(1))

    def _start(self, argv: list[str], cpu: int | None = None) -> None:
        # A file, not a pipe: a pipe nobody reads would stop the server.
        log = tempfile.NamedTemporaryFile(prefix="jsonproto-bench-", suffix=".log", delete=False)
        self.logPath = log.name
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=None if cpu is None else (lambda: pinToCpu(0, cpu))
        )
        log.close()

    def waitFor(self, pattern: bytes, seconds: float = 30) -> re.Match[bytes]:
        end = time.monotonic() + seconds
        while True:
            with open(self.logPath, "rb") as f:
                log = f.read()
            match = re.search(pattern, log)
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the daemon did not log {pattern!r}:\n{log.decode(errors='replace')[-2000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.unlink(self.logPath)


def pinToCpu(pid: int, cpu: int) -> None:
    """
    Run process C{pid} (0: this one) on C{cpu} alone, where there are two
    cores: the server on one and its load on the other, so that neither
    takes the other's time.
    """
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


@contextlib.contextmanager
def loadOnCpu1() -> Iterator[None]:
    """
    Run this process (the load of scenarios that generate it themselves, and
    every process it forks) on CPU 1 for a while, as C{jsonproto bench} runs.
    """
    if (os.cpu_count() or 1) < 2:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def stopLoadProcess(process: Any, control: Connection) -> None:
    """
    Tell a load process to stop (over its C{control} pipe, if it still
    listens), wait for it a while, and kill it if it will not.
    """
    with contextlib.suppress(OSError):
        control.send("stop")
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join()


def writeCertificate(directory: str) -> tuple[str, str]:
    """
    A self-signed certificate for localhost and 127.0.0.1, written into
    C{directory} by C{jsonproto cert}.

    @return: The certificate's file and its private key's.
    """
    certificate, key = os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")
    jsonproto = os.path.join(os.path.dirname(sys.executable), "jsonproto")
    subprocess.run([jsonproto, "cert", "localhost", "127.0.0.1", "-o", certificate, "--key-output", key], check=True, capture_output=True)
    return certificate, key


def freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NodeServer(Daemon):
    """
    bench/node_fanout.js on a free port, for the fan-out beside jsonproto.
    """

    def __init__(self) -> None:
        self.port = freePort()
        self._start(["node", os.path.join(HERE, "node_fanout.js"), str(self.port)])
        self.waitFor(rb"listening")


PEER_PYTHON = os.environ.get("JSONPROTO_PEER_PYTHON", "/tmp/jsonproto-perf/peer-venv/bin/python")
"""
The Python with uvloop and orjson that runs the uvloop peer (the peers'
own virtualenv: the project's does not have uvloop), unless
C{JSONPROTO_PEER_PYTHON} names another.
"""

PEERS = {
    "node": ["node", os.path.join(HERE, "peers", "realistic_node.js")],
    "uvloop": [PEER_PYTHON, os.path.join(HERE, "peers", "realistic_uvloop.py")],
}
"""
The commands that start the realistic service of L{bench.realistic} as
each peer, less the port.
"""


def missingPeer(kind: str) -> str | None:
    """
    Why peer C{kind} of L{PEERS} cannot run on this machine, or L{None}
    when it can.
    """
    import shutil

    if kind == "node":
        return None if shutil.which("node") else "no node on PATH"
    check = subprocess.run([PEER_PYTHON, "-c", "import uvloop, orjson"], capture_output=True) if os.access(PEER_PYTHON, os.X_OK) else None
    if check is None or check.returncode != 0:
        return (
            f"{PEER_PYTHON} does not run, or lacks uvloop and orjson: make one with "
            "python3 -m venv DIR && DIR/bin/pip install uvloop orjson, and set JSONPROTO_PEER_PYTHON=DIR/bin/python"
        )
    return None


class PeerServer(Daemon):
    """
    The realistic service as peer C{kind} of L{PEERS}, on a port the kernel
    picks.
    """

    def __init__(self, kind: str, cpu: int | None = None) -> None:
        self._start([*PEERS[kind], "0"], cpu)
        self.port = int(self.waitFor(rb"listening on (\d+)").group(1))


def jsonprotoChannels(*options: str) -> Daemon:
    return Daemon("--channels", "--max-connections", "0", "--max-connections-per-ip", "0", *options)


def redisServer() -> tuple[subprocess.Popen[bytes], int] | str:
    """
    A redis-server of this run's own on a free port, or why there is none.
    """
    import shutil

    if shutil.which("redis-server") is None:
        return "no redis-server on PATH"
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    usage = subprocess.run([twistd, "jsonproto", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    if "--redis" not in usage:
        return "this jsonproto has no --redis option"
    port = freePort()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith(b"+PONG"):
                return process, port
        time.sleep(0.05)
    process.kill()
    process.wait()
    return "redis-server did not answer"


class Workers:
    """
    twistd jsonproto --channels --workers 2 --redis, once every worker
    listens.
    """

    def __init__(self, redisPort: int) -> None:
        port = freePort()
        self.daemon = jsonprotoChannels(
            "--workers", "2", "--redis", f"tcp:127.0.0.1:{redisPort}", "--port", f"tcp:{port}:interface=127.0.0.1",
        )
        self.port = port
        end = time.monotonic() + 30
        while open(self.daemon.logPath, "rb").read().count(b"starting on") < 2:
            if self.daemon.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the workers did not start listening")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def stop(self) -> None:
        self.daemon.stop()
