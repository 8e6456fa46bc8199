"""
The blocking client, L{Client}: stdlib sockets and C{ssl} only, for scripts,
tests and programs that run no reactor.

    with Client("localhost", 3001) as client:
        client.request({"type": "SUM", "a": 1, "b": 2})
"""

from __future__ import annotations

import selectors
import socket
import ssl
from collections import deque
from typing import Any, Callable

from jsonproto.client.common import ProtocolError, checkRequest, decoderFor
from jsonproto.errors import RequestError
from jsonproto.limits import Limits
from jsonproto.wire import codec, framing


class Client:
    """
    A blocking client, stdlib sockets and C{ssl} only.

    @param host: The server's name or address (for TLS, the name its
        certificate must carry, unless C{serverHostname} says otherwise).
    @param tls: Speak TLS, verifying the server's certificate and hostname.
    @param ca: A PEM file of certificates to trust instead of the system's.
    @param certificate: A PEM file with this client's certificate (and key,
        unless C{privateKey} names another file), for mutual TLS.
    @param timeout: Seconds to wait for connecting and for each reply.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        framing: str = "line",
        tls: bool = False,
        ca: str | None = None,
        certificate: str | None = None,
        privateKey: str | None = None,
        serverHostname: str | None = None,
        timeout: float | None = 10.0,
        maxMessageSize: int = Limits.maxMessageSize,
        unixPath: str | None = None,
    ) -> None:
        self._decoder, self._frame = decoderFor(framing, maxMessageSize)
        if unixPath is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(unixPath)
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = ssl.create_default_context(cafile=ca)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if certificate:
                context.load_cert_chain(certificate, privateKey)
            try:
                sock = context.wrap_socket(sock, server_hostname=serverHostname or host)
            except BaseException:
                sock.close()
                raise
        self._socket = sock
        self._pushed: deque[Any] = deque()
        self.onMessage: Callable[[Any], None] = self._pushed.append

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def send(self, message: dict[str, Any]) -> None:
        """
        Send one request without waiting for its reply.
        """
        self._socket.sendall(self._frame(checkRequest(message)))

    def receive(self) -> dict[str, Any]:
        """
        Wait for the next reply (pushed messages on the way go to
        C{onMessage}).

        @raise TimeoutError: None came within the timeout.
        @raise ConnectionError: The server closed the connection first.
        @raise ProtocolError: The server sent something not jsonproto.
        """
        while True:
            reply = self._nextReply()
            if reply is not None:
                return reply
            self._received(self._socket.recv(65536))

    def _nextReply(self) -> dict[str, Any] | None:
        """
        The next reply among the bytes received so far, handing pushed
        messages before it to C{onMessage}; L{None} until more arrive.
        """
        while True:
            frame = self._decoder.nextFrame()
            if frame is None:
                return None
            if frame is framing.TOO_LONG:
                raise ProtocolError("the server sent a reply longer than the size limit")
            try:
                message = codec.decode(frame)
            except RequestError as e:
                raise ProtocolError(f"the server sent a reply that is not JSON ({e})") from None
            if isinstance(message, dict) and "status" in message:
                return message
            self.onMessage(message)

    def _received(self, data: bytes) -> None:
        if not data:
            raise ConnectionError("the server closed the connection")
        self._decoder.feed(data)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """
        Send one request and return its reply.
        """
        self.send(message)
        return self.receive()

    def pipeline(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """
        Send every request and return every reply, in order.

        Replies are read while requests are still being sent: a server
        stops reading from a client that does not take its replies, so
        sending a large batch before reading any would leave both waiting.

        @raise TimeoutError: Nothing could be sent or received for the
            timeout.
        """
        data = memoryview(b"".join(self._frame(checkRequest(m)) for m in messages))
        replies: list[dict[str, Any]] = []
        sock = self._socket
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
                while len(replies) < len(messages):
                    reply = self._nextReply()
                    if reply is not None:
                        replies.append(reply)
                        continue
                    if not selector.select(timeout):
                        raise TimeoutError(f"no progress for {timeout} seconds, {len(replies)} of {len(messages)} replies in")
                    if data:
                        data = data[self._sendSome(data) :]
                        if not data:
                            selector.modify(sock, selectors.EVENT_READ)
                    self._receiveSome()
        finally:
            sock.settimeout(timeout)
        return replies

    def _sendSome(self, data: memoryview) -> int:
        """
        Send what the socket takes now, without waiting.
        """
        try:
            return self._socket.send(data[:65536])
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0

    def _receiveSome(self) -> None:
        """
        Take what has arrived, without waiting (and, over TLS, what the TLS
        layer already holds, which the selector cannot see).
        """
        sock = self._socket
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            self._received(data)
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return
