"""
Refused connections are logged at most once a second per reason, with a
count of the rest: a client hammering a full daemon cannot fill its disk.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.limits import Limits
from jsonproto.server.registry import ConnectionRegistry
from jsonproto.server.factory import JSONServerFactory
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.server.refusallog import RefusalLog, refusalLog

from tests.support import LogCatcher, connect


class RefusalLogTests(SynchronousTestCase):
    def test_oneLinePerSecondAndACount(self) -> None:
        """
        Of a thousand refusals within a second, one is logged; when the
        second ends, one more line counts the other 999.  The next refusal
        after that is logged again.
        """
        clock = Clock()
        logs = LogCatcher(self)
        refusals = RefusalLog(clock)
        for n in range(1000):
            refusals.warn("server_busy", "refusing connection from {peer}: full", peer=f"10.0.0.1:{n}")
            clock.advance(0.0005)
        self.assertEqual(len(logs.matching("refusing connection")), 1)
        clock.advance(1)
        [summary] = logs.matching("more connections")
        self.assertEqual(summary["count"], 999)
        self.assertIn("refused 999 more connections (server_busy) in 1 seconds", formatEvent(summary))
        refusals.warn("server_busy", "refusing connection from {peer}: full", peer="10.0.0.1:1")
        self.assertEqual(len(logs.matching("refusing connection")), 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reasonsApart(self) -> None:
        """
        Each reason has its own budget.
        """
        clock = Clock()
        logs = LogCatcher(self)
        refusals = RefusalLog(clock)
        refusals.warn("server_busy", "busy")
        refusals.warn("too_many_connections", "too many")
        refusals.warn("server_busy", "busy")
        self.assertEqual((len(logs.matching("busy")), len(logs.matching("too many"))), (1, 1))

    def test_flush(self) -> None:
        """
        Flushing (as the service stops) writes the pending counts and
        leaves no timer.
        """
        clock = Clock()
        logs = LogCatcher(self)
        refusals = RefusalLog(clock)
        for _ in range(3):
            refusals.warn("server_busy", "busy")
        refusals.flush()
        self.assertEqual(logs.matching("more connections")[0]["count"], 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_connections(self) -> None:
        """
        Connections refused by the daemon's limits go through it: 50
        refused at once write one line and, a second later, one count.
        """
        clock = Clock()
        logs = LogCatcher(self)
        registry = ConnectionRegistry(maxConnections=1)
        factory = JSONServerFactory(defaultDispatcher(), limits=Limits(), connections=registry, clock=clock)
        connect(factory, 1)
        for n in range(50):
            connect(factory, 2 + n)
        self.assertEqual(len(logs.matching("refusing connection")), 1)
        clock.advance(1)
        self.assertEqual(logs.matching("more connections")[0]["count"], 49)
        self.assertIs(refusalLog(registry, clock), refusalLog(registry, Clock()))
