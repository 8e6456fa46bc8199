"""
Ending a connection without destroying what its peer has not read, and
saying why it ended.

A socket closed while the peer's data is still arriving makes the kernel
send a reset, which discards what the peer had received but not yet read;
so, as HTTP servers do, the server closes only its sending side, reads and
discards what still comes, and closes once the peer has closed its own
side (or after L{CLOSE_GRACE_PERIOD}).  Over TLS the close alert plays
that part.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import INegotiated
from twisted.python.failure import Failure

CLOSE_GRACE_PERIOD = 5.0
"""
Seconds a connection we have closed gets to take its last replies (and to
close its side) before it is aborted: long enough for a reading peer, short
enough that a peer that stopped reading cannot hold the socket.
"""


def closeGently(transport: Any) -> None:
    """
    Close C{transport}'s sending side once everything written is sent, and
    keep reading (and discarding) until the peer closes its side; where the
    transport cannot half-close (TLS, which sends its close alert instead),
    close it.  Whoever calls this aborts the connection if it is still open
    after L{CLOSE_GRACE_PERIOD}.
    """
    halfClose = getattr(transport, "loseWriteConnection", None)
    if halfClose is None or INegotiated.providedBy(transport):
        transport.loseConnection()
    else:
        halfClose()
        # Read (and discard) what still comes, so that nothing unread is
        # left when the socket closes.
        transport.resumeProducing()


def describeEnd(reason: Failure) -> str:
    """
    Why a connection ended, for the log; TLS failures say so.
    """
    if reason.type.__module__.startswith("OpenSSL"):
        args = getattr(reason.value, "args", ())
        details = args[0] if args else []
        if isinstance(details, list) and details and isinstance(details[0], tuple):
            return "TLS failed: " + "; ".join(str(d[-1]) for d in details)
        return f"TLS failed: {reason.value}"
    return reason.getErrorMessage()
