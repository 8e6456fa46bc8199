"""
What a dispatcher counts: messages by type, the errors among them, and how
long their handlers took, in a histogram per type.

These counts are kept at every message, so they are cheap: the compiled
core adds to C integers here (this module is compiled with it; see
L{jsonproto.core.compiled}), and a scrape reads them (L{jsonproto.daemon.metrics}).
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter
from typing import Any

UNKNOWN = "(unknown)"
"""
The label of messages whose type no handler answers: labels stay as few as
the registered types, whatever clients send.
"""

INVALID = "(invalid)"
"""
The label of messages with no usable type (not an object, no string type,
a bad id).
"""

LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)
"""
Upper bounds, in seconds, of the handler latency histogram's buckets.
"""


SAMPLE = 64
"""
Synchronous handlers are timed one call in this many.
"""
_SAMPLE = SAMPLE  # a C integer in the compiled module


class Tally:
    """
    One count, 0 at first, in C{n}: the messages of one type.
    """

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class HandlerLatency:
    """
    Messages counted by type, and how long their handlers took.

    Counting is exact.  Timing every call would cost more than a fast
    handler itself, so synchronous handlers are timed one call in
    L{SAMPLE}; handlers that return a Deferred or are coroutines are timed
    on every call, from their return to their reply.
    """

    SAMPLE = SAMPLE

    __slots__ = ("_tallies", "_calls", "errors", "buckets", "sums")

    def __init__(self) -> None:
        # A type's Tally, once made, is never replaced.
        self._tallies: dict[str, Tally] = {}
        self._calls = 0
        # Requests of each type answered with an error (counted on the error
        # path only; "(unknown)" and "(invalid)" ones all are).
        self.errors: dict[str, int] = {}
        # Per type: bucket counts (the last for +Inf), and the sum.
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    @property
    def counts(self) -> dict[str, int]:
        """
        Messages counted so far, by type: a new dict at each call.
        """
        return {label: tally.n for label, tally in self._tallies.items()}

    @property
    def calls(self) -> int:
        """
        Handler calls so far, which choose the ones timed.
        """
        return self._calls

    def count(self, label: str) -> None:
        """
        Count one message under C{label}: its type, or L{UNKNOWN} or
        L{INVALID}.
        """
        tally = self._tallies.get(label)
        if tally is None:
            tally = Tally()
            self._tallies[label] = tally
        tally.n += 1

    def countCall(self, messageType: str) -> float:
        """
        Count a message of a registered type and the call of its handler.

        @return: The call's start (L{perf_counter}) if it is one to time,
            else 0.0.
        """
        self.count(messageType)
        self._calls += 1
        return perf_counter() if self._calls % _SAMPLE == 0 else 0.0

    def countError(self, messageType: Any) -> None:
        """
        Count a request of C{messageType} answered with an error.
        """
        label = messageType if isinstance(messageType, str) else INVALID
        self.errors[label] = self.errors.get(label, 0) + 1

    def observe(self, messageType: str, seconds: float) -> None:
        """
        Add one handler time to C{messageType}'s histogram.
        """
        buckets = self.buckets.get(messageType)
        if buckets is None:
            buckets = self.buckets[messageType] = [0] * (len(LATENCY_BUCKETS) + 1)
            self.sums[messageType] = 0.0
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sums[messageType] += seconds

    def finished(self, messageType: str, started: float) -> None:
        """
        A handler call ends: observe it if it was one timed (C{started} is
        not 0.0).
        """
        if started:
            self.observe(messageType, perf_counter() - started)

    def observeLater(self, result: Any, messageType: str, started: float) -> Any:
        """
        A Deferred callback: observe, and pass the result on.
        """
        self.observe(messageType, perf_counter() - started)
        return result
