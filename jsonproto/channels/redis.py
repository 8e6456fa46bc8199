"""
Channels across processes and machines: offsets, epochs and history kept
in Redis, by Lua scripts that number, keep and publish each publication
atomically (L{jsonproto.channels.redisscripts}: what is kept where), and
publications handed to every process through Redis pub/sub.  A channel
whose keys were lost is made again under a new epoch, so a client resuming
from an old offset is told to resync.

Each process has one subscriber connection, subscribed to the channels it
has subscribers to.  A publication reaches the broker in offset order, what
was missed read from the history first, or the broker told to have its
subscribers resync (L{jsonproto.channels.redisorder}).  While the command
connection is down, publishing fails with L{ChannelsUnavailable}
(C{channels_unavailable} to clients).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from jsonproto.channels.engine import (
    DEFAULT_HISTORY_BYTES,
    DEFAULT_HISTORY_SECONDS,
    DEFAULT_HISTORY_SIZE,
    Deliveries,
    History,
    IEngine,
    Publication,
    newEpoch,
)
from jsonproto.channels.redislink import Link
from jsonproto.channels.redisorder import InOrderDelivery, Listening
# DEFAULT_PREFIX and the payload's functions are imported from here too,
# as they always were (the daemon's options, the tests).
from jsonproto.channels.redisscripts import (
    DEFAULT_PREFIX,
    HISTORY_SCRIPT,
    PUBLISH_SCRIPT,
    channelKeys,
    completePayload,
    entrySeconds,
    position,
    publicationHead,
    pubsubName,
)

log = Logger()

DEFAULT_CHANNEL_TTL = 24 * 3600.0
"""
Seconds an unused channel's epoch and offset stay in Redis at least.
"""


@implementer(IEngine)
class RedisEngine(InOrderDelivery):
    """
    Offsets, epochs and history in Redis, publications through its
    pub/sub: channels across every process and machine sharing one Redis.

    @param link: The connections to Redis.
    @param size: Publications each channel's history keeps (0: none).
    @param seconds: The oldest a kept publication may be (0: no limit).
    @param maxBytes: The bytes each channel's history may hold (0: no
        limit).
    @param prefix: What every key and pub/sub channel name begins with.
    """

    def __init__(
        self,
        link: Link,
        size: int = DEFAULT_HISTORY_SIZE,
        seconds: float = DEFAULT_HISTORY_SECONDS,
        maxBytes: int = DEFAULT_HISTORY_BYTES,
        prefix: str = DEFAULT_PREFIX,
        newEpoch: Callable[[], str] = newEpoch,
    ) -> None:
        self._link = link
        self._size = size
        self._ageMs = int(seconds * 1000)
        self._maxBytes = maxBytes
        self._ttlMs = int(max(seconds, DEFAULT_CHANNEL_TTL) * 1000) if seconds else 0
        self._prefix = prefix
        self._newEpoch = newEpoch
        self._listening: dict[str, Listening] = {}
        self._byName: dict[bytes, Listening] = {}
        self._deliveries: Deliveries | None = None
        self._started = False

    # Names in Redis

    def keys(self, channel: str) -> list[bytes]:
        """
        The channel's hash and history keys.
        """
        return channelKeys(self._prefix, channel)

    def pubsubName(self, channel: str) -> bytes:
        """
        The Redis pub/sub channel its publications go through.
        """
        return pubsubName(self._prefix, channel)

    # The engine, as the broker uses it

    @property
    def available(self) -> bool:
        return self._link.commandsUp

    def attach(self, deliveries: Deliveries) -> None:
        self._deliveries = deliveries

    def start(self) -> None:
        """
        Connect to Redis (the daemon is starting); until connected,
        publishing fails with L{ChannelsUnavailable}.
        """
        if not self._started:
            self._started = True
            self._link.start(self)

    def stop(self) -> Deferred[Any]:
        """
        Close the connections (the daemon is stopping).
        """
        self._started = False
        for state in list(self._listening.values()):
            self._settle(state)
        return self._link.stop()

    def publish(self, channel: str, data: Any) -> Deferred[Publication]:
        head = publicationHead(channel, data)
        args = [head, self._newEpoch(), self._size, self._ageMs, self._maxBytes, self._ttlMs, self.pubsubName(channel)]
        return self._link.eval(PUBLISH_SCRIPT, self.keys(channel), args).addCallback(self._published, channel, head)

    def _published(self, reply: Any, channel: str, head: bytes) -> Publication:
        offset, epoch, entry = reply
        return Publication(channel, offset, epoch.decode(), completePayload(head, offset, epoch), entrySeconds(entry))

    def history(self, channel: str) -> Deferred[History]:
        state = self._listening.get(channel)
        if state is not None and state.reading:
            # What a new subscriber is told follows what the catching up
            # delivers (a resync, or what was missed).
            settled: Deferred[None] = Deferred()
            state.settled.append(settled)
            return settled.addCallback(lambda _: self._read(channel))
        return self._read(channel)

    def _read(self, channel: str) -> Deferred[History]:
        args = [self._newEpoch(), self._ageMs, self._ttlMs]
        return self._link.eval(HISTORY_SCRIPT, self.keys(channel), args).addCallback(self._history, channel)

    def _history(self, reply: Any, channel: str) -> History:
        epoch, offset, entries = reply
        name = epoch.decode()
        kept = []
        for entry, fields in entries:
            values = dict(zip(fields[::2], fields[1::2]))
            kept.append(Publication(channel, int(values[b"o"]), name, values[b"p"], entrySeconds(entry)))
        history = History(name, offset, tuple(kept))
        state = self._listening.get(channel)
        if state is not None and state.epoch is None:
            # The first read since this process listens (the broker's, for
            # its first subscriber): what is delivered follows it.
            state.epoch, state.last = history.epoch, history.offset
        return history

    def listen(self, channel: str) -> None:
        if channel in self._listening:
            return
        state = self._listening[channel] = Listening(channel, self.pubsubName(channel))
        self._byName[state.name] = state
        if self._link.subscriberUp:
            self._subscribe(state)

    def unlisten(self, channel: str) -> None:
        state = self._listening.pop(channel, None)
        if state is None:
            return
        del self._byName[state.name]
        self._settle(state)
        self._link.unsubscribe(state.name)

    # What the link tells

    def commandsChanged(self, up: bool) -> None:
        """
        The command connection came up (catch up where it was waited
        for) or went down (publishing fails meanwhile).
        """
        if up:
            log.info("channels: connected to Redis at {redis}", redis=self._link.description)
        else:
            log.warn("channels: lost the connection to Redis at {redis}; connecting again", redis=self._link.description)
        if self._deliveries is not None:
            self._deliveries.engineAvailable(up)
        if up:
            for state in list(self._listening.values()):
                if state.catchingUp and not state.reading:
                    self._catchUp(state)

    def subscriberChanged(self, up: bool) -> None:
        """
        The subscriber connection came up (subscribe again to every
        channel listened to, then catch up on what was missed) or went down.
        """
        for state in list(self._listening.values()):
            state.subscribed = False
            if up:
                self._subscribe(state)

    def messageReceived(self, name: bytes, payload: bytes) -> None:
        """
        A publication from Redis pub/sub.
        """
        state = self._byName.get(name)
        if state is None or not state.subscribed:
            return
        found = position(payload)
        if found is None:
            log.warn("channels: ignored a message on {name} that is not a publication", name=name)
            return
        offset, epoch = found
        self._received(state, Publication(state.channel, offset, epoch, payload))

    def _subscribe(self, state: Listening) -> None:
        def subscribed(_: Any) -> None:
            if self._listening.get(state.channel) is state and self._link.subscriberUp:
                state.subscribed = True
                self._catchUp(state)

        self._link.subscribe(state.name).addCallbacks(subscribed, lambda failure: None)


def redisEngine(reactor: Any, description: str, **options: Any) -> RedisEngine:
    """
    An engine on the Redis at a Twisted client endpoint string
    (C{tcp:127.0.0.1:6379}, C{unix:/run/redis/redis.sock}).
    """
    from twisted.internet.endpoints import clientFromString

    from jsonproto.channels.redislink import RedisLink

    return RedisEngine(RedisLink(clientFromString(reactor, description), description), **options)
