"""
Behind a load balancer speaking the PROXY protocol: the daemon sees the
real client address, over plain TCP and over TLS, and only where told to
expect the header.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from jsonproto.tools import certs
from tests.e2e import startDaemon

PEER = b'{"type":"PEER"}\n'


def proxied(
    port: int, source: str, sourcePort: int, payload: bytes, tlsCA: str | None = None, replies: int | None = None
) -> list[Any]:
    """
    Connect as a load balancer would: a PROXY v1 header, then the client's
    bytes (in TLS if C{tlsCA}); return the replies.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"PROXY TCP4 {source} 127.0.0.1 {sourcePort} {port}\r\n".encode())
    if tlsCA:
        sock = ssl.create_default_context(cafile=tlsCA).wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"\n") < (payload.count(b"\n") if replies is None else replies):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [json.loads(l) for l in data.splitlines()]


class ProxyProtocolTests(TestCase):
    @inlineCallbacks
    def test_plainTCP(self) -> None:
        """
        haproxy:tcp: shows handlers the address from the header, and
        per-address limits count it.
        """
        _, [port] = yield startDaemon(
            self, "--port", "haproxy:tcp:0:interface=127.0.0.1", "--handlers", "tests.peerhandlers",
        )
        [reply] = yield deferToThread(proxied, port, "203.0.113.7", 51000, PEER)
        self.assertEqual(reply, {"status": "OK", "peer": "203.0.113.7:51000", "tls": False})

    @inlineCallbacks
    def test_perAddressLimitUsesRealAddress(self) -> None:
        """
        --max-connections-per-ip counts the address the header names: a
        second client behind the same balancer from another address is let
        in, a second from the same address is told why and closed.
        """
        _, [port] = yield startDaemon(
            self, "--port", "haproxy:tcp:0:interface=127.0.0.1", "--max-connections-per-ip", "1",
        )

        def twoFromOneAddress() -> tuple[Any, Any]:
            first = socket.create_connection(("127.0.0.1", port), timeout=10)
            first.sendall(f"PROXY TCP4 198.51.100.1 127.0.0.1 1000 {port}\r\n".encode() + b'{"type":"SUM","a":1,"b":1}\n')
            first.recv(100)
            try:
                return (
                    proxied(port, "198.51.100.1", 1001, b'{"type":"SUM","a":1,"b":1}\n'),
                    proxied(port, "198.51.100.2", 1002, b'{"type":"SUM","a":1,"b":1}\n'),
                )
            finally:
                first.close()

        sameAddress, otherAddress = yield deferToThread(twoFromOneAddress)
        self.assertEqual(sameAddress, [{"status": "ERROR", "message": "Too many connections from your address", "code": "too_many_connections"}])
        self.assertEqual(otherAddress, [{"status": "OK", "result": 2}])

    @inlineCallbacks
    def test_tls(self) -> None:
        """
        jsonproto-tls:...:proxy=yes reads the header before the TLS
        handshake, as load balancers send it.
        """
        key = os.path.abspath(self.mktemp())
        certs.writeCertificate(key, ["localhost", "127.0.0.1"])
        _, [port] = yield startDaemon(
            self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:privateKey={key}:proxy=yes",
            "--handlers", "tests.peerhandlers",
        )
        [reply] = yield deferToThread(proxied, port, "192.0.2.44", 40000, PEER, key)
        self.assertEqual(reply, {"status": "OK", "peer": "192.0.2.44:40000", "tls": True})

    @inlineCallbacks
    def test_noSpoofingOnPlainPorts(self) -> None:
        """
        A port not configured for the PROXY protocol treats a PROXY line as
        what it is from a client: not JSON.  The address stays the real one.
        """
        _, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--handlers", "tests.peerhandlers")
        # Two replies: one for the PROXY line, one for the request.
        replies = yield deferToThread(proxied, port, "203.0.113.9", 1, PEER, None, 2)
        self.assertEqual(replies[0]["code"], "invalid_json")
        self.assertTrue(replies[1]["peer"].startswith("127.0.0.1:"))
