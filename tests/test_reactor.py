"""
jsonproto's epoll reactor (jsonproto.compat.EPollReactor, which twistd
jsonproto runs on) dispatches events as Twisted's epoll reactor does: what
a selectable's doRead or doWrite returns or raises decides whether, and
why, it is disconnected.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet import error
from twisted.internet.main import CONNECTION_DONE
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
