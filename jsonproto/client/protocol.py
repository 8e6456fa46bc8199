"""
The Twisted client: L{JSONClientProtocol}, made by L{connect}.

    client = await connect(reactor, "tcp:localhost:3001")
    reply = await client.request({"type": "SUM", "a": 1, "b": 2})

Replies are matched to the oldest request waiting for one (or to the
request with its C{id}); a message with no C{status} is a push from the
server, handed to C{onMessage}.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet import endpoints, protocol
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from jsonproto.client.common import ProtocolError, RequestTimedOut, checkRequest, decoderFor
from jsonproto.errors import RequestError
from jsonproto.limits import Limits
from jsonproto.wire import codec, framing


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
        self._decoder, self._frame = decoderFor(framing, maxMessageSize)
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
        payload = checkRequest(message)
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
