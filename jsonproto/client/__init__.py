"""
Clients for jsonproto servers: one for Twisted programs, one for scripts.

Twisted::

    client = await connect(reactor, "tcp:localhost:3001")
    reply = await client.request({"type": "SUM", "a": 1, "b": 2})

Anything else (scripts, tests, other frameworks), no reactor::

    with Client("localhost", 3001) as client:
        client.request({"type": "SUM", "a": 1, "b": 2})

Both speak either framing, pipeline requests, and verify a TLS server's
certificate and hostname unless told otherwise.  A message from the server
is a reply if and only if it carries C{status}.  The server answers in
request order; a reply is matched to the oldest request waiting for one (or
to the request with its C{id}), and the late reply of a request that timed
out is dropped.  Other messages are pushes, queued for C{receivePush} /
C{nextPush} or handed to C{onMessage}.
"""

from jsonproto.client.blocking import Client
from jsonproto.client.common import ProtocolError, ReplyTooLong, RequestTimedOut
from jsonproto.client.protocol import JSONClientProtocol, connect

__all__ = ["Client", "JSONClientProtocol", "ProtocolError", "ReplyTooLong", "RequestTimedOut", "connect"]
