"""
Clients for jsonproto servers: one for Twisted programs, one for scripts.

Twisted::

    client = await connect(reactor, "tcp:localhost:3001")
    reply = await client.request({"type": "SUM", "a": 1, "b": 2})

Anything else (scripts, tests, other frameworks), no reactor::

    with Client("localhost", 3001) as client:
        client.request({"type": "SUM", "a": 1, "b": 2})

Both speak either framing, pipeline requests, and verify a TLS server's
certificate and hostname unless told otherwise.  The server answers in
request order; a reply is matched to the oldest request waiting for one (or
to the request with its C{id}).  A message with no C{status} is not a
reply but a push from the server, handed to C{onMessage}.
"""

from jsonproto.client.blocking import Client
from jsonproto.client.common import ProtocolError, RequestTimedOut
from jsonproto.client.protocol import JSONClientProtocol, connect

__all__ = ["Client", "JSONClientProtocol", "ProtocolError", "RequestTimedOut", "connect"]
