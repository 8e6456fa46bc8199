"""
The blocking client, L{Client}: stdlib sockets and C{ssl} only, for scripts,
tests and programs that run no reactor.

    with Client("localhost", 3001) as client:
        client.request({"type": "SUM", "a": 1, "b": 2})
        push = client.receivePush(timeout=5)

A message from the server is a reply if and only if it carries C{status}.
Each reply goes to its own request (by order, or by C{id}); a request that
timed out keeps its place, and its late reply is dropped, so no later
request can be handed it.  Other messages are pushes, queued for
L{Client.receivePush} and L{Client.pushes}, or handed to C{onMessage}.
The socket's reads and writes, framed, are L{jsonproto.client.messagesocket}'s.
"""

from __future__ import annotations

import enum
import math
import selectors
import time
from collections import deque
from typing import Any, Callable, Iterator, Literal

from jsonproto.client.common import ProtocolError, checkRequest, decoderFor
from jsonproto.client.matching import Pending, ReplyMatcher, Route, describeClosing
from jsonproto.client.messagesocket import MessageSocket
from jsonproto.client.sockets import openSocket, startTLS
from jsonproto.limits import Limits


class _Default(enum.Enum):
    TIMEOUT = "the client's timeout"


CLIENT_TIMEOUT: Literal[_Default.TIMEOUT] = _Default.TIMEOUT
"""
The default of every C{timeout} parameter of L{Client}'s methods: the
C{timeout} the client was made with.
"""

Timeout = float | None | Literal[_Default.TIMEOUT]


def checkTimeout(timeout: Any) -> float | None:
    """
    A timeout as the clients take it: positive seconds, or L{None} for no
    limit.

    @raise ValueError: Anything else (zero would mean "do not wait at all",
        which makes no connection and no reply).
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, or None for no limit, not {timeout!r}")
    return float(timeout)


class Client:
    """
    A blocking client, stdlib sockets and C{ssl} only.

    @ivar onMessage: L{None}, to queue each push for L{receivePush} and
        L{pushes}; or a function, called with each push as it is read
        (while the client waits for a reply, say) instead.
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
        maxReplySize: int = Limits.maxMessageSize,
        unixPath: str | None = None,
    ) -> None:
        """
        Connect.

        @param host: The server's name or address (for TLS, the name its
            certificate must carry, unless C{serverHostname} says
            otherwise).
        @param framing: C{line} or C{int32}, as the server speaks.
        @param tls: Speak TLS, verifying the server's certificate and
            hostname.
        @param ca: A PEM file of certificates to trust instead of the
            system's.
        @param certificate: A PEM file with this client's certificate (and
            key, unless C{privateKey} names another file), for mutual TLS.
        @param timeout: Seconds to wait for connecting, and the default for
            each reply and each push waited for; L{None} for no limit.
        @param maxReplySize: The longest message taken from the server, in
            bytes: the daemon's default C{--max-message-size} unless told.
            A longer one raises L{jsonproto.client.common.ReplyTooLong}
            and ends the connection.
        @param unixPath: Connect to this Unix socket instead of C{host} and
            C{port}.
        @raise ValueError: A bad port, framing, timeout or size.
        @raise OSError: The connection failed (C{ConnectionRefusedError},
            C{TimeoutError}, C{ssl.SSLCertVerificationError}, ...).
        """
        self._timeout = checkTimeout(timeout)
        decoder, frame = decoderFor(framing, maxReplySize)
        sock = openSocket(host, port, unixPath, self._timeout)
        if tls:
            sock = startTLS(sock, serverHostname or host, ca, certificate, privateKey)
        self._connection = MessageSocket(sock, decoder, frame, self._timeout, self._received)
        self._matcher = ReplyMatcher()
        # Requests made with send(), for receive() to answer in order.
        self._unreceived: deque[Pending] = deque()
        self._pushes: deque[Any] = deque()
        self.onMessage: Callable[[Any], None] | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """
        Close the connection.  Replies and pushes already read can still be
        taken; anything else raises C{ConnectionError}.
        """
        self._connection.close()

    def fileno(self) -> int:
        """
        The socket's file descriptor, for a program that waits on it with
        C{selectors} among other files, then calls L{poll}.
        """
        return self._connection.fileno()

    # Replies

    def request(self, message: dict[str, Any], timeout: Timeout = CLIENT_TIMEOUT) -> dict[str, Any]:
        """
        Send one request and return its reply (errors included: check its
        C{status}).

        @param timeout: Seconds to wait for the reply; the client's timeout
            unless told; L{None} for no limit.
        @raise TimeoutError: No reply came in time.  The request is given
            up: its reply, should it come later, is dropped.
        @raise ConnectionError: The connection ended first (the message
            says why: closed by the server, and with what error).
        @raise ProtocolError: The server sent something not jsonproto; the
            connection is closed.
        """
        pending = self._sendRequest(message)
        return self._waitFor(pending, timeout)

    def send(self, message: dict[str, Any]) -> None:
        """
        Send one request without waiting for its reply: L{receive} returns
        the replies to these requests, in the order they were sent.
        """
        self._unreceived.append(self._sendRequest(message))

    def notify(self, message: dict[str, Any]) -> None:
        """
        Send a message of a one-way type (one the server registered with
        C{oneWay=True}): no reply is waited for, or expected.  A server
        that answers it anyway (it does not know the type as one-way)
        leaves a reply no request is waiting for, which ends the
        connection.

        @raise TimeoutError: It could not be sent whole in time (the
            server is not reading); the connection is closed.
        """
        payload = checkRequest(message)
        self._connection.raiseIfBroken()
        self._connection.write(payload)

    def receive(self, timeout: Timeout = CLIENT_TIMEOUT) -> dict[str, Any]:
        """
        Wait for the reply to the oldest request made with L{send} whose
        reply has not been taken yet.

        @raise RuntimeError: No such request.
        @raise TimeoutError: It did not come in time.  That request is given
            up (its late reply will be dropped); the next call waits for
            the next one.
        @raise ConnectionError: The connection ended first.
        @raise ProtocolError: The server sent something not jsonproto.
        """
        if not self._unreceived:
            raise RuntimeError("no request made with send() is waiting for its reply")
        try:
            return self._waitFor(self._unreceived[0], timeout)
        finally:
            self._unreceived.popleft()

    @property
    def replyReady(self) -> bool:
        """
        Whether L{receive} would return at once, without reading: the reply
        to the oldest request made with L{send} has already been read.
        """
        return bool(self._unreceived) and self._unreceived[0].reply is not None

    def pipeline(self, messages: list[dict[str, Any]], timeout: Timeout = CLIENT_TIMEOUT) -> list[dict[str, Any]]:
        """
        Send every request and return every reply, in order.

        Replies are read while requests are still being sent: a server
        stops reading from a client that does not take its replies, so
        sending a large batch before reading any would leave both waiting.

        @param timeout: Seconds any wait may last with nothing sent or
            received; the client's timeout unless told.
        @raise TimeoutError: Nothing could be sent or received for the
            timeout.  The requests not yet answered are given up; if some
            were not yet sent whole, the connection is closed.
        """
        payloads = [checkRequest(m) for m in messages]
        connection = self._connection
        connection.raiseIfBroken()
        seconds = self._seconds(timeout)
        pendings = [Pending(m) for m in messages]
        for pending in pendings:
            self._matcher.add(pending)
        data = memoryview(b"".join(connection.frame(p) for p in payloads))
        answered = 0
        try:
            connection.setblocking(False)
            with selectors.DefaultSelector() as selector:
                selector.register(connection, selectors.EVENT_READ | selectors.EVENT_WRITE)
                while True:
                    while answered < len(pendings) and pendings[answered].reply is not None:
                        answered += 1
                    if answered == len(pendings):
                        break
                    connection.raiseIfBroken()
                    if not selector.select(seconds):
                        raise TimeoutError(f"no progress for {seconds:g} seconds, {answered} of {len(pendings)} replies in")
                    if data:
                        data = data[connection.sendSome(data) :]
                        if not data:
                            selector.modify(connection, selectors.EVENT_READ)
                    connection.receiveSome()
        except BaseException:
            for pending in pendings:
                pending.abandoned = pending.reply is None
            if data:
                connection.fail(ConnectionError("a pipeline stopped before all its requests were sent whole, so the connection was closed"))
            raise
        return [p.reply for p in pendings]  # type: ignore[misc]

    # Pushes

    def receivePush(self, timeout: Timeout = CLIENT_TIMEOUT) -> Any:
        """
        The next message the server pushes (one without a C{status}): one
        already read, or the next to arrive, with no request needed.
        Replies read meanwhile are kept for their requests.

        @param timeout: Seconds to wait; the client's timeout unless told;
            L{None} for no limit.
        @raise TimeoutError: None came in time.
        @raise ConnectionError: The connection ended first.
        @raise RuntimeError: Pushes go to C{onMessage} instead.
        """
        if self.onMessage is not None:
            raise RuntimeError("pushes are handed to onMessage; set it to None to receive them here")
        deadline, seconds = self._deadline(timeout)
        while not self._pushes:
            self._connection.readOnce(deadline, f"no push within {seconds:g} seconds")
        return self._pushes.popleft()

    def pushes(self) -> Iterator[Any]:
        """
        Every message the server pushes, as it arrives, for as long as the
        connection lasts: C{for message in client.pushes(): ...} waits
        without a time limit, and ends when the server closes the
        connection.
        """
        while True:
            try:
                yield self.receivePush(timeout=None)
            except ConnectionError:
                return

    def poll(self) -> None:
        """
        Read what the server has sent so far, without waiting: pushes go to
        the queue (or C{onMessage}), replies to their requests (see
        L{replyReady}).  For a program that waits on L{fileno} itself.

        @raise ConnectionError: The connection has ended (replies and
            pushes that came before the end can still be taken).
        @raise ProtocolError: The server sent something not jsonproto.
        """
        connection = self._connection
        connection.raiseIfBroken()
        connection.setblocking(False)
        connection.receiveSome()
        connection.raiseIfBroken()

    def _sendRequest(self, message: dict[str, Any]) -> Pending:
        payload = checkRequest(message)
        self._connection.raiseIfBroken()
        pending = Pending(message)
        self._matcher.add(pending)
        self._connection.write(payload)
        return pending

    def _seconds(self, timeout: Timeout) -> float | None:
        return self._timeout if timeout is CLIENT_TIMEOUT else checkTimeout(timeout)

    def _deadline(self, timeout: Timeout) -> tuple[float | None, float]:
        seconds = self._seconds(timeout)
        if seconds is None:
            return None, math.inf
        return time.monotonic() + seconds, seconds

    def _waitFor(self, pending: Pending, timeout: Timeout) -> dict[str, Any]:
        deadline, seconds = self._deadline(timeout)
        try:
            while pending.reply is None:
                self._connection.readOnce(deadline, f"no reply within {seconds:g} seconds")
        except TimeoutError:
            pending.abandoned = True
            raise
        return pending.reply

    def _received(self, message: Any) -> None:
        """
        A message from the server: a reply, to its request; a push, to the
        queue or C{onMessage}; the server's last words, ending the
        connection.
        """
        try:
            route, _ = self._matcher.route(message)
        except ProtocolError as e:
            self._connection.fail(e)
            return
        if route is Route.PUSH:
            if self.onMessage is not None:
                self.onMessage(message)
            else:
                self._pushes.append(message)
        elif route is Route.CLOSING:
            self._connection.fail(ConnectionError(f"the server closed the connection: {describeClosing(message)}"))
