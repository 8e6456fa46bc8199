"""
Helpers shared by the tests: connections in memory, framed byte strings,
and a log catcher.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from jsonproto.server.connection import TrackedProtocol
from jsonproto.server.factory import TrackingFactory
from jsonproto.wire.framing import encodeInt32, encodeLine


def line(message: Any) -> bytes:
    """
    C{message} as the seed's client writes it: compact JSON and C{\\n}.
    """
    return encodeLine(json.dumps(message, separators=(",", ":")).encode("utf-8"))


def int32(message: Any) -> bytes:
    """
    C{message} in the length-prefixed framing.
    """
    return encodeInt32(json.dumps(message, separators=(",", ":")).encode("utf-8"))


def readLines(data: bytes) -> list[Any]:
    """
    Every reply in C{data}, which must end on a line boundary.
    """
    assert data == b"" or data.endswith(b"\n"), data
    return [json.loads(l) for l in data.split(b"\n")[:-1]]


def readInt32(data: bytes) -> list[Any]:
    """
    Every reply in C{data}, which must end on a frame boundary.
    """
    replies = []
    while data:
        (length,) = struct.unpack("!I", data[:4])
        assert len(data) >= 4 + length, data
        replies.append(json.loads(data[4 : 4 + length]))
        data = data[4 + length :]
    return replies


class ClosingTransport(StringTransport):
    """
    A L{StringTransport} whose close (clean or abort) reaches the protocol,
    as a real one's would once the reactor turns.
    """

    protocol: TrackedProtocol
    aborted = False

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.finishClose()

    def finishClose(self) -> None:
        """
        Complete a close the protocol asked for: the peer took everything.
        """
        if self.connected:
            self.connected = False
            self.disconnecting = True
            from twisted.internet.error import ConnectionDone
            from twisted.python.failure import Failure

            self.protocol.connectionLost(Failure(ConnectionDone()))


def connect(
    factory: TrackingFactory, port: int = 40000, host: str = "127.0.0.1"
) -> tuple[Any, ClosingTransport]:
    """
    A protocol from C{factory} connected to an in-memory transport.
    """
    peer = IPv4Address("TCP", host, port)
    proto = factory.buildProtocol(peer)
    transport = ClosingTransport(peerAddress=peer, lenient=True)
    transport.protocol = proto
    proto.makeConnection(transport)
    return proto, transport


class LogCatcher:
    """
    Collects log events while a test runs.
    """

    def __init__(self, test: TestCase) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def matching(self, text: str) -> list[LogEvent]:
        """
        The events whose text, as it would be logged, contains C{text}.
        """
        return [e for e in self.events if text in formatEvent(e)]


def noPendingCalls(test: TestCase, clock: Clock) -> None:
    """
    Fail if C{clock} still has timers: a closed connection must leave none.
    """
    test.assertEqual(clock.getDelayedCalls(), [])


class BufferingTransport(ClosingTransport):
    """
    A transport that, like a real one, holds what is written until the peer
    reads it, and pauses its registered producer while it holds more than
    C{bufferSize} bytes.
    """

    bufferSize = 64 * 1024
    peak = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        held = len(self.value())
        self.peak = max(self.peak, held)
        if held > self.bufferSize and self.producer is not None and not getattr(self, "_producerPaused", False):
            self._producerPaused = True
            self.producer.pauseProducing()

    def peerReads(self) -> bytes:
        """
        The peer takes everything written so far; a paused producer is
        resumed.
        """
        data = self.value()
        self.clear()
        if getattr(self, "_producerPaused", False):
            self._producerPaused = False
            self.producer.resumeProducing()
        return data


def connectBuffering(factory: TrackingFactory, port: int = 40000) -> tuple[Any, BufferingTransport]:
    """
    A protocol from C{factory} on a L{BufferingTransport}.
    """
    peer = IPv4Address("TCP", "127.0.0.1", port)
    proto = factory.buildProtocol(peer)
    transport = BufferingTransport(peerAddress=peer, lenient=True)
    transport.protocol = proto
    proto.makeConnection(transport)
    return proto, transport
