"""
Counts the fast path adds to at every message and every read: C integers
when C{jsonproto.core._speedups} is built, int attributes otherwise.

Adding to an int attribute makes a new int object and drops the old one;
at a million messages a second that is a tenth of the daemon's work.  The C
fast path adds to C fields of these objects instead, and Python reads and
writes them as ints.  The Python twins here have the same attributes, for
when the extension is not built or is switched off with
C{JSONPROTO_NO_SPEEDUPS}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jsonproto.core.extension import speedups


class PyCounters:
    """
    A connection's message and byte counts, all 0 at first: the base of
    L{jsonproto.server.connection.ConnectionInfo}.
    """

    __slots__ = ("messagesIn", "messagesOut", "bytesIn", "bytesOut")

    messagesIn: int
    messagesOut: int
    bytesIn: int
    bytesOut: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Not __init__: a dataclass built on this writes its own, which
        # would not call this one.
        self = super().__new__(cls)
        self.messagesIn = self.messagesOut = self.bytesIn = self.bytesOut = 0
        return self


class PyTally:
    """
    One count, 0 at first, in C{n}: handler calls, or messages of one type.
    """

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


Counters = PyCounters
Tally = PyTally
if not TYPE_CHECKING and speedups is not None:
    Counters, Tally = speedups.Counters, speedups.Tally
