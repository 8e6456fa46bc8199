"""
jsonproto's epoll reactor (jsonproto.compat.EPollReactor, which twistd
jsonproto runs on) dispatches events as Twisted's epoll reactor does: what
a selectable's doRead or doWrite returns or raises decides whether, and
why, it is disconnected; and it reads a TCP connection that is only
readable itself, with the same outcomes.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import error
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from jsonproto.compat import EPollReactor


class _Selectable:
    """
    A descriptor the reactor watches, recording what it is asked to do.
    """

    def __init__(self, sock: socket.socket, doRead: Any = None) -> None:
        self.sock = sock
        self.calls: list[str] = []
        self.lost: list[Failure] = []
        self._doRead = doRead or (lambda: None)

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> Any:
        self.calls.append("read")
        return self._doRead()

    def doWrite(self) -> Any:
        self.calls.append("write")
        return None

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason)

    def logPrefix(self) -> str:
        return "test"


def closeReactor(reactor: EPollReactor) -> None:
    """
    Close a reactor that never ran: its poller, and its waker's pipe, or
    each test leaves descriptors open behind it (and a suite that has used
    up the low numbers cannot pass a socket to /bin/sh, which takes none
    above 9).
    """
    reactor._poller.close()
    reactor.waker.connectionLost(None)


def openDescriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class ClosingTests(SynchronousTestCase):
    def test_closeReactor(self) -> None:
        """
        A reactor made and closed by these tests leaves no descriptor open.
        """
        if not os.path.isdir("/proc/self/fd"):
            raise SkipTest("no /proc/self/fd to count descriptors with")
        before = openDescriptors()
        closeReactor(EPollReactor())
        self.assertEqual(openDescriptors(), before)


class EPollReactorTests(SynchronousTestCase):
    """
    The reactor as it runs here.
    """

    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.addCleanup(closeReactor, self.reactor)
        self.ours, self.theirs = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(self.theirs.close)
        self.theirs.send(b"x")  # ours is readable

    def poll(self, selectable: _Selectable, write: bool = False) -> None:
        self.reactor.addReader(selectable)
        if write:
            self.reactor.addWriter(selectable)
        self.reactor.doPoll(0)

    def test_readable(self) -> None:
        """
        A readable descriptor is read, and stays connected.
        """
        selectable = _Selectable(self.ours)
        self.poll(selectable)
        self.assertEqual((selectable.calls, selectable.lost), (["read"], []))

    def test_readAndWrite(self) -> None:
        """
        A descriptor both readable and writable is read, then written.
        """
        selectable = _Selectable(self.ours)
        self.poll(selectable, write=True)
        self.assertEqual(selectable.calls, ["read", "write"])

    def test_readSaysDone(self) -> None:
        """
        What doRead returns is why the descriptor is disconnected.
        """
        selectable = _Selectable(self.ours, doRead=lambda: CONNECTION_DONE)
        self.poll(selectable)
        [reason] = selectable.lost
        self.assertTrue(reason.check(error.ConnectionDone))
        self.assertNotIn(selectable, self.reactor.getReaders())

    def test_readRaises(self) -> None:
        """
        An exception from doRead is logged, and disconnects the descriptor
        with it as the reason.
        """

        def broken() -> None:
            raise ZeroDivisionError()

        selectable = _Selectable(self.ours, doRead=broken)
        self.poll(selectable)
        [reason] = selectable.lost
        self.assertTrue(reason.check(ZeroDivisionError))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_descriptorGone(self) -> None:
        """
        A selectable whose fileno() is -1 by the time its event is handled
        is not read but disconnected.
        """
        selectable = _Selectable(self.ours)
        self.reactor.addReader(selectable)
        selectable.fileno = lambda: -1  # type: ignore[method-assign]
        self.reactor.doPoll(0)
        self.assertEqual(selectable.calls, [])
        [reason] = selectable.lost
        self.assertTrue(reason.check(error.ConnectionFdescWentAway))


class _Recording(Protocol):
    """
    A server protocol recording what it is given, answering C{reply(data)}
    (None unless a test sets it) as its C{dataReceived}'s return value.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[Failure] = []
        self.reply: Any = lambda data: None

    def dataReceived(self, data: bytes) -> Any:
        self.received.append(data)
        return self.reply(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.append(reason)


class _WouldBlockOnce:
    """
    A socket whose first C{recv} finds nothing to read (as a spurious
    wakeup does), standing in for a connection's own.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.blocked = False

    def recv(self, size: int) -> bytes:
        if not self.blocked:
            self.blocked = True
            raise BlockingIOError(errno.EWOULDBLOCK, "would block")
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ConnectionReadTests(SynchronousTestCase):
    """
    A TCP connection that is only readable is read by the loop itself
    (without Twisted's _doReadOrWrite), with every outcome of
    tcp.Connection.doRead kept: data to the protocol, a peer's close, a
    protocol's exception or returned reason as why it is disconnected.
    On real sockets on 127.0.0.1.
    """

    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.addCleanup(closeReactor, self.reactor)
        self.protocols: list[_Recording] = []
        factory = Factory()
        factory.protocol = _Recording
        factory.buildProtocol = self._build  # type: ignore[method-assign]
        self.port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self._stop)
        self.passedOn: list[Any] = []
        original = self.reactor._doReadOrWrite

        def recording(selectable: Any, fd: int, event: int) -> None:
            self.passedOn.append(selectable)
            original(selectable, fd, event)

        self.reactor._doReadOrWrite = recording  # type: ignore[method-assign]
        self.client = socket.create_connection(("127.0.0.1", self.port.getHost().port))
        self.addCleanup(self.client.close)
        self.server = self.until(lambda: self.protocols and self.protocols[0])

    def _build(self, addr: Any) -> _Recording:
        protocol = _Recording()
        self.protocols.append(protocol)
        return protocol

    def _stop(self) -> None:
        for protocol in self.protocols:
            if protocol.transport is not None and not protocol.lost:
                protocol.transport.abortConnection()
        self.port.stopListening()
        self.until(lambda: not self.port.connected and all(p.lost for p in self.protocols))

    def until(self, condition: Any) -> Any:
        """
        Run the reactor's loop, a bounded number of times, until
        C{condition()} is true; return what it returned.
        """
        for _ in range(200):
            result = condition()
            if result:
                return result
            self.reactor.iterate(0.05)
        self.fail("the reactor never got there")

    def test_data(self) -> None:
        """
        What the peer sends reaches the protocol, read by the loop itself:
        the connection is not handed to _doReadOrWrite (the listening port,
        which accepted it, is).
        """
        self.passedOn.clear()
        self.client.sendall(b"hello")
        self.until(lambda: self.server.received)
        self.assertEqual(self.server.received, [b"hello"])
        self.assertNotIn(self.server.transport, self.passedOn)
        self.assertEqual(self.server.lost, [])

    def test_peerCloses(self) -> None:
        """
        A peer that closes its side disconnects the connection cleanly.
        """
        self.client.close()
        [reason] = self.until(lambda: self.server.lost)
        self.assertTrue(reason.check(error.ConnectionDone))
        self.assertEqual(self.server.received, [])

    def test_wouldBlock(self) -> None:
        """
        A read that finds nothing after all (EWOULDBLOCK) changes nothing:
        the connection stays, and what arrives next is read.
        """
        stand_in = _WouldBlockOnce(self.server.transport.socket)
        self.server.transport.socket = stand_in
        self.client.sendall(b"late")
        self.until(lambda: stand_in.blocked)
        self.assertEqual((self.server.received, self.server.lost), ([], []))
        self.until(lambda: self.server.received)
        self.assertEqual(self.server.received, [b"late"])

    def test_protocolRaises(self) -> None:
        """
        An exception from the protocol's dataReceived is logged, and is
        why the connection is disconnected.
        """

        def broken(data: bytes) -> None:
            raise ZeroDivisionError()

        self.server.reply = broken
        self.client.sendall(b"x")
        [reason] = self.until(lambda: self.server.lost)
        self.assertTrue(reason.check(ZeroDivisionError))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_protocolReturnsReason(self) -> None:
        """
        A reason the protocol's dataReceived returns disconnects the
        connection with it, as Twisted's doRead does.
        """
        self.server.reply = lambda data: CONNECTION_LOST
        self.client.sendall(b"x")
        [reason] = self.until(lambda: self.server.lost)
        self.assertTrue(reason.check(error.ConnectionLost))
