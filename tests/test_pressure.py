"""
Hostile and unlucky clients over real sockets on 127.0.0.1: a client that
never reads, and a daemon stopped with requests in flight.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any

from twisted.internet import endpoints, protocol, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.core.pipeline import BATCH_BYTES
from tests.e2e import startDaemon, twistd
from tests.test_twistd import DEADLINE, readUntil

REQUESTS = 200_000


def unsentBytes(transport: Any) -> int:
    """
    What a Twisted TCP transport holds that the kernel has not taken: its
    write buffers (private attributes, read for this measurement only).
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class Flooder(protocol.Protocol):
    """
    Writes every request at once and reads nothing until told to; then
    counts the replies.
    """

    def __init__(self, requests: bytes, expected: int) -> None:
        self.requests = requests
        self.expected = expected
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        self.transport.write(self.requests)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.received.count(b"\n") >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))

    def connectionLost(self, reason: Any) -> None:
        if not self.done.called:
            self.done.callback(bytes(self.received))


class SlowReaderTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_floodWithoutReading(self) -> None:
        """
        A client pipelines 200,000 requests and reads nothing.  The server
        stops reading from it once its replies back up, so what it holds
        unsent for that client stays under 64 KiB (Twisted's write buffer)
        plus one 64 KiB batch; when the client reads, it gets every reply,
        in order, none lost or duplicated.
        """
        service, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1")
        requests = b"".join(b'{"type":"SUM","a":%d,"b":0}\n' % i for i in range(REQUESTS))
        client = Flooder(requests, REQUESTS)
        yield endpoints.connectProtocol(endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port}"), client)

        [info] = list(service.connections)
        server = info._connection
        peak = [0]
        write = server.transport.write

        def measuredWrite(data: bytes) -> None:
            write(data)
            peak[0] = max(peak[0], unsentBytes(server.transport))

        server.transport.write = measuredWrite
        paused: Deferred[None] = Deferred()
        pause = server.pauseProducing

        def pauseProducing() -> None:
            pause()
            if not paused.called:
                paused.callback(None)

        server.pauseProducing = pauseProducing
        yield paused
        handledWhenPaused = info.messagesIn
        self.assertLess(handledWhenPaused, REQUESTS)

        client.transport.resumeProducing()
        received = yield client.done
        results = [json.loads(l)["result"] for l in received.splitlines()]
        self.assertEqual(results, list(range(REQUESTS)))
        bound = server.transport.bufferSize + BATCH_BYTES + 100
        self.assertLessEqual(peak[0], bound)
        self.assertGreater(info.pauses, 0)
        client.transport.loseConnection()


class StopUnderLoadTests(SynchronousTestCase):
    def test_sigtermWithRequestsInFlight(self) -> None:
        """
        SIGTERM while 50 connections each have slow and fast requests in
        flight: every request sent before the signal is answered before its
        connection closes, a connection attempt once the daemon is draining
        is refused, and the process is gone within the shutdown timeout.
        """
        process = twistd(
            "-n", "--pidfile=", "jsonproto", "--port", "tcp:0:interface=127.0.0.1",
            "--handlers", "tests.slowhandlers", "--shutdown-timeout", "5",
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        self.addCleanup(os.unlink, process.logPath)
        port = int(readUntil(process, rb"JSONServerFactory starting on (\d+)").group(1))
        clients = []
        for c in range(50):
            s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
            self.addCleanup(s.close)
            requests = [{"type": "SLOW", "seconds": 0.5, "id": f"{c}-slow"}] + [
                {"type": "SUM", "a": c, "b": i, "id": f"{c}-{i}"} for i in range(20)
            ]
            s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
            clients.append((s, [r["id"] for r in requests]))
        # Every connection accepted by the daemon (ids count from 1) and its
        # requests sent: now stop.
        readUntil(process, rb"connection 50 from .* opened")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        readUntil(process, rb"draining \d+ connections")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
        for s, ids in clients:
            received = b""
            while chunk := s.recv(65536):
                received += chunk
            replies = [json.loads(l) for l in received.splitlines()]
            self.assertEqual([r["id"] for r in replies], ids)
            self.assertEqual(replies[0]["slept"], 0.5)
        process.wait(timeout=DEADLINE)
        self.assertLess(time.monotonic() - started, 5 + 2)
