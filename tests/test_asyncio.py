"""
asyncio libraries in handlers, through the real C{twistd -r asyncio} over
real sockets: a coroutine handler awaits C{asyncio.sleep} and
C{redis.asyncio} (against a C{redis-server} the test starts), and
Deferreds; without the asyncio reactor, it fails with an error reply, and
the log says to run with C{-r asyncio}.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.docrun import freePort
from tests.e2e import daemonLog, twistd
from tests.test_twistd import DEADLINE, readUntil

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def startRedis(test: SynchronousTestCase) -> int:
    """
    Start a redis-server on a free port of 127.0.0.1, stopped (by its pid)
    when the test ends; return its port once it accepts connections.
    """
    if not os.access(REDIS_SERVER, os.X_OK):
        raise SkipTest("redis-server is not installed (Debian: apt-get install redis-server)")
    directory = tempfile.mkdtemp(prefix="jsonproto-redis-")
    test.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    port = freePort()
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory,
    )

    def stop() -> None:
        server.terminate()
        server.wait(timeout=DEADLINE)

    test.addCleanup(stop)
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return port
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"redis-server on port {port} did not start")
        time.sleep(0.05)


class AsyncioReactorTests(SynchronousTestCase):
    def daemon(self, *twistdOptions: str, redisPort: int = 0) -> int:
        """
        Start twistd (with C{twistdOptions} before C{jsonproto}) serving
        the asyncio test handlers; return its port.
        """
        previous = os.environ.get("JSONPROTO_TEST_REDIS_PORT")
        os.environ["JSONPROTO_TEST_REDIS_PORT"] = str(redisPort)
        try:
            process = twistd(
                *twistdOptions, "-n", "--pidfile=", "jsonproto",
                "--port", "tcp:0:interface=127.0.0.1", "--handlers", "tests.asynciohandlers",
            )
        finally:
            if previous is None:
                del os.environ["JSONPROTO_TEST_REDIS_PORT"]
            else:
                os.environ["JSONPROTO_TEST_REDIS_PORT"] = previous
        self.process = process

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=DEADLINE)
            os.unlink(process.logPath)  # type: ignore[attr-defined]

        self.addCleanup(stop)
        return int(readUntil(process, rb"JSONServerFactory starting on (\d+)").group(1))

    def exchange(self, port: int, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
            lines = client.makefile("rb")
            return [json.loads(lines.readline()) for _ in messages]

    def test_asyncioLibraries(self) -> None:
        """
        Under -r asyncio, a handler awaits asyncio.sleep, a real asyncio
        Redis client, and Deferreds, alone or mixed; replies keep their
        order.
        """
        port = self.daemon("-r", "asyncio", redisPort=startRedis(self))
        self.assertIn(b"AsyncioSelectorReactor", daemonLog(self.process))
        replies = self.exchange(
            port,
            {"type": "NAP", "id": 1},
            {"type": "STORE", "key": "zoë", "value": "Zürich", "id": 2},
            {"type": "LATER", "id": 3},
            {"type": "BOTH", "id": 4},
            {"type": "SUM", "a": 1, "b": 2, "id": 5},
        )
        self.assertEqual(replies, [
            {"status": "OK", "slept": 0.05, "id": 1},
            {"status": "OK", "stored": "Zürich", "id": 2},
            {"status": "OK", "later": True, "id": 3},
            {"status": "OK", "both": "deferred", "id": 4},
            {"status": "OK", "result": 3, "id": 5},
        ])

    def test_withoutAsyncioReactor(self) -> None:
        """
        On the default reactor, a handler awaiting asyncio gets Internal
        error, and the log says to run with -r asyncio; handlers awaiting
        Deferreds still work.
        """
        port = self.daemon()
        replies = self.exchange(port, {"type": "NAP", "id": 1}, {"type": "LATER", "id": 2})
        self.assertEqual(replies, [
            {"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": 1},
            {"status": "OK", "later": True, "id": 2},
        ])
        readUntil(self.process, rb"handler for message type 'NAP' awaited asyncio, which needs the asyncio reactor: run twistd -r asyncio jsonproto")
        self.assertNotIn(b"handler for message type 'NAP' failed", daemonLog(self.process))
