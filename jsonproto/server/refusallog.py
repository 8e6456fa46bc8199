"""
The log lines of refused connections, rate-limited.

A client hammering a daemon at its connection limit would otherwise write a
line per attempt: thousands a second, each the same.  For each reason (the
refusal's error code) at most one line is written per interval; the ones
held back are counted, and a summary line with the count follows when the
interval ends.  The metrics count every refusal regardless.
"""

from __future__ import annotations

import weakref
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

INTERVAL = 1.0
"""Seconds for which one line stands for all refusals of its reason."""


class _Reason:
    __slots__ = ("until", "suppressed", "summary")

    def __init__(self, until: float) -> None:
        self.until = until
        self.suppressed = 0
        self.summary: IDelayedCall | None = None


class RefusalLog:
    """
    Writes refusal lines for one service, at most one per reason per
    L{INTERVAL}, then a count of the rest.

    @ivar clock: The source of time and of the summary's timer.
    """

    def __init__(self, clock: IReactorTime, interval: float = INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self._reasons: dict[str, _Reason] = {}

    def warn(self, reason: str, format: str, **fields: Any) -> None:
        """
        Log a refusal for C{reason}, unless one was logged less than an
        interval ago: then count it for the summary.
        """
        now = self.clock.seconds()
        state = self._reasons.get(reason)
        if state is None or now >= state.until:
            self._reasons[reason] = _Reason(now + self.interval)
            log.warn(format, reason=reason, **fields)
            return
        state.suppressed += 1
        if state.summary is None:
            state.summary = self.clock.callLater(state.until - now, self._summarise, reason)

    def _summarise(self, reason: str) -> None:
        state = self._reasons.pop(reason, None)
        if state is None or not state.suppressed:
            return
        state.summary = None
        log.warn(
            "refused {count} more connections ({reason}) in {interval:g} seconds, not logged one by one",
            count=state.suppressed,
            reason=reason,
            interval=self.interval,
        )

    def flush(self) -> None:
        """
        Write the summaries now and cancel their timers, as the service
        stops.
        """
        for reason, state in list(self._reasons.items()):
            if state.summary is not None and state.summary.active():
                state.summary.cancel()
            self._summarise(reason)
        self._reasons.clear()


_logs: weakref.WeakKeyDictionary[Any, RefusalLog] = weakref.WeakKeyDictionary()


def refusalLog(registry: Any, clock: IReactorTime) -> RefusalLog:
    """
    The refusal log of the service whose connections C{registry} holds
    (created with C{clock} on first use): listeners sharing a registry
    share one budget of lines.
    """
    found = _logs.get(registry)
    if found is None:
        found = _logs[registry] = RefusalLog(clock)
    return found
