"""
What a subscriber remembers so that a new connection carries on where the
last one stopped, and what it hands the application: both subscribers
(L{jsonproto.client.subscriber}, L{jsonproto.client.subscriberservice})
share it, and it does no I/O.

For each channel it keeps the epoch and offset of the last publication it
handed on.  On a new connection it subscribes again with C{"since"} those,
so that the server sends what it missed, in order; a publication at or
before that offset (of that epoch) is dropped, so none is ever handed on
twice or out of order.  When the server cannot give all it missed (its
history no longer holds it, or the channel started a new epoch: the server
lost its history), the application is told with a L{Resync} event, at the
point in the stream where the gap is, and publications carry on from the
server's offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from jsonproto.client.backoff import Backoff
from jsonproto.client.common import ProtocolError

RETRY_CODES = frozenset({"channels_unavailable", "server_busy", "shutting_down", "request_timed_out", "internal_error"})
"""
Error codes of a SUBSCRIBE reply that a later connection may not get: the
subscriber drops the connection and tries again, after its backoff.
"""

NEW_EPOCH = "the channel started a new epoch (the server lost its history)"
HISTORY_GONE = "the server's history no longer holds the publications missed"


@dataclass(frozen=True)
class Publication:
    """
    One publication, as the server sent it.

    @ivar offset: Its place in the channel's C{epoch}, from 1.
    """

    channel: str
    data: Any
    offset: int
    epoch: str


@dataclass(frozen=True)
class Missed:
    """
    The server dropped C{count} publications of C{channel} that this
    subscriber did not read in time (the channel's slow-subscriber policy
    is C{drop}); the next publications come after the gap.
    """

    channel: str
    count: int


@dataclass(frozen=True)
class Resync:
    """
    What this subscriber missed of C{channel} cannot be given: fetch the
    channel's state afresh.  Publications after C{offset} of C{epoch}
    follow.

    @ivar reason: Why, in words: the server's history no longer holds what
        was missed, or the channel started a new epoch.
    """

    channel: str
    epoch: str
    offset: int
    reason: str


@dataclass(frozen=True)
class Refused:
    """
    On a new connection, the server refused to renew the subscription to
    C{channel} (C{reply} says why): the subscriber no longer subscribes
    to it.
    """

    channel: str
    reply: dict[str, Any]


Event = Union[Publication, Missed, Resync, Refused]
"""
What a subscriber hands the application, in the order it happened.
"""


class SubscribeError(Exception):
    """
    The server refused a subscription.

    @ivar reply: Its reply (C{code} says why: C{invalid_channel},
        C{not_allowed}, C{too_many_subscriptions}, ...).
    """

    def __init__(self, channel: str, reply: dict[str, Any]) -> None:
        detail = reply.get("detail")
        super().__init__(f"cannot subscribe to {channel}: {reply.get('message') or reply.get('code')}" + (f" ({detail})" if detail else ""))
        self.channel = channel
        self.reply = reply


class SubscriberStopped(Exception):
    """
    The subscriber was stopped: nothing more will come.
    """


@dataclass
class _Position:
    epoch: str
    offset: int


class Positions:
    """
    The channels a subscriber wants, and where it is in each.
    """

    def __init__(self) -> None:
        # A channel wanted, and its position once known.
        self._channels: dict[str, _Position | None] = {}

    def __contains__(self, channel: str) -> bool:
        return channel in self._channels

    @property
    def channels(self) -> list[str]:
        """
        The channels wanted, in the order they were first subscribed to.
        """
        return list(self._channels)

    def want(self, channel: str) -> None:
        """
        Subscribe to C{channel} from now on (and on every new connection).
        """
        self._channels.setdefault(channel, None)

    def forget(self, channel: str) -> None:
        """
        No longer subscribe to C{channel}; its publications are dropped.
        """
        self._channels.pop(channel, None)

    def position(self, channel: str) -> tuple[str, int] | None:
        """
        The epoch and offset of the last publication of C{channel} handed
        on (or that the server said it was at), if any.
        """
        position = self._channels.get(channel)
        return None if position is None else (position.epoch, position.offset)

    def request(self, channel: str) -> dict[str, Any]:
        """
        The SUBSCRIBE message for C{channel}: with C{since} where it is,
        once that is known.
        """
        message: dict[str, Any] = {"type": "SUBSCRIBE", "channel": channel}
        position = self._channels.get(channel)
        if position is not None:
            message["since"] = {"offset": position.offset, "epoch": position.epoch}
        return message

    def subscribed(self, channel: str, reply: dict[str, Any]) -> list[Event]:
        """
        The OK reply to L{request}: what to tell the application (a
        L{Resync} if what was missed cannot be given).

        @raise ProtocolError: The reply lacks its offset or epoch.
        """
        if channel not in self._channels:
            return []
        epoch, offset = reply.get("epoch"), reply.get("offset")
        if not isinstance(epoch, str) or isinstance(offset, bool) or not isinstance(offset, int):
            raise ProtocolError(f"the reply to SUBSCRIBE {channel} has no offset and epoch: {reply!r}")
        position = self._channels[channel]
        if "recovered" not in reply:
            # A first subscription (no since): publications after the
            # reply's offset, unless some came before the reply.
            if position is None or position.epoch != epoch or position.offset < offset:
                self._channels[channel] = _Position(epoch, offset)
            return []
        if reply["recovered"] is True:
            # What was missed follows the reply; the position moves with it.
            return []
        reason = NEW_EPOCH if position is None or epoch != position.epoch else HISTORY_GONE
        self._channels[channel] = _Position(epoch, offset)
        return [Resync(channel, epoch, offset, reason)]

    def pushed(self, message: Any) -> list[Event]:
        """
        A message the server pushed: what to tell the application of it
        (nothing, for a publication already handed on or of a channel not
        wanted, or a message that is not about channels).
        """
        if not isinstance(message, dict):
            return []
        kind, channel = message.get("type"), message.get("channel")
        if channel not in self._channels:
            return []
        if kind == "MISSED":
            count = message.get("count")
            return [Missed(channel, count if isinstance(count, int) else 0)]
        if kind not in ("PUBLICATION", "RESYNC"):
            return []
        epoch, offset = message.get("epoch"), message.get("offset")
        if not isinstance(epoch, str) or isinstance(offset, bool) or not isinstance(offset, int):
            return []
        if kind == "RESYNC":
            # The server lost publications it had not sent (its Redis
            # restarted, or it could not receive them in time).
            self._channels[channel] = _Position(epoch, offset)
            reason = message.get("reason")
            return [Resync(channel, epoch, offset, reason if isinstance(reason, str) else HISTORY_GONE)]
        publication = Publication(channel, message.get("data"), offset, epoch)
        position = self._channels[channel]
        self._channels[channel] = _Position(epoch, offset)
        if position is None:
            return [publication]
        if epoch != position.epoch:
            # The channel's history was lost while this connection lasted.
            return [Resync(channel, epoch, offset - 1, NEW_EPOCH), publication]
        if offset <= position.offset:
            self._channels[channel] = position
            return []
        return [publication]


class Resuming:
    """
    What both subscribers share: where they are in each channel, and when
    a new connection has renewed its subscriptions.

    @ivar backoff: The waits between attempts to connect.
    """

    _positions: Positions
    _renewing: set[str]
    backoff: Backoff

    @property
    def channels(self) -> list[str]:
        """
        The channels subscribed to.
        """
        return self._positions.channels

    def position(self, channel: str) -> tuple[str, int] | None:
        """
        The epoch and offset of C{channel}'s last publication handed on
        (or of the channel when it was subscribed to), from which a new
        connection resumes.
        """
        return self._positions.position(channel)

    def _renewed(self, channel: str) -> None:
        """
        C{channel} needs no renewing on this connection any more: once
        none does, the connection works, and the backoff starts over.
        """
        if channel in self._renewing:
            self._renewing.discard(channel)
            if not self._renewing:
                self.backoff.reset()
