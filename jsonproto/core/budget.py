"""
The memory a server allows for messages still arriving, shared by every
connection of a service.

Each connection may hold an unfinished message of up to the size limit; at
the defaults that is a mebibyte a connection, and ten thousand connections
could make the server hold ten gibibytes.  A budget bounds the total, and
the share of any one client address, so that no client can take the
memory the others need: a message that would overdraw it is refused (see
L{jsonproto.core.pipeline}) instead.
"""

from __future__ import annotations

DEFAULT_TOTAL = 64 * 1024 * 1024
DEFAULT_PER_HOST = 16 * 1024 * 1024


class BufferBudget:
    """
    Bytes held in unfinished messages, in all and by client address.

    @ivar total: The most bytes held at once by all connections; 0 for no
        bound.
    @ivar perHost: The most held at once by the connections of one IP
        address; 0 for no bound.
    @ivar held: Bytes held now, by all.
    @ivar refused: Messages refused because the budget was spent.
    """

    __slots__ = ("total", "perHost", "held", "refused", "_byHost")

    def __init__(self, total: int = DEFAULT_TOTAL, perHost: int = DEFAULT_PER_HOST) -> None:
        if total < 0 or perHost < 0:
            raise ValueError("a buffer budget is 0 (unbounded) or more bytes")
        self.total = total
        self.perHost = perHost
        self.held = 0
        self.refused = 0
        self._byHost: dict[str | None, int] = {}

    def take(self, host: str | None, size: int) -> bool:
        """
        Hold C{size} more bytes for a connection from C{host}, if the budget
        allows.

        @return: Whether it did; if not, nothing is held.
        """
        byHost = self._byHost
        mine = byHost.get(host, 0) + size
        if (self.total and self.held + size > self.total) or (
            self.perHost and host is not None and mine > self.perHost
        ):
            self.refused += 1
            return False
        self.held += size
        byHost[host] = mine
        return True

    def give(self, host: str | None, size: int) -> None:
        """
        Release C{size} bytes held for a connection from C{host}.
        """
        self.held -= size
        left = self._byHost.get(host, 0) - size
        if left > 0:
            self._byHost[host] = left
        else:
            self._byHost.pop(host, None)

    def heldBy(self, host: str | None) -> int:
        """
        Bytes held now for the connections of C{host}.
        """
        return self._byHost.get(host, 0)
