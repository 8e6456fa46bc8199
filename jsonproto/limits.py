"""
The per-connection limits of a listener, in one value.

Each limit protects against a particular way a peer (broken or hostile)
can take more than its share; docs/operations.md says which.  Connection
counts are not here: they belong to the L{ConnectionRegistry} that several
listeners share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """
    Limits on one connection.  Timeouts are in seconds; 0 switches a
    timeout or a count off (except C{maxMessageSize} and C{maxPending},
    which must be at least 1).

    @ivar idleTimeout: Close a connection that completes no message, and
        has none being answered, for this long.
    @ivar maxMessageSize: The longest message accepted, in bytes.
    @ivar maxPending: Requests answered asynchronously that may be in
        flight at once; past it, reading stops until one completes.
    @ivar requestTimeout: Answer a request whose handler takes longer with
        "Request timed out" (and cancel the handler).
    @ivar sendTimeout: Abort a connection whose peer has not taken its
        replies (reading is paused for backpressure) for this long.
    @ivar messageTimeout: Close a connection that has sent part of a
        message and not finished it within this long.
    @ivar maxErrors: The error budget: close a connection, telling it why,
        once its bad messages add up to more than this, less those forgiven
        by C{errorDecay}.  However a client interleaves good and bad
        messages, one that is mostly wrong runs out.
    @ivar errorDecay: Bad messages forgiven per second: a client that makes
        an occasional mistake never runs out of budget.
    @ivar handshakeTimeout: Drop a TLS connection whose handshake has not
        completed within this long.
    @ivar turnBudget: The longest, in seconds, that one connection's
        messages may keep the server before the other connections get their
        turn; the rest are answered on the next turn.  0 for no bound.
    """

    idleTimeout: float = 300.0
    maxMessageSize: int = 1024 * 1024
    maxPending: int = 64
    requestTimeout: float = 30.0
    sendTimeout: float = 60.0
    messageTimeout: float = 30.0
    maxErrors: int = 100
    errorDecay: float = 10.0
    handshakeTimeout: float = 10.0
    turnBudget: float = 0.00005

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name} must be a number, not {value!r}")
            if not (0 <= value < math.inf):
                raise ValueError(f"{f.name} must be 0 or more and finite, not {value!r}")
        for name in ("maxMessageSize", "maxPending"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
