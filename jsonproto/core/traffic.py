"""
A connection's traffic: messages and bytes, in and out.

Counted at every read and every message, so kept where adding is cheap:
C integers when the core is compiled (L{jsonproto.core.compiled}), plain
attributes otherwise.  The pipeline adds to one; the connection's record
(L{jsonproto.server.registry.ConnectionInfo}) reads it.
"""

from __future__ import annotations


class Traffic:
    """
    Messages received whole, messages sent, bytes received and bytes sent by
    one connection, all 0 at first.
    """

    __slots__ = ("messagesIn", "messagesOut", "bytesIn", "bytesOut")

    def __init__(self) -> None:
        self.messagesIn = 0
        self.messagesOut = 0
        self.bytesIn = 0
        self.bytesOut = 0

    def __repr__(self) -> str:
        return (
            f"Traffic(messagesIn={self.messagesIn}, messagesOut={self.messagesOut}, "
            f"bytesIn={self.bytesIn}, bytesOut={self.bytesOut})"
        )
