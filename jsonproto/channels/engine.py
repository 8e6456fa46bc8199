"""
Where a channel's offsets and history live, and how a publication reaches
every process with subscribers to it.

An engine numbers each channel's publications (the offset, increasing by
one), names each run of those numbers (the epoch: when a channel's history
is lost, it starts again under a new epoch, so that a client resuming from
an old offset learns it cannot), keeps the last of them for resuming
clients, and hands each publication, encoded once, to the brokers of every
process that listens to its channel.  L{MemoryEngine} does it for one
process; L{jsonproto.channels.redis.RedisEngine} across processes and
machines.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import Attribute, Interface, implementer

from jsonproto.wire.codec import encode

DEFAULT_HISTORY_SIZE = 100
DEFAULT_HISTORY_SECONDS = 300.0
DEFAULT_HISTORY_BYTES = 1024 * 1024
DEFAULT_CHANNELS_MEMORY = 64 * 1024 * 1024
CHANNEL_OVERHEAD = 512
"""
What L{MemoryEngine} counts a channel it knows as holding, besides its
history: its state, its name and its place in the engine's tables.
"""


@dataclass(frozen=True, slots=True)
class Publication:
    """
    One publication, as every subscriber receives it.

    @ivar channel: Where it was published.
    @ivar offset: Its place in the channel's epoch, from 1.
    @ivar epoch: The run of offsets it belongs to.
    @ivar payload: The C{PUBLICATION} message, encoded once for every
        subscriber of every process.
    @ivar at: When it was published, in the engine's seconds.
    """

    channel: str
    offset: int
    epoch: str
    payload: bytes
    at: float = 0.0


def publicationPayload(channel: str, data: Any, offset: int, epoch: str) -> bytes:
    """
    The encoded C{PUBLICATION} message (no C{status}: clients never take it
    for a reply).

    @raise RequestError: If JSON cannot carry C{data}.
    """
    return encode({"type": "PUBLICATION", "channel": channel, "data": data, "offset": offset, "epoch": epoch})


@dataclass(frozen=True, slots=True)
class History:
    """
    What an engine has kept of a channel.

    @ivar epoch: The channel's epoch now.
    @ivar offset: The offset of its last publication (0 for none).
    @ivar publications: The publications kept, oldest first.
    @ivar complete: Whether nothing after offset 0 was ever dropped, so a
        client resuming from any offset of this epoch can be given what it
        missed as long as it is kept.
    """

    epoch: str
    offset: int
    publications: tuple[Publication, ...] = ()

    def since(self, epoch: str, offset: int) -> tuple[Publication, ...] | None:
        """
        The publications after C{offset} of C{epoch}, in order, or L{None}
        if they cannot all be given (another epoch, or dropped since).
        """
        if epoch != self.epoch or offset > self.offset or offset < 0:
            return None
        if offset == self.offset:
            return ()
        kept = self.publications
        if not kept or kept[0].offset > offset + 1:
            return None
        return tuple(p for p in kept if p.offset > offset)


class Deliveries(Protocol):
    """
    Who an engine hands publications to: a process's broker.
    """

    def deliver(self, publication: Publication) -> None: ...

    def engineAvailable(self, available: bool) -> None: ...

    def resync(self, channel: str, epoch: str, offset: int, reason: str) -> None:
        """
        Publications of C{channel} were missed that cannot be delivered
        (an engine shared by processes lost them, or they left the
        history while this process could not receive them): its
        subscribers must fetch its state afresh; publications after
        C{offset} of C{epoch} follow.
        """


class IEngine(Interface):
    """
    An engine, as the broker uses it.  Every method that may wait returns
    a L{Deferred}.
    """

    available = Attribute("bool: whether publishing can succeed now.")

    def attach(deliveries):
        """
        Hand every publication of a channel listened to to
        C{deliveries.deliver}, in offset order, changes of availability to
        C{deliveries.engineAvailable}, and publications missed that cannot
        be delivered to C{deliveries.resync}.
        """

    def publish(channel, data):
        """
        Publish C{data}: fires with the L{Publication}, once numbered, kept
        and sent on; fails with L{ChannelsUnavailable} when it cannot be.
        """

    def history(channel):
        """
        Fires with the channel's L{History}.
        """

    def listen(channel):
        """
        This process has subscribers to C{channel} (deliver its
        publications).
        """

    def unlisten(channel):
        """
        This process has no subscriber left to C{channel}.
        """


class ChannelsUnavailable(Exception):
    """
    The engine cannot publish now (Redis is unreachable).
    """


@dataclass
class _Channel:
    epoch: str
    offset: int = 0
    kept: deque[Publication] = field(default_factory=deque)
    keptBytes: int = 0
    lastUsed: float = 0.0


def newEpoch() -> str:
    """
    A name for a new run of offsets, unique enough that a client never
    takes one channel's epoch for another's.
    """
    return secrets.token_hex(6)


@implementer(IEngine)
class MemoryEngine:
    """
    Offsets and history in this process's memory: channels within one
    process (one daemon without C{--workers}).

    A channel's history keeps its last C{size} publications, none older
    than C{seconds}, and no more than C{maxBytes} of them.  A channel with
    no listener and nothing kept is forgotten; when it is used again it
    starts a new epoch.

    All channels together hold no more than C{maxMemory} bytes (their
    histories, and L{CHANNEL_OVERHEAD} for each channel known): past it,
    the least recently used channels lose their history, and are forgotten
    if nobody here listens to them.  So clients publishing to ever new
    channel names cannot make the process grow, whatever C{seconds} is; a
    subscriber resuming from a history so lost is told to resync.
    """

    available = True

    def __init__(
        self,
        clock: IReactorTime,
        size: int = DEFAULT_HISTORY_SIZE,
        seconds: float = DEFAULT_HISTORY_SECONDS,
        maxBytes: int = DEFAULT_HISTORY_BYTES,
        newEpoch: Callable[[], str] = newEpoch,
        maxMemory: int = DEFAULT_CHANNELS_MEMORY,
    ) -> None:
        self._clock = clock
        self._size = size
        self._seconds = seconds
        self._maxBytes = maxBytes
        self._newEpoch = newEpoch
        self._maxMemory = maxMemory
        # Least recently used first.
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        self._keptBytes = 0
        self._listened: set[str] = set()
        self._deliveries: Deliveries | None = None
        self._sweep: IDelayedCall | None = None

    def attach(self, deliveries: Deliveries) -> None:
        self._deliveries = deliveries

    def _channel(self, name: str) -> _Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(self._newEpoch())
            self._sweepLater()
            self._withinMemory()
        else:
            self._channels.move_to_end(name)
        channel.lastUsed = self._clock.seconds()
        return channel

    @property
    def memory(self) -> int:
        """
        The bytes counted against C{maxMemory}: every history, and
        L{CHANNEL_OVERHEAD} a channel.
        """
        return self._keptBytes + CHANNEL_OVERHEAD * len(self._channels)

    def _withinMemory(self) -> None:
        """
        Take the least recently used channels' history, and forget those
        nobody listens to, until all fit in C{maxMemory}.  A channel being
        listened to that has nothing left to take moves to the back: each
        channel is looked at once at most, and the one just used is kept.
        """
        channels = self._channels
        if not self._maxMemory:
            return
        for _ in range(len(channels) - 1):
            if self.memory <= self._maxMemory:
                return
            name, state = next(iter(channels.items()))
            if state.kept:
                self._keptBytes -= state.keptBytes
                state.kept.clear()
                state.keptBytes = 0
            if name in self._listened:
                channels.move_to_end(name)
            else:
                del channels[name]

    def publish(self, channel: str, data: Any) -> Deferred[Publication]:
        state = self._channel(channel)
        offset = state.offset + 1
        payload = publicationPayload(channel, data, offset, state.epoch)
        state.offset = offset
        publication = Publication(channel, offset, state.epoch, payload, self._clock.seconds())
        self._keep(state, publication)
        if channel in self._listened and self._deliveries is not None:
            self._deliveries.deliver(publication)
        return succeed(publication)

    def _keep(self, state: _Channel, publication: Publication) -> None:
        if not self._size:
            return
        kept = state.kept
        kept.append(publication)
        before = state.keptBytes
        state.keptBytes += len(publication.payload)
        while kept and (len(kept) > self._size or (self._maxBytes and state.keptBytes > self._maxBytes)):
            state.keptBytes -= len(kept.popleft().payload)
        self._expire(state, counted=False)
        self._keptBytes += state.keptBytes - before
        if self._keptBytes > self._maxMemory > 0:
            self._withinMemory()

    def _expire(self, state: _Channel, counted: bool = True) -> None:
        if not self._seconds:
            return
        oldest = self._clock.seconds() - self._seconds
        kept = state.kept
        before = state.keptBytes
        while kept and kept[0].at < oldest:
            state.keptBytes -= len(kept.popleft().payload)
        if counted:
            self._keptBytes -= before - state.keptBytes

    def history(self, channel: str) -> Deferred[History]:
        state = self._channel(channel)
        self._expire(state)
        return succeed(History(state.epoch, state.offset, tuple(state.kept)))

    def listen(self, channel: str) -> None:
        self._listened.add(channel)
        self._channel(channel)

    def unlisten(self, channel: str) -> None:
        self._listened.discard(channel)

    def _sweepLater(self) -> None:
        if self._sweep is None and self._seconds:
            self._sweep = self._clock.callLater(self._seconds, self._forget)

    def _forget(self) -> None:
        """
        Forget the channels nobody listens to whose history has expired.
        """
        self._sweep = None
        for name, state in list(self._channels.items()):
            self._expire(state)
            if name not in self._listened and not state.kept:
                del self._channels[name]
        if self._channels:
            self._sweepLater()

    def stop(self) -> None:
        """
        Cancel the sweep timer (the service is stopping).
        """
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
