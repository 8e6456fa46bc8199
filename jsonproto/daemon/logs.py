"""
The daemon's logs: one JSON object per event for log shippers, and the
C{--log-level} filter.

    twistd --logger jsonproto.daemon.logs.jsonLogObserver -n jsonproto ...

Every event about a connection carries its C{connectionId} and C{peer} as
fields of their own, so a shipper can index them without parsing text.
Events are written to standard output, one per line (Twisted's JSON log
format: each record starts with an ASCII record separator, 0x1E).
"""

from __future__ import annotations

import sys
from typing import Callable

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogPublisher,
    jsonFileLogObserver,
)

from jsonproto import compat


def jsonLogObserver() -> ILogObserver:
    """
    The observer twistd's C{--logger} option asks for.
    """
    return jsonFileLogObserver(sys.stdout)


def filterLevel(level: LogLevel, publisher: LogPublisher = globalLogPublisher) -> Callable[[], None]:
    """
    From now on, pass only events of C{level} or more severe to the
    observers C{publisher} has now (those twistd set up: its log file,
    standard output, syslog, or the C{--logger} given), as C{--log-level}
    asks.

    @return: Puts the observers back as they were.
    """
    wrapped = []
    for observer in compat.logObservers(publisher):
        filtering = FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=level)])
        publisher.removeObserver(observer)
        publisher.addObserver(filtering)
        wrapped.append((observer, filtering))

    def restore() -> None:
        for observer, filtering in wrapped:
            publisher.removeObserver(filtering)
            publisher.addObserver(observer)
        wrapped.clear()

    return restore
