"""
Subscribers: the backoff, and what they remember to resume (in memory).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from jsonproto.client.backoff import Backoff
from jsonproto.client.common import ProtocolError
from jsonproto.client.resume import HISTORY_GONE, NEW_EPOCH, Missed, Positions, Publication, Resync


def publication(channel: str, data: Any, offset: int, epoch: str = "e1") -> dict[str, Any]:
    return {"type": "PUBLICATION", "channel": channel, "data": data, "offset": offset, "epoch": epoch}


class BackoffTests(SynchronousTestCase):
    def test_exponentialCappedJittered(self) -> None:
        """
        Each failure in a row waits twice as long, up to the cap; jitter
        takes up to half of each wait off; a working connection starts
        over.  Without this, thousands of subscribers of a restarted
        server would hammer it in lockstep, or wait ever longer.
        """
        draws = iter([0.0] * 8 + [1.0, 0.5, 0.5])
        backoff = Backoff(initial=0.5, maximum=4, random=lambda: next(draws))
        self.assertEqual([backoff.next() for _ in range(8)], [0.5, 1, 2, 4, 4, 4, 4, 4])
        self.assertEqual([backoff.next(), backoff.next()], [2.0, 3.0])
        backoff.reset()
        self.assertEqual(backoff.next(), 0.5 * (1 - 0.5 * 0.5))

    def test_neverOverflows(self) -> None:
        """
        However many failures, the wait is the cap.
        """
        backoff = Backoff(initial=1, maximum=60, factor=10, jitter=0)
        backoff.failures = 10_000
        self.assertEqual(backoff.next(), 60)

    def test_badSettings(self) -> None:
        """
        Settings that would make no sense are refused, saying which.
        """
        for settings, word in [
            ({"initial": 0}, "initial"),
            ({"initial": 2, "maximum": 1}, "maximum"),
            ({"factor": 0.5}, "factor"),
            ({"jitter": 2}, "jitter"),
            ({"initial": float("nan")}, "initial"),
        ]:
            self.assertIn(word, str(self.assertRaises(ValueError, Backoff, **settings)))


class PositionsTests(SynchronousTestCase):
    """
    What a subscriber remembers, and hands on, without I/O.
    """

    def setUp(self) -> None:
        self.positions = Positions()
        self.positions.want("room:1")

    def test_firstSubscription(self) -> None:
        """
        A first SUBSCRIBE has no since; its reply sets where the channel
        is, and each publication after it moves on.
        """
        self.assertEqual(self.positions.request("room:1"), {"type": "SUBSCRIBE", "channel": "room:1"})
        self.assertEqual(self.positions.subscribed("room:1", {"status": "OK", "offset": 4, "epoch": "e1"}), [])
        self.assertEqual(self.positions.pushed(publication("room:1", "x", 5)), [Publication("room:1", "x", 5, "e1")])
        self.assertEqual(
            self.positions.request("room:1"), {"type": "SUBSCRIBE", "channel": "room:1", "since": {"offset": 5, "epoch": "e1"}}
        )

    def test_duplicatesDropped(self) -> None:
        """
        A publication at or before the last one handed on (a replay that
        overlaps) is dropped: none is handed on twice or out of order.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 0, "epoch": "e1"})
        got = []
        for offset in [1, 2, 2, 1, 3]:
            got += self.positions.pushed(publication("room:1", offset, offset))
        self.assertEqual([e.offset for e in got], [1, 2, 3])

    def test_recovered(self) -> None:
        """
        A recovered resume leaves the position where it was: the replayed
        publications that follow the reply are handed on.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 2, "epoch": "e1"})
        reply = {"status": "OK", "offset": 5, "epoch": "e1", "recovered": True, "replayed": 3}
        self.assertEqual(self.positions.subscribed("room:1", reply), [])
        got = [e.offset for o in (3, 4, 5) for e in self.positions.pushed(publication("room:1", o, o))]
        self.assertEqual(got, [3, 4, 5])

    def test_notRecovered(self) -> None:
        """
        A resume the server cannot give is a Resync at that point, saying
        why; publications carry on after the server's offset.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 2, "epoch": "e1"})
        tooOld = {"status": "OK", "offset": 900, "epoch": "e1", "recovered": False, "replayed": 0}
        self.assertEqual(self.positions.subscribed("room:1", tooOld), [Resync("room:1", "e1", 900, HISTORY_GONE)])
        self.assertEqual(self.positions.pushed(publication("room:1", "old", 900)), [])
        newEpoch = {"status": "OK", "offset": 1, "epoch": "e2", "recovered": False, "replayed": 0}
        self.assertEqual(self.positions.subscribed("room:1", newEpoch), [Resync("room:1", "e2", 1, NEW_EPOCH)])
        self.assertEqual(self.positions.pushed(publication("room:1", "new", 2, "e2")), [Publication("room:1", "new", 2, "e2")])

    def test_newEpochMidStream(self) -> None:
        """
        A publication of another epoch than the last (the server lost its
        history while connected) is preceded by a Resync.
        """
        self.positions.subscribed("room:1", {"status": "OK", "offset": 7, "epoch": "e1"})
        self.assertEqual(
            self.positions.pushed(publication("room:1", "x", 1, "e2")),
            [Resync("room:1", "e2", 0, NEW_EPOCH), Publication("room:1", "x", 1, "e2")],
        )

    def test_publicationBeforeFirstReply(self) -> None:
        """
        A publication that overtakes the reply to a first SUBSCRIBE is
        handed on, and the reply does not move the position back.
        """
        self.assertEqual(len(self.positions.pushed(publication("room:1", "x", 5))), 1)
        self.positions.subscribed("room:1", {"status": "OK", "offset": 4, "epoch": "e1"})
        self.assertEqual(self.positions.position("room:1"), ("e1", 5))

    def test_otherMessages(self) -> None:
        """
        MISSED is handed on; other pushes, channels not wanted and
        malformed publications are not.
        """
        self.assertEqual(self.positions.pushed({"type": "MISSED", "channel": "room:1", "count": 3}), [Missed("room:1", 3)])
        for message in [
            publication("room:2", "x", 1),
            {"type": "TICK"},
            [1],
            {"type": "PUBLICATION", "channel": "room:1", "offset": "1", "epoch": "e1"},
            {"type": "JOIN", "channel": "room:1"},
        ]:
            self.assertEqual(self.positions.pushed(message), [])
        self.positions.forget("room:1")
        self.assertEqual(self.positions.pushed(publication("room:1", "x", 1)), [])

    def test_replyWithoutPosition(self) -> None:
        """
        An OK reply without offset and epoch is not jsonproto's.
        """
        self.assertRaises(ProtocolError, self.positions.subscribed, "room:1", {"status": "OK"})
