"""
Delivering a Redis channel's publications in offset order.

Publications come through Redis pub/sub, which keeps nothing: one missed
(the subscriber connection lost and made again, or Redis dropping this
subscriber for falling behind) is simply not there.  So each publication
says where it stands (its epoch and offset), and one that does not follow
the last delivered waits, with those after it, while the channel's history
is read: what is missing is delivered from there first, then what waited.
If the history no longer holds it, or the channel started a new epoch, the
broker is told to have its subscribers resync; if the offsets went back
under the same epoch (Redis restarted from older data), a new epoch is
started first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from jsonproto.channels.engine import Deliveries, History, Publication
from jsonproto.channels.redislink import Link
from jsonproto.channels.redisscripts import RENEW_SCRIPT

log = Logger()

NEW_EPOCH = "the channel started a new epoch (its history was lost)"
HISTORY_GONE = "the history no longer holds the publications missed"


@dataclass(eq=False)
class Listening:
    """
    A channel this process has subscribers to.

    @ivar epoch: The epoch of what was last delivered (or of the channel
        when first read), L{None} until known.
    @ivar last: The offset last delivered (or the channel's, when first
        read).
    @ivar subscribed: Whether Redis has confirmed the subscription on the
        subscriber connection of now.
    @ivar catchingUp: Whether what was missed is to be read from the
        history; publications arriving meanwhile wait in C{waiting}.
    @ivar reading: Whether that read is under way (if not, it waits for
        the command connection, or for the next publication to try again).
    @ivar again: Whether to read once more after that (the subscriber
        connection came back meanwhile).
    @ivar settled: Who waits for the read under way to end.
    """

    channel: str
    name: bytes
    epoch: str | None = None
    last: int = 0
    subscribed: bool = False
    catchingUp: bool = False
    reading: bool = False
    again: bool = False
    waiting: list[Publication] = field(default_factory=list)
    settled: list[Deferred[None]] = field(default_factory=list)


class InOrderDelivery:
    """
    The in-order delivery of L{jsonproto.channels.redis.RedisEngine}, one
    L{Listening} a channel.

    A mixin of the engine rather than an object it holds: every step reads
    or changes the engine's own state (which channels it listens to, its
    link to Redis, who it delivers to) and reads the history as the engine
    does, all of which an object apart would need handed to it.
    """

    _link: Link
    _listening: dict[str, Listening]
    _deliveries: Deliveries | None
    _newEpoch: Callable[[], str]

    if TYPE_CHECKING:

        def keys(self, channel: str) -> list[bytes]: ...

        def _read(self, channel: str) -> Deferred[History]: ...

    def _received(self, state: Listening, publication: Publication) -> None:
        if not state.catchingUp and state.epoch == publication.epoch:
            if publication.offset <= state.last:
                return  # delivered already, by a catching up
            if publication.offset == state.last + 1:
                self._deliver(state, publication)
                return
        # After a gap, another epoch, or before this process knows where
        # the channel is: it waits for the history.
        state.waiting.append(publication)
        if not state.reading:
            self._catchUp(state)

    def _deliver(self, state: Listening, publication: Publication) -> None:
        state.last = publication.offset
        if self._deliveries is not None:
            self._deliveries.deliver(publication)

    def _catchUp(self, state: Listening) -> None:
        """
        Read the channel's history, and deliver what was missed since the
        last delivery (or have the subscribers resync), then what waited.
        """
        state.catchingUp = True
        if state.reading:
            state.again = True
            return
        if not self._link.commandsUp:
            return  # when the command connection is back
        state.reading = True
        state.again = False
        self._read(state.channel).addCallbacks(self._caughtUp, self._catchUpFailed, (state,), errbackArgs=(state,))

    def _catchUpFailed(self, failure: Any, state: Listening) -> None:
        state.reading = False
        if self._listening.get(state.channel) is state and self._link.commandsUp:
            # Redis answered with an error: tried again with the next
            # publication, or the next connection.
            log.warn("channels: could not read the history of {channel}: {why}", channel=state.channel, why=failure.getErrorMessage())
        self._settle(state)

    def _caughtUp(self, history: History, state: Listening) -> None:
        state.reading = False
        if self._listening.get(state.channel) is not state:
            return
        assert state.epoch is not None  # set by this read, if not before
        if history.epoch != state.epoch:
            # From the start of the new epoch, if the history still holds
            # all of it: the subscribers miss none of its publications.
            since = history.since(history.epoch, 0)
            self._resync(state, history.epoch, 0 if since is not None else history.offset, NEW_EPOCH)
            for publication in since or ():
                self._deliver(state, publication)
        elif history.offset < state.last:
            self._renew(state, history)
            return
        else:
            missed = history.since(state.epoch, state.last)
            if missed is None:
                self._resync(state, history.epoch, history.offset, HISTORY_GONE)
            else:
                for publication in missed:
                    self._deliver(state, publication)
        if state.again:
            self._catchUp(state)
        else:
            state.catchingUp = False
            waiting, state.waiting = state.waiting, []
            for publication in waiting:
                self._received(state, publication)
        self._settle(state)

    def _renew(self, state: Listening, history: History) -> None:
        """
        The channel's offsets went back under the same epoch (Redis lost
        its latest publications, restarting from an older copy of its
        data): start a new epoch, so that no client takes the next
        publications for those it has, then catch up (and resync).
        """
        log.warn(
            "channels: {channel} went back from offset {last} to {offset} in Redis; starting a new epoch",
            channel=state.channel, last=state.last, offset=history.offset,
        )
        state.reading = True

        def renewed(_: Any) -> None:
            state.reading = False
            if self._listening.get(state.channel) is state:
                self._catchUp(state)

        def failed(failure: Any) -> None:
            state.reading = False  # tried again with the next publication
            self._settle(state)

        self._link.eval(RENEW_SCRIPT, self.keys(state.channel), [history.epoch, self._newEpoch()]).addCallbacks(renewed, failed)

    def _resync(self, state: Listening, epoch: str, offset: int, reason: str) -> None:
        """
        What was missed cannot be delivered: the subscribers here must
        fetch the channel's state afresh, and go on from C{offset} of
        C{epoch}.
        """
        log.info("channels: subscribers of {channel} must resync: {reason}", channel=state.channel, reason=reason)
        state.epoch, state.last = epoch, offset
        if self._deliveries is not None:
            self._deliveries.resync(state.channel, epoch, offset, reason)

    def _settle(self, state: Listening) -> None:
        settled, state.settled = state.settled, []
        for waiting in settled:
            waiting.callback(None)
