"""
A real HAProxy in front of two daemons on 127.0.0.1, speaking the PROXY
protocol to them: both serve, they see the client's own address, and
stopping one loses nothing HAProxy can retry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.docrun import freePort
from tests.e2e import startDaemon

CONFIG = """
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend jsonproto
    bind 127.0.0.1:{front}
    default_backend daemons
backend daemons
    balance roundrobin
    server a 127.0.0.1:{a} send-proxy-v2
    server b 127.0.0.1:{b} send-proxy-v2
"""


def ask(port: int) -> tuple[int, dict[str, Any]]:
    """
    One client through HAProxy: its own port, and the daemon's answer.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b'{"type":"WHO"}\n')
        return c.getsockname()[1], json.loads(c.makefile("rb").readline())


class HAProxyTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> None:
        self.haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
        if self.haproxy is None:
            raise SkipTest("haproxy is not installed (.ci/run installs Debian's)")
        self.a, [portA] = yield startDaemon(self, "--port", "haproxy:tcp:0:interface=127.0.0.1", "--handlers", "tests.instance_a")
        self.b, [portB] = yield startDaemon(self, "--port", "haproxy:tcp:0:interface=127.0.0.1", "--handlers", "tests.instance_b")
        self.front = freePort()
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(CONFIG.format(front=self.front, a=portA, b=portB))
        self.process = subprocess.Popen([self.haproxy, "-f", config, "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self._stopHAProxy)
        yield deferToThread(self._waitForFront)

    def _waitForFront(self) -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.front), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("haproxy did not start listening")

    def _stopHAProxy(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    @inlineCallbacks
    def test_bothServeWithRealAddress(self) -> None:
        """
        Through HAProxy, requests are answered by both daemons, and each
        sees the client's own address and port, not HAProxy's.
        """
        answers = yield deferToThread(lambda: [ask(self.front) for _ in range(10)])
        self.assertEqual({reply["instance"] for _, reply in answers}, {"a", "b"})
        for clientPort, reply in answers:
            self.assertEqual(reply["status"], "OK")
            self.assertEqual(reply["peer"], f"127.0.0.1:{clientPort}")

    @inlineCallbacks
    def test_stopOne(self) -> None:
        """
        With one daemon stopped (it drains and stops listening), new
        connections still succeed: HAProxy retries the refused connection on
        the other daemon (retries and redispatch).  What it cannot retry is
        a request on a connection already established to the daemon that
        stops: that is what the drain is for.
        """
        yield self.a.stopService()
        answers = yield deferToThread(lambda: [ask(self.front) for _ in range(10)])
        self.assertEqual([reply["instance"] for _, reply in answers], ["b"] * 10)
