"""
The counts the fast path adds to (C{jsonproto.core.counters}) behave as int
attributes, whether they are C fields or the Python twins' slots.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from jsonproto.core import counters
from jsonproto.server.connection import ConnectionInfo
from jsonproto.dispatch.dispatcher import HandlerLatency

try:
    from jsonproto.core import _speedups
except ImportError:  # pragma: no cover - test_fastpath says whether it must exist
    _speedups = None  # type: ignore[assignment]


def _extension() -> Any:
    if _speedups is None:
        raise SkipTest("built without the C extension")
    return _speedups


class CountersTests(SynchronousTestCase):
    """
    A connection's counts: C{messagesIn}, C{messagesOut}, C{bytesIn},
    C{bytesOut}.
    """

    def assertCounts(self, info: Any) -> None:
        names = ("messagesIn", "messagesOut", "bytesIn", "bytesOut")
        self.assertEqual([getattr(info, name) for name in names], [0, 0, 0, 0])
        for n, name in enumerate(names, start=1):
            setattr(info, name, getattr(info, name) + n * 1000)
        info.messagesIn += 1
        self.assertEqual([getattr(info, name) for name in names], [1001, 2000, 3000, 4000])
        self.assertEqual({type(getattr(info, name)) for name in names}, {int})
        # A connection's bytes may pass 4 GiB.
        info.bytesIn += 2**40
        self.assertEqual(info.bytesIn, 3000 + 2**40)

    def test_inUse(self) -> None:
        """
        The connection record has its counts from whichever is in use.
        """
        self.assertTrue(issubclass(ConnectionInfo, counters.Counters))
        self.assertCounts(ConnectionInfo(1, "peer", None, 0.0, 0.0))

    def test_python(self) -> None:
        """
        The Python twin, used without the extension.
        """

        class Info(counters.PyCounters):
            __slots__ = ()

        self.assertCounts(Info())

    def test_C(self) -> None:
        """
        The C fields, which the fast path adds to.
        """

        class Info(_extension().Counters):  # type: ignore[misc]
            __slots__ = ()

        self.assertCounts(Info())


class TallyTests(SynchronousTestCase):
    """
    One count in C{n}: a dispatcher's handler calls, and its messages of each
    type.
    """

    def assertTally(self, tally: Any) -> None:
        self.assertEqual(tally.n, 0)
        tally.n += 1
        tally.n += 2**40
        self.assertEqual((tally.n, type(tally.n)), (1 + 2**40, int))

    def test_python(self) -> None:
        self.assertTally(counters.PyTally())

    def test_C(self) -> None:
        self.assertTally(_extension().Tally())

    def test_latency(self) -> None:
        """
        HandlerLatency counts messages by type and handler calls in Tallies
        of the kind in use, and says them as plain ints; one call in
        C{SAMPLE} is timed.
        """
        latency = HandlerLatency()
        started = [latency.countCall(t) for t in ["SUM", "GREETING", "SUM"] * latency.SAMPLE]
        latency.count("(unknown)")
        self.assertEqual(latency.counts, {"SUM": 2 * latency.SAMPLE, "GREETING": latency.SAMPLE, "(unknown)": 1})
        self.assertEqual(latency.calls, 3 * latency.SAMPLE)
        self.assertEqual([i for i, s in enumerate(started, start=1) if s], [latency.SAMPLE * k for k in (1, 2, 3)])
        self.assertEqual({type(t) for t in latency._tallies.values()} | {type(latency._calls)}, {counters.Tally})
