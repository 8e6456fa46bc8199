"""
What one connection holds of the publications it has not taken yet.

Publications reach a subscriber as fast as anyone publishes; a subscriber
that reads slowly (or not at all) must not make the server hold them
without bound, nor slow the others down.  Each connection's publications
wait here while its transport is full, up to a bound in bytes; past it,
the channel's policy applies: C{"disconnect"} closes the connection, with
a logged reason (the default: the subscriber learns it must resync), or
C{"drop"} drops its oldest waiting publications and, once it reads again,
tells it how many it missed of each channel with a C{MISSED} message.

Publications delivered in one turn of the reactor go out in one write: to
a subscriber that keeps up, the same bytes as to every other one
(L{Turn}), written straight to its connection at the end of the turn.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from jsonproto.wire.codec import encode
from jsonproto.wire.framing import encodeInt32

DISCONNECT = "disconnect"
DROP = "drop"
POLICIES = (DISCONNECT, DROP)

DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024


class Subscriber(Protocol):
    """
    The connection an outbox writes to (a JSON message protocol).
    """

    lengthPrefixed: bool

    def canTakePublications(self) -> bool: ...

    def writePublications(self, data: bytes) -> None: ...

    def closeConnection(self, reason: str, kind: str = "server") -> None: ...


@dataclass
class Tally:
    """
    What the slow-subscriber policies have done to all of a broker's
    outboxes, counted as it happens: an outbox goes with its connection,
    but its drops and its disconnection stay counted here (for metrics).

    @ivar dropped: Publications dropped (the C{drop} policy).
    @ivar slowDisconnects: Connections closed for falling behind (the
        C{disconnect} policy).
    """

    dropped: int = 0
    slowDisconnects: int = 0


class Outbox:
    """
    One connection's publications waiting to be written.

    @ivar queuedBytes: Bytes waiting now.
    @ivar dropped: Publications dropped so far (the C{drop} policy).
    @ivar tally: Where drops and disconnections are counted as well: the
        broker's, shared by all its outboxes.
    """

    def __init__(
        self, subscriber: Subscriber, limit: int, policyFor: Callable[[str], str], tally: Tally | None = None
    ) -> None:
        self._subscriber = subscriber
        self._limit = limit
        self._policyFor = policyFor
        self.tally = Tally() if tally is None else tally
        # (channel, frame) in the order delivered.
        self._waiting: deque[tuple[str, bytes]] = deque()
        self.queuedBytes = 0
        self.dropped = 0
        self._missed: dict[str, int] = {}
        self.closed = False

    def add(self, channel: str, frame: bytes) -> None:
        """
        Queue one framed publication; it is written at L{flush}.  Past the
        bound, while the connection cannot take publications, the policy of
        the channels waiting applies.  A connection that can is written to
        at the end of the turn, however much the turn brought: a burst of
        publications, or one larger than the bound, does not make a
        subscriber that keeps up slow.
        """
        if self.closed:
            return
        self._waiting.append((channel, frame))
        self.queuedBytes += len(frame)
        if self.queuedBytes > self._limit and not self._subscriber.canTakePublications():
            self._overflow()

    def addMessage(self, channel: str, payload: bytes, cache: list[bytes | None]) -> None:
        """
        L{add} an encoded message, framed for this connection (once per
        framing for every outbox sharing C{cache}, see L{frameFor}).
        """
        self.add(channel, frameFor(self._subscriber, payload, cache))

    def _overflow(self) -> None:
        waiting = self._waiting
        kept: deque[tuple[str, bytes]] = deque()
        dropped = 0
        # Drop the oldest of the channels that allow it, until under the bound.
        while waiting and self.queuedBytes > self._limit:
            channel, frame = waiting.popleft()
            if self._policyFor(channel) == DROP:
                self.queuedBytes -= len(frame)
                dropped += 1
                self._missed[channel] = self._missed.get(channel, 0) + 1
            else:
                kept.append((channel, frame))
        kept.extend(waiting)
        self._waiting = kept
        self.dropped += dropped
        self.tally.dropped += dropped
        if self.queuedBytes > self._limit:
            self.closed = True
            self.tally.slowDisconnects += 1
            self._waiting.clear()
            self.queuedBytes = 0
            self._subscriber.closeConnection(
                f"a subscriber fell behind by more than {self._limit} bytes of publications", "slow_subscriber"
            )

    @property
    def pending(self) -> bool:
        """
        Whether anything waits to be written.
        """
        return bool(self._waiting) or bool(self._missed)

    def deliver(self, channel: str, turn: Turn, now: bool) -> bool:
        """
        This turn's publications of C{channel}: with C{now}, written at once
        in one write if nothing waits before them and the connection can
        take them (the bytes every such subscriber gets); else queued, one
        by one, under the bound.

        @return: Whether they wait to be written (by L{flush}).
        """
        if self.closed:
            return False
        subscriber = self._subscriber
        if now and not self._waiting and not self._missed and subscriber.canTakePublications():
            subscriber.writePublications(turn.joined(subscriber.lengthPrefixed))
            return False
        for frame in turn.frames(subscriber.lengthPrefixed):
            self.add(channel, frame)
        return not self.closed

    @property
    def blocked(self) -> bool:
        """
        Whether publications wait because the connection cannot take them
        now (its transport is full: a slow subscriber), rather than for the
        end of the turn.
        """
        return bool(self._waiting) and not self._subscriber.canTakePublications()

    def flush(self) -> None:
        """
        Write what waits, in one write, if the connection can take it now;
        first, for each channel it missed publications of, a C{MISSED}
        message with how many.
        """
        if self.closed or not self.pending or not self._subscriber.canTakePublications():
            return
        parts: list[bytes] = []
        if self._missed:
            for channel, count in self._missed.items():
                parts.append(self._frame(encode({"type": "MISSED", "channel": channel, "count": count})))
            self._missed = {}
        parts.extend(frame for _, frame in self._waiting)
        self._waiting.clear()
        self.queuedBytes = 0
        self._subscriber.writePublications(b"".join(parts))

    def _frame(self, payload: bytes) -> bytes:
        return encodeInt32(payload) if self._subscriber.lengthPrefixed else payload + b"\n"


class Turn:
    """
    The publications of one channel delivered in one turn of the reactor,
    framed once per framing for every subscriber: each frame, and all of
    them joined (what a subscriber that keeps up is written).
    """

    def __init__(self, payloads: list[bytes]) -> None:
        self._payloads = payloads
        self._frames: list[list[bytes] | None] = [None, None]
        self._joined: list[bytes | None] = [None, None]

    def frames(self, lengthPrefixed: bool) -> list[bytes]:
        frames = self._frames[lengthPrefixed]
        if frames is None:
            frames = self._frames[lengthPrefixed] = (
                [encodeInt32(p) for p in self._payloads] if lengthPrefixed else [p + b"\n" for p in self._payloads]
            )
        return frames

    def joined(self, lengthPrefixed: bool) -> bytes:
        joined = self._joined[lengthPrefixed]
        if joined is None:
            joined = self._joined[lengthPrefixed] = b"".join(self.frames(lengthPrefixed))
        return joined


def frameFor(subscriber: Any, payload: bytes, cache: list[bytes | None]) -> bytes:
    """
    C{payload} framed for C{subscriber}'s framing, made once per framing
    for all subscribers (C{cache} holds the line and the int32 frame).
    """
    index = 1 if subscriber.lengthPrefixed else 0
    frame = cache[index]
    if frame is None:
        frame = cache[index] = encodeInt32(payload) if index else payload + b"\n"
    return frame
