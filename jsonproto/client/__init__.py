"""
Clients for jsonproto servers: one for Twisted programs, one for scripts.

Twisted::

    client = await connect(reactor, "tcp:localhost:3001")
    reply = await client.request({"type": "SUM", "a": 1, "b": 2})

Anything else (scripts, tests, other frameworks), no reactor::

    with Client("localhost", 3001) as client:
        client.request({"type": "SUM", "a": 1, "b": 2})

Subscribers, which stay subscribed to channels across lost connections
(reconnecting with backoff, resuming from the last offset seen):
L{SubscriberService} for Twisted, L{Subscriber} for scripts::

    subscriber = SubscriberService(reactor, "tcp:localhost:3001")
    with Subscriber("localhost", 3001) as subscriber: ...

Both speak either framing, pipeline requests, and verify a TLS server's
certificate and hostname unless told otherwise.  A message from the server
is a reply if and only if it carries C{status}.  The server answers in
request order; a reply is matched to the oldest request waiting for one (or
to the request with its C{id}), and the late reply of a request that timed
out is dropped.  Other messages are pushes, queued for C{receivePush} /
C{nextPush} or handed to C{onMessage}.
"""

from jsonproto.client.backoff import Backoff
from jsonproto.client.blocking import Client
from jsonproto.client.common import ProtocolError, ReplyTooLong, RequestTimedOut
from jsonproto.client.protocol import JSONClientProtocol, connect
from jsonproto.client.resume import Missed, Publication, Refused, Resync, SubscribeError, SubscriberStopped
from jsonproto.client.subscriber import Subscriber
from jsonproto.client.subscriberservice import SubscriberService

__all__ = [
    "Backoff",
    "Client",
    "JSONClientProtocol",
    "Missed",
    "ProtocolError",
    "Publication",
    "Refused",
    "ReplyTooLong",
    "RequestTimedOut",
    "Resync",
    "SubscribeError",
    "Subscriber",
    "SubscriberService",
    "SubscriberStopped",
    "connect",
]
