"""
The echo service (RFC 862): every byte received is sent back unchanged.

Unframed, so the seed's C{client.js} works against it as it is; tracked,
limited and closed when idle like every other jsonproto connection.
"""

from __future__ import annotations

from jsonproto.server.connection import TrackedProtocol
from jsonproto.server.factory import TrackingFactory


class EchoProtocol(TrackedProtocol):
    """
    Writes back whatever arrives, as it arrives.

    A peer that sends without reading cannot make the server buffer its
    echo without bound: the transport is registered as its own producer, so
    it stops reading while its write buffer is full.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.info is not None:
            self.registerProducer(self.transport)

    def dataReceived(self, data: bytes) -> None:
        info = self.info
        if info is None or (self.proxied and not self.learnProxiedPeer()):
            return
        if self.closing:
            return
        info.traffic.bytesIn += len(data)
        info.traffic.bytesOut += len(data)
        self.touch()
        self.transport.write(data)


class EchoFactory(TrackingFactory):
    """
    Builds L{EchoProtocol}s; takes L{TrackingFactory}'s arguments.
    """

    protocol = EchoProtocol
