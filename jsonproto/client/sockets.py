"""
The blocking client's connection: a socket to a TCP address or a Unix path,
and TLS over it, with the standard library alone.
"""

from __future__ import annotations

import socket
import ssl


def openSocket(host: str, port: int, unixPath: str | None, timeout: float | None) -> socket.socket:
    """
    A connected socket: to C{unixPath}, if given, else to C{host} and
    C{port} over TCP, with Nagle's algorithm off (requests are small and
    each waits for its reply).

    @raise ValueError: A port outside 1 to 65535.
    @raise OSError: It could not connect.
    """
    if unixPath is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(unixPath)
        except BaseException:
            sock.close()
            raise
        return sock
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {port!r}")
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def startTLS(
    sock: socket.socket, serverHostname: str, ca: str | None, certificate: str | None, privateKey: str | None
) -> ssl.SSLSocket:
    """
    C{sock} in TLS 1.2 or later, the server's certificate verified against
    C{ca} (or the system's roots) and C{serverHostname}; C{sock} is closed
    if the handshake fails.

    @raise ssl.SSLError: The handshake failed (C{SSLCertVerificationError}
        when the server's certificate does not verify).
    """
    try:
        context = ssl.create_default_context(cafile=ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if certificate:
            context.load_cert_chain(certificate, privateKey)
        return context.wrap_socket(sock, server_hostname=serverHostname)
    except BaseException:
        sock.close()
        raise
