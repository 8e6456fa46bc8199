"""
One process's channels: who may subscribe to what and publish, who has,
and what a subscriber that resumes has missed.

Handlers and programs embedding jsonproto publish with L{Broker.publish};
an authorization hook (L{Broker.authorize}) decides, per connection and
channel, who may subscribe and publish.  What is published reaches the
subscribers through L{jsonproto.channels.fanout}, once a turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jsonproto.channels.authorization import NOT_ALLOWED, Authorizer, checkAllowed
from jsonproto.channels.engine import ChannelsUnavailable, History, IEngine, Publication
from jsonproto.channels.fanout import Fanout, Subscription
from jsonproto.channels.names import checkName
from jsonproto.channels.outbox import DEFAULT_MAX_QUEUED_BYTES, DISCONNECT, POLICIES, Outbox, Tally
from jsonproto.errors import ErrorCode, RequestError
from jsonproto.wire.codec import encode

log = Logger()

CHANNELS_UNAVAILABLE = ErrorCode("channels_unavailable", "Channels unavailable")
TOO_MANY_SUBSCRIPTIONS = ErrorCode("too_many_subscriptions", "Too many subscriptions")

DEFAULT_MAX_SUBSCRIPTIONS = 100


@dataclass(eq=False)
class _Member:
    """
    A connection with subscriptions: its outbox, and its channels.
    """

    outbox: Outbox
    channels: dict[str, Subscription] = field(default_factory=dict)


class Broker:
    """
    The channels of one process.

    @ivar engine: Where offsets and history live (L{IEngine}).
    @ivar policyFor: The slow-subscriber policy of a channel, by name:
        C{"disconnect"} (the default) or C{"drop"}; replace it to choose
        per channel.
    @ivar publications: Publications accepted from this process (its
        clients and its Python code).
    @ivar received: Publications the engine handed to this process to
        deliver (with Redis, those of every process).
    @ivar tally: What the slow-subscriber policies did (L{Tally}).
    """

    def __init__(
        self,
        engine: IEngine,
        clock: IReactorTime,
        maxQueuedBytes: int = DEFAULT_MAX_QUEUED_BYTES,
        policy: str = DISCONNECT,
        maxSubscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.engine = engine
        self._clock = clock
        self._maxQueuedBytes = maxQueuedBytes
        self._maxSubscriptions = maxSubscriptions
        self.policyFor: Callable[[str], str] = lambda channel: policy
        self._authorizer: Authorizer | None = None
        self._fanout = Fanout(clock)
        self._subscribers = self._fanout.subscribers
        self._members: dict[int, _Member] = {}
        self._wasAvailable: bool | None = None
        self.publications = 0
        self.received = 0
        self.tally = Tally()
        engine.attach(self)

    @property
    def deliveries(self) -> int:
        """
        Publications queued for subscribers here (one per subscriber each).
        """
        return self._fanout.deliveries

    # Who may

    def authorize(self, authorizer: Authorizer) -> Authorizer:
        """
        Decide with C{authorizer} who may subscribe and publish (a
        decorator, for a handlers module: C{@dispatcher.channels.authorize}).
        """
        self._authorizer = authorizer
        return authorizer

    # Subscribing

    def subscribe(self, context: Any, channel: str, since: Any = None, presence: bool = False) -> Deferred[dict[str, Any]]:
        """
        Subscribe C{context}'s connection to C{channel}, after the
        authorization hook allows it.  With C{since} (C{{"offset": N,
        "epoch": E}}), what it missed after offset N of epoch E is sent
        first, in order, if the history still holds all of it.

        @return: Fires with the reply's fields: the channel's C{offset} and
            C{epoch} now, and, given C{since}, whether it was C{recovered}
            and how many publications that C{replayed}.
        """
        checkName(channel)
        resume = _since(since)
        member = self._members.get(context.id)
        if member is not None and channel not in member.channels and len(member.channels) >= self._maxSubscriptions:
            raise RequestError(TOO_MANY_SUBSCRIPTIONS, f"at most {self._maxSubscriptions} channels per connection")
        return (
            checkAllowed(self._authorizer, context, "subscribe", channel)
            .addCallback(lambda _: self._subscribe(context, channel, resume, bool(presence)))
        )

    def _subscribe(self, context: Any, channel: str, resume: tuple[str, int] | None, presence: bool) -> Deferred[dict[str, Any]]:
        if context.connections is None or context.connections.get(context.id) is not context:
            raise RequestError(NOT_ALLOWED, "the connection has closed")
        self._fanout.handOver(channel)
        member = self._members.get(context.id)
        if member is None:
            connection = context._connection
            member = self._members[context.id] = _Member(Outbox(connection, self._maxQueuedBytes, self.policyFor, self.tally))
            connection.outbox = member.outbox
        subscription = member.channels.get(channel)
        fresh = subscription is None
        if fresh:
            subscription = member.channels[channel] = Subscription(context, channel, presence, outbox=member.outbox)
            subscribers = self._subscribers.get(channel)
            if subscribers is None:
                subscribers = self._subscribers[channel] = {}
                self.engine.listen(channel)
            self._announce(channel, "JOIN", context)
            subscribers[context.id] = subscription
        assert subscription is not None
        subscription.presence = presence
        if resume is not None:
            subscription.held = []
        return self.engine.history(channel).addCallbacks(
            self._subscribed, self._notSubscribed, (subscription, resume), errbackArgs=(subscription, fresh)
        )

    def _notSubscribed(self, failure: Any, subscription: Subscription, fresh: bool) -> None:
        """
        The engine could not say where the channel is (its store is
        unreachable): a new subscription is undone, so that the client,
        told C{Channels unavailable}, is not subscribed.
        """
        subscription.held = None
        member = self._members.get(subscription.context.id)
        if fresh and member is not None and member.channels.get(subscription.channel) is subscription:
            self._remove(subscription.context.id, subscription.channel)
        _unavailable(failure)

    def _subscribed(self, history: History, subscription: Subscription, resume: tuple[str, int] | None) -> dict[str, Any]:
        reply: dict[str, Any] = {"channel": subscription.channel, "offset": history.offset, "epoch": history.epoch}
        subscription.lastOffset = history.offset
        subscription.epoch = history.epoch
        if resume is None:
            return reply
        missed = history.since(*resume)
        reply["recovered"] = missed is not None
        replay = list(missed or ())
        reply["replayed"] = len(replay)
        # After the reply is written: what it missed, then what came meanwhile.
        self._clock.callLater(0, self._replay, subscription, replay, history.epoch, history.offset)
        return reply

    def _replay(self, subscription: Subscription, replay: list[Publication], epoch: str, offset: int) -> None:
        """
        Send what a resuming subscriber missed, then what was published
        since its reply (the reply's C{offset} and before are covered by
        the replay, or by the resync the reply told it to do).
        """
        self._fanout.handOver()
        held, subscription.held = subscription.held or [], None
        member = self._members.get(subscription.context.id)
        if member is None or member.channels.get(subscription.channel) is not subscription:
            return
        if subscription.epoch != epoch:
            # A RESYNC came since the reply: what follows it, only.
            replay, offset = [], subscription.lastOffset
        last = max(replay[-1].offset if replay else 0, offset)
        for publication in replay + [p for p in held if p.offset > last]:
            self._fanout.queue(subscription, publication)

    def unsubscribe(self, context: Any, channel: str) -> dict[str, Any]:
        """
        End C{context}'s subscription to C{channel}, if it has one.
        """
        checkName(channel)
        member = self._members.get(context.id)
        subscribed = member is not None and channel in member.channels
        if subscribed:
            self._remove(context.id, channel)
        return {"channel": channel, "subscribed": False, "was": subscribed}

    def _remove(self, connectionId: int, channel: str) -> None:
        self._fanout.handOver(channel)
        member = self._members[connectionId]
        subscription = member.channels.pop(channel)
        subscribers = self._subscribers.get(channel, {})
        subscribers.pop(connectionId, None)
        if not subscribers:
            self._subscribers.pop(channel, None)
            self.engine.unlisten(channel)
        else:
            self._announce(channel, "LEAVE", subscription.context)
        if not member.channels:
            del self._members[connectionId]

    def disconnected(self, context: Any, reason: str = "") -> None:
        """
        A connection has closed: end its subscriptions (a close hook).
        """
        member = self._members.get(context.id)
        if member is None:
            return
        member.outbox.closed = True
        self._fanout.forget(context.id)
        for channel in list(member.channels):
            self._remove(context.id, channel)

    def subscribers(self, channel: str) -> list[Any]:
        """
        The contexts of this process's connections subscribed to C{channel}.
        """
        return [s.context for s in self._subscribers.get(channel, {}).values()]

    def presenceFor(self, context: Any, channel: str) -> Deferred[list[dict[str, Any]]]:
        """
        L{presence}, for a client's C{PRESENCE}: only a connection the
        authorization hook lets subscribe to C{channel} may see who is in
        it (their addresses and certificate names).
        """
        checkName(channel)
        return (
            checkAllowed(self._authorizer, context, "subscribe", channel)
            .addCallback(lambda _: self.presence(channel))
        )

    def presence(self, channel: str) -> list[dict[str, Any]]:
        """
        Who is subscribed to C{channel} here: each connection's id, address
        and the common name of its client certificate, if any.
        """
        checkName(channel)
        return [_describe(context) for context in self.subscribers(channel)]

    def _announce(self, channel: str, kind: str, context: Any) -> None:
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        watchers = [s for s in subscribers.values() if s.presence and s.context.id != context.id]
        if watchers:
            payload = encode({"type": kind, "channel": channel, "subscriber": _describe(context)})
            self._fanout.send(channel, payload, watchers)

    # Publishing

    def publish(self, channel: str, data: Any) -> Deferred[Publication]:
        """
        Publish C{data} to C{channel}, for handlers and programs embedding
        jsonproto (no authorization hook applies).

        @return: Fires with the L{Publication} (its C{offset} and
            C{epoch}); fails with L{RequestError} (C{Invalid channel},
            C{Channels unavailable}, or JSON that cannot be carried).
        """
        checkName(channel)
        if not self.engine.available:
            raise RequestError(CHANNELS_UNAVAILABLE, "the channels' store is unreachable; try again later")
        return self.engine.publish(channel, data).addCallbacks(self._published, _unavailable)

    def _published(self, publication: Publication) -> Publication:
        self.publications += 1
        return publication

    def publishAs(self, context: Any, channel: str, data: Any) -> Deferred[dict[str, Any]]:
        """
        Publish on behalf of a client, after the authorization hook
        allows it: fires with the reply's fields.
        """
        checkName(channel)
        return (
            checkAllowed(self._authorizer, context, "publish", channel)
            .addCallback(lambda _: self.publish(channel, data))
            .addCallback(lambda p: {"channel": channel, "offset": p.offset, "epoch": p.epoch})
        )

    def deliver(self, publication: Publication) -> None:
        """
        A publication from the engine: for every subscriber to its channel
        here, at the end of the turn (L{Fanout.deliver}).
        """
        self.received += 1
        self._fanout.deliver(publication)

    def resync(self, channel: str, epoch: str, offset: int, reason: str) -> None:
        """
        The engine lost publications of C{channel} that its subscribers
        here have not had: each is told, with a C{RESYNC} message, to
        fetch the channel's state afresh; publications after C{offset} of
        C{epoch} follow.
        """
        self._fanout.handOver()
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        subscriptions = list(subscribers.values())
        for subscription in subscriptions:
            if subscription.held is not None:
                # Being resumed from the history of before: nothing of it
                # follows the resync.
                subscription.held = [p for p in subscription.held if p.epoch == epoch and p.offset > offset]
            subscription.epoch = epoch
            subscription.lastOffset = offset
        payload = encode({"type": "RESYNC", "channel": channel, "epoch": epoch, "offset": offset, "reason": reason})
        self._fanout.send(channel, payload, subscriptions)

    def engineAvailable(self, available: bool) -> None:
        """
        The engine's store went away or came back (or came, the first
        time: nothing was unavailable then, so nothing is said).
        """
        was, self._wasAvailable = self._wasAvailable, available
        if available and was is None:
            return
        log.info("channels {state}", state="available again" if available else "unavailable: publishing is refused")

    def stop(self) -> None:
        """
        The service is stopping: cancel the end-of-turn write.
        """
        self._fanout.stop()

    # Metrics

    @property
    def slowDisconnects(self) -> int:
        """
        Connections closed for falling behind, so far.
        """
        return self.tally.slowDisconnects

    def counts(self) -> dict[str, int]:
        """
        Now: channels with subscribers here, subscriptions, connections
        subscribed (C{subscribers}), those with publications waiting because
        they read too slowly (C{slowSubscribers}) and the bytes waiting for
        them (C{queuedBytes}: not those of subscribers that keep up, which
        wait only for the end of the turn); and so far, publications
        C{dropped}.  Read at a scrape, never per publication: it walks the
        connections.
        """
        slow = [m.outbox for m in self._members.values() if m.outbox.blocked]
        return {
            "channels": len(self._subscribers),
            "subscriptions": sum(len(s) for s in self._subscribers.values()),
            "subscribers": len(self._members),
            "slowSubscribers": len(slow),
            "queuedBytes": sum(o.queuedBytes for o in slow),
            "dropped": self.tally.dropped,
        }


def _since(since: Any) -> tuple[str, int] | None:
    if since is None:
        return None
    if not isinstance(since, dict) or not isinstance(since.get("epoch"), str):
        raise RequestError(INVALID_SINCE, 'since must be {"offset": N, "epoch": E}')
    offset = since.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise RequestError(INVALID_SINCE, "since's offset must be a whole number, 0 or more")
    return since["epoch"], offset


INVALID_SINCE = ErrorCode("invalid_field", "Invalid field")


def _describe(context: Any) -> dict[str, Any]:
    identity = context.clientIdentity
    return {"id": context.id, "peer": context.peer, "identity": identity.commonName if identity is not None else None}


def _unavailable(failure: Any) -> Any:
    failure.trap(ChannelsUnavailable)
    raise RequestError(CHANNELS_UNAVAILABLE, "the channels' store is unreachable; try again later")
