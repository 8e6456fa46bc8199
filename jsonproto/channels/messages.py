"""
The message types C{--channels} adds:

    {"type":"SUBSCRIBE","channel":NAME}             optionally "since": {"offset": N, "epoch": E},
                                                     "presence": true
    {"type":"UNSUBSCRIBE","channel":NAME}
    {"type":"PUBLISH","channel":NAME,"data":VALUE}
    {"type":"PRESENCE","channel":NAME}

Each gets a normal reply (with its C{id}); publications reach subscribers
as C{PUBLICATION} messages, which have no C{status}.
"""

from __future__ import annotations

from typing import Any, TypedDict

from jsonproto.channels.broker import Broker
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.errors import INVALID_FIELD, RequestError

MESSAGE_TYPES = ("SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "PRESENCE")


# What subscribers are sent, declared for the service's description
# (jsonproto schema --channels); docs/protocol.md says when each comes.


class Publication(TypedDict):
    """
    What someone published to a channel this connection subscribes to.
    """

    channel: str
    data: Any
    offset: int
    epoch: str


class Resync(TypedDict):
    """
    Publications of the channel were lost: fetch its state afresh; those after offset of epoch follow.
    """

    channel: str
    epoch: str
    offset: int
    reason: str


class Missed(TypedDict):
    """
    Under --slow-subscriber drop: this many publications of the channel were dropped before those that follow.
    """

    channel: str
    count: int


class Subscriber(TypedDict):
    id: int
    peer: str | None
    identity: str | None


class Presence(TypedDict):
    """
    A connection subscribed to the channel (JOIN) or left it (LEAVE), to subscribers that asked for presence.
    """

    channel: str
    subscriber: Subscriber


PUSHES = {"PUBLICATION": Publication, "RESYNC": Resync, "MISSED": Missed, "JOIN": Presence, "LEAVE": Presence}


def channelOf(message: dict[str, Any]) -> Any:
    """
    The channel a message names, as the client sent it: the broker checks
    it (L{jsonproto.channels.names.checkName}).
    """
    return message.get("channel")


def register(dispatcher: Dispatcher, broker: Broker) -> None:
    """
    Answer the channels' message types with C{broker}, and end a
    connection's subscriptions when it closes.  The broker is then
    C{dispatcher.channels}, for handlers modules (to publish, or to set the
    authorization hook).
    """
    dispatcher.channels = broker
    for name, fields in PUSHES.items():
        if name not in {push.name for push in dispatcher.pushes}:
            dispatcher.declarePush(name, fields)

    @dispatcher.handler("SUBSCRIBE")
    def subscribe(message: dict[str, Any], context: Any) -> Any:
        return broker.subscribe(context, channelOf(message), message.get("since"), bool(message.get("presence")))

    @dispatcher.handler("UNSUBSCRIBE")
    def unsubscribe(message: dict[str, Any], context: Any) -> dict[str, Any]:
        return broker.unsubscribe(context, channelOf(message))

    @dispatcher.handler("PUBLISH")
    def publish(message: dict[str, Any], context: Any) -> Any:
        if "data" not in message:
            raise RequestError(INVALID_FIELD, "a publication needs data")
        return broker.publishAs(context, channelOf(message), message["data"])

    @dispatcher.handler("PRESENCE")
    def presence(message: dict[str, Any], context: Any) -> Any:
        channel = channelOf(message)
        return broker.presenceFor(context, channel).addCallback(lambda subscribers: {"channel": channel, "subscribers": subscribers})

    dispatcher.onClose(broker.disconnected)
