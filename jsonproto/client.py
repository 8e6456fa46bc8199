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

from __future__ import annotations

import selectors
import socket
import ssl
from collections import deque
from typing import Any, Callable

from twisted.internet import endpoints, protocol
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from jsonproto import codec, framing
from jsonproto.errors import RequestError
from jsonproto.limits import Limits

FRAMINGS = {
    "line": (framing.LineDecoder, framing.encodeLine),
    "int32": (framing.Int32Decoder, framing.encodeInt32),
}


class RequestTimedOut(Exception):
    """
    No reply came within the request's timeout.
    """


class ProtocolError(Exception):
    """
    The server sent something that is not a jsonproto message.
    """


def _checkRequest(message: Any) -> bytes:
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("a request is a dict with a string 'type'")
    messageId = message.get("id")
    if isinstance(messageId, (bool, list, dict)):
        raise ValueError("a request's id must be a string, a number or None")
    return codec.encode(message)


def _decoderFor(framingName: str, maxMessageSize: int) -> tuple[framing.Decoder, Callable[[bytes], bytes]]:
    if framingName not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framingName!r}")
    decoderType, frame = FRAMINGS[framingName]
    return decoderType(maxMessageSize), frame


class _Waiting:
    __slots__ = ("id", "hasId", "deferred", "timer")

    def __init__(self, message: dict[str, Any], deferred: Deferred[dict[str, Any]]) -> None:
        self.hasId = "id" in message
        self.id = message.get("id")
        self.deferred = deferred
        self.timer: IDelayedCall | None = None


class JSONClientProtocol(protocol.Protocol):
    """
    The Twisted client.  Build it with L{connect}.

    @ivar onMessage: Called with each pushed message (one without a
        C{status}); by default they are dropped.
    """

    def __init__(
        self,
        framing: str = "line",
        timeout: float | None = None,
        clock: Any = None,
        maxMessageSize: int = Limits.maxMessageSize,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self._decoder, self._frame = _decoderFor(framing, maxMessageSize)
        self._timeout = timeout
        self._clock = clock
        self._waiting: deque[_Waiting] = deque()
        self._lost: Failure | None = None
        self.onMessage: Callable[[Any], None] = lambda message: None

    def request(self, message: dict[str, Any], timeout: float | None = None) -> Deferred[dict[str, Any]]:
        """
        Send one request.

        @param timeout: Seconds to wait for the reply; the connection's
            default if L{None}.
        @return: Fires with the reply (errors included: check its
            C{status}), or fails with L{RequestTimedOut}, or with
            L{ConnectionLost} if the connection ends first.
        """
        payload = _checkRequest(message)
        result: Deferred[dict[str, Any]] = Deferred()
        if self._lost is not None:
            result.errback(self._lost)
            return result
        waiting = _Waiting(message, result)
        timeout = self._timeout if timeout is None else timeout
        if timeout:
            waiting.timer = self._clock.callLater(timeout, self._timedOut, waiting, timeout)
        self._waiting.append(waiting)
        self.transport.write(self._frame(payload))
        return result

    def _timedOut(self, waiting: _Waiting, timeout: float) -> None:
        # The entry stays queued, so that its late reply is recognised.
        waiting.timer = None
        waiting.deferred.errback(RequestTimedOut(f"no reply within {timeout:g} seconds"))

    def dataReceived(self, data: bytes) -> None:
        self._decoder.feed(data)
        while (frame := self._decoder.nextFrame()) is not None:
            if frame is framing.TOO_LONG:
                self._protocolError("a reply longer than the size limit")
                return
            try:
                message = codec.decode(frame)
            except RequestError as e:
                self._protocolError(f"a reply that is not JSON ({e})")
                return
            self._received(message)

    def _received(self, message: Any) -> None:
        if not isinstance(message, dict) or "status" not in message:
            self.onMessage(message)
            return
        if not self._waiting:
            self._protocolError("a reply to no request")
            return
        waiting = self._match(message)
        if waiting.timer is not None:
            waiting.timer.cancel()
        if not waiting.deferred.called:
            waiting.deferred.callback(message)

    def _match(self, reply: dict[str, Any]) -> _Waiting:
        if "id" in reply:
            for waiting in self._waiting:
                if waiting.hasId and waiting.id == reply["id"]:
                    self._waiting.remove(waiting)
                    return waiting
        return self._waiting.popleft()

    def _protocolError(self, what: str) -> None:
        self._lost = Failure(ProtocolError(f"the server sent {what}"))
        self.transport.abortConnection()

    def close(self) -> None:
        """
        Close the connection; requests still waiting fail.
        """
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._lost is None:
            self._lost = reason if not reason.check(ConnectionDone) else Failure(ConnectionLost("the connection was closed"))
        waiting, self._waiting = self._waiting, deque()
        for entry in waiting:
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.deferred.called:
                entry.deferred.errback(self._lost)


def connect(
    reactor: Any,
    description: str,
    framing: str = "line",
    timeout: float | None = None,
) -> Deferred[JSONClientProtocol]:
    """
    Connect to a jsonproto server.

    @param description: A Twisted client endpoint string:
        C{tcp:host=localhost:port=3001}, C{tcp:localhost:3001},
        C{tls:example.com:3443} (verified against the system's trust
        roots), C{tls:example.com:3443:trustRoots=/etc/ca-dir},
        C{tls:...:certificate=client.pem:privateKey=client.pem} for mutual
        TLS, C{unix:/run/jsonproto.sock}.
    @param timeout: The default per-request timeout in seconds.
    """
    return endpoints.connectProtocol(
        endpoints.clientFromString(reactor, description),
        JSONClientProtocol(framing=framing, timeout=timeout, clock=reactor),
    )


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
        self._decoder, self._frame = _decoderFor(framing, maxMessageSize)
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
        self._socket.sendall(self._frame(_checkRequest(message)))

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
        data = memoryview(b"".join(self._frame(_checkRequest(m)) for m in messages))
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
