"""
How long a subscriber waits before it tries to connect again:
L{Backoff}, exponential with jitter, capped, shared by both clients.

Waiting longer after each failure spares a server that is struggling; the
jitter spreads out the thousands of subscribers a server's restart
disconnects at once, so that they do not all come back in the same
instant; the cap keeps a subscriber coming back within a bounded time
once the server is there again.
"""

from __future__ import annotations

import math
import random as _random
from typing import Callable


def _check(name: str, value: float, low: float, high: float = math.inf, lowOpen: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if value < low or (lowOpen and value == low) or value > high:
        bound = f"greater than {low:g}" if lowOpen else f"at least {low:g}"
        raise ValueError(f"{name} must be {bound}{'' if high == math.inf else f' and at most {high:g}'}, not {value!r}")
    return float(value)


class Backoff:
    """
    The waits between attempts to connect: C{initial} seconds after the
    first failure, C{factor} times longer after each failure in a row, never
    more than C{maximum}; each wait shortened by a random part of it, up to
    C{jitter} (0.5: somewhere between half the wait and all of it).  A
    connection that works (its subscriptions renewed) starts the waits
    over: L{reset}.

    @ivar failures: Attempts failed in a row since the last L{reset}.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """
        @param random: A number from 0 to 1 for each wait (tests give one
            that always says the same).
        @raise ValueError: C{initial} or C{maximum} not above 0, C{maximum}
            below C{initial}, C{factor} below 1, C{jitter} outside 0 to 1.
        """
        self.initial = _check("initial", initial, 0, lowOpen=True)
        self.maximum = _check("maximum", maximum, self.initial)
        self.factor = _check("factor", factor, 1)
        self.jitter = _check("jitter", jitter, 0, 1)
        self._random = random
        self.failures = 0

    def next(self) -> float:
        """
        Another attempt failed: the seconds to wait before the next.
        """
        try:
            wait = min(self.maximum, self.initial * self.factor**self.failures)
        except OverflowError:
            wait = self.maximum
        self.failures += 1
        return wait * (1 - self.jitter * self._random())

    def reset(self) -> None:
        """
        A connection worked: the next failure waits C{initial} again.
        """
        self.failures = 0
