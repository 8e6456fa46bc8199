"""
The fan-out of one process's publications to its subscribers, once a turn.

A publication is encoded once (by the engine) and framed once per framing;
the same bytes go to every subscriber, in one write per subscriber at the
end of the reactor's turn however many publications the turn brought.  The
publications of a turn wait in one list (L{_Pending}), not in each
subscriber's queue: at the end of the turn, they are joined once and the
same bytes are written straight to each subscriber that keeps up, and
queued only for those that cannot take them now
(L{jsonproto.channels.outbox}).  So the cost of a publication does not
grow with its subscribers; only the write to each does.

Who subscribes to what is the broker's to decide
(L{jsonproto.channels.broker}); this module only delivers to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from jsonproto.channels.engine import Publication
from jsonproto.channels.outbox import Outbox, Turn


@dataclass(eq=False)
class Subscription:
    """
    One connection's subscription to one channel.

    @ivar presence: Whether it is told when others subscribe and leave.
    @ivar held: Publications delivered while what it missed is being
        replayed, to follow the replay.
    @ivar epoch: The channel's epoch it was last told of (its reply, or a
        C{RESYNC} since).
    """

    context: Any
    channel: str
    presence: bool = False
    held: list[Publication] | None = None
    lastOffset: int = 0
    epoch: str = ""
    outbox: Outbox | None = None


@dataclass(eq=False)
class _Pending:
    """
    Publications of one channel delivered this turn and not yet handed to
    its subscribers, in order.  Until they are, nothing else may change
    what those subscribers are sent: the channel's subscribers stay those
    the publications were delivered to, and nothing is queued for any
    subscriber (L{Fanout.handOver} hands them over first).
    """

    channel: str
    publications: list[Publication] = field(default_factory=list)


class Fanout:
    """
    Publications, and the broker's own messages (C{RESYNC}, C{JOIN},
    C{LEAVE}), on their way to this process's subscribers.

    Whoever changes who subscribes to a channel, or what a subscription
    holds back, calls L{handOver} with that channel first; whoever queues
    a message for a subscriber goes through L{queue} or L{send}, which
    hand over first themselves.

    @ivar subscribers: The subscriptions to each channel here, by
        connection id.
    @ivar deliveries: Publications queued for subscribers here (one per
        subscriber each).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.subscribers: dict[str, dict[int, Subscription]] = {}
        self._dirty: dict[int, Outbox] = {}
        self._pending: _Pending | None = None
        self._flushCall: IDelayedCall | None = None
        self.deliveries = 0

    def deliver(self, publication: Publication) -> None:
        """
        A publication for every subscriber to its channel here, at the end
        of the turn (L{_Pending}).
        """
        channel = publication.channel
        if not self.subscribers.get(channel):
            return
        pending = self._pending
        if pending is None or pending.channel != channel:
            # Another channel's first: those of the one before are queued,
            # to go out before this one's.
            self.handOver()
            pending = self._pending = _Pending(channel)
            self._flushSoon()
        pending.publications.append(publication)

    def handOver(self, channel: str | None = None) -> None:
        """
        Queue the publications delivered this turn for their subscribers,
        before something changes who those are (a subscription to
        C{channel}) or is queued for a subscriber (C{channel} L{None}).
        """
        pending = self._pending
        if pending is not None and (channel is None or channel == pending.channel):
            self._hand(now=False)

    def _hand(self, now: bool) -> None:
        """
        Hand this turn's publications to their subscribers: with C{now}
        (the end of the turn), written straight to those that can take
        them; else queued, for the end of the turn.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        subscribers = self.subscribers.get(pending.channel)
        if not subscribers:
            return
        publications = pending.publications
        turn = Turn([p.payload for p in publications])
        channel, last = pending.channel, publications[-1].offset
        dirty = self._dirty
        handed = 0
        for subscription in list(subscribers.values()):
            if subscription.held is not None:
                subscription.held.extend(publications)
                continue
            outbox = subscription.outbox
            if outbox is None or outbox.closed:
                continue
            if outbox.deliver(channel, turn, now):
                dirty[subscription.context.id] = outbox
            subscription.lastOffset = last
            handed += 1
        self.deliveries += handed * len(publications)
        if dirty:
            self._flushSoon()

    def queue(self, subscription: Subscription, publication: Publication) -> None:
        """
        Queue one publication for one subscriber (what a resuming
        subscriber missed), after this turn's.
        """
        self.handOver()
        outbox = subscription.outbox
        assert outbox is not None
        outbox.addMessage(publication.channel, publication.payload, [None, None])
        subscription.lastOffset = publication.offset
        self.deliveries += 1
        self._dirtied(subscription.context.id, outbox)

    def send(self, channel: str, payload: bytes, subscriptions: Iterable[Subscription]) -> None:
        """
        Queue one message of C{channel}, encoded, for each of
        C{subscriptions}, after this turn's publications: framed once per
        framing, whatever their number.
        """
        self.handOver()
        cache: list[bytes | None] = [None, None]
        for subscription in subscriptions:
            outbox = subscription.outbox
            if outbox is not None:
                outbox.addMessage(channel, payload, cache)
                self._dirtied(subscription.context.id, outbox)

    def forget(self, connectionId: int) -> None:
        """
        A connection has closed: nothing more is written to it.
        """
        self._dirty.pop(connectionId, None)

    def _dirtied(self, connectionId: int, outbox: Outbox) -> None:
        self._dirty[connectionId] = outbox
        self._flushSoon()

    def _flushSoon(self) -> None:
        if self._flushCall is None:
            self._flushCall = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """
        End of the turn: write each subscriber's publications, one write
        each.
        """
        self._flushCall = None
        self._hand(now=True)
        dirty, self._dirty = self._dirty, {}
        for outbox in dirty.values():
            outbox.flush()

    def stop(self) -> None:
        """
        The service is stopping: cancel the end-of-turn write.
        """
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        self._pending = None
