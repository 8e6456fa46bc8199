"""
The Twisted client: L{JSONClientProtocol}, made by L{connect}.

    client = await connect(reactor, "tcp:localhost:3001")
    reply = await client.request({"type": "SUM", "a": 1, "b": 2})
    push = await client.nextPush()

A message from the server is a reply if and only if it carries C{status};
replies are matched to requests by order (or by C{id}), and a request that
timed out keeps its place so that its late reply is dropped, never taken
for another's.  Other messages are pushes: queued for L{nextPush}, or
handed to C{onMessage} if it is set.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet import endpoints, protocol
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from jsonproto.client.common import ProtocolError, RequestTimedOut, checkRequest, decoderFor, readMessage
from jsonproto.client.matching import Pending, ReplyMatcher, Route, describeClosing
from jsonproto.limits import Limits


class _Waiting(Pending):
    """
    A request waiting for its reply, and the Deferred its caller holds.
    """

    __slots__ = ("deferred", "timer")

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message)
        self.deferred: Deferred[dict[str, Any]] = Deferred(self._cancel)
        self.timer: IDelayedCall | None = None

    def _cancel(self, deferred: Deferred[dict[str, Any]]) -> None:
        # Cancelled by its caller: keep its place so its reply is dropped.
        self.giveUp()

    def giveUp(self) -> None:
        self.abandoned = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class JSONClientProtocol(protocol.Protocol):
    """
    The Twisted client.  Build it with L{connect}.

    @ivar onMessage: L{None}, to queue each push for L{nextPush}; or a
        function, called with each push as it arrives instead.
    """

    # A TCP, TLS or Unix transport (abortConnection too), once connected.
    transport: Any

    def __init__(
        self,
        framing: str = "line",
        timeout: float | None = None,
        clock: Any = None,
        maxReplySize: int = Limits.maxMessageSize,
    ) -> None:
        """
        @param framing: C{line} or C{int32}, as the server speaks.
        @param timeout: The default seconds to wait for each reply; L{None}
            to wait as long as the connection lasts.
        @param clock: The L{IReactorTime} timeouts use; the reactor by
            default.
        @param maxReplySize: The longest message taken from the server, in
            bytes (the daemon's default C{--max-message-size}, unless
            told).  A longer one ends the connection with
            L{jsonproto.client.common.ReplyTooLong}.
        """
        if clock is None:
            from twisted.internet import reactor as clock
        self._decoder, self._frame = decoderFor(framing, maxReplySize)
        self._timeout = timeout
        self._clock = clock
        self._matcher = ReplyMatcher()
        self._lost: Failure | None = None
        self._pushes: deque[Any] = deque()
        self._pushWaiters: deque[Deferred[Any]] = deque()
        self.onMessage: Callable[[Any], None] | None = None

    def request(self, message: dict[str, Any], timeout: float | None = None) -> Deferred[dict[str, Any]]:
        """
        Send one request.

        @param timeout: Seconds to wait for the reply; the connection's
            default if L{None}.
        @return: Fires with the reply (errors included: check its
            C{status}), or fails with L{RequestTimedOut}, or with
            L{ConnectionLost} if the connection ends first.  Cancelling it
            gives up on the reply, as a timeout does.
        """
        payload = checkRequest(message)
        if self._lost is not None:
            return fail(self._lost)
        waiting = _Waiting(message)
        timeout = self._timeout if timeout is None else timeout
        if timeout:
            waiting.timer = self._clock.callLater(timeout, self._timedOut, waiting, timeout)
        self._matcher.add(waiting)
        self.transport.write(self._frame(payload))
        return waiting.deferred

    def notify(self, message: dict[str, Any]) -> None:
        """
        Send a message of a one-way type (one the server registered with
        C{oneWay=True}): no reply is waited for, or expected.

        @raise ConnectionLost: The connection has ended.
        """
        payload = checkRequest(message)
        if self._lost is not None:
            self._lost.raiseException()
        self.transport.write(self._frame(payload))

    def _timedOut(self, waiting: _Waiting, timeout: float) -> None:
        waiting.timer = None
        waiting.giveUp()
        waiting.deferred.errback(RequestTimedOut(f"no reply within {timeout:g} seconds"))

    def nextPush(self) -> Deferred[Any]:
        """
        The next message the server pushes (one without a C{status}),
        those already queued first.  Only while C{onMessage} is L{None}.

        @return: Fires with the message, or fails with L{ConnectionLost}
            once the connection has ended and nothing is queued.
            Cancel it (or use C{addTimeout}) to stop waiting.
        """
        if self._pushes:
            return succeed(self._pushes.popleft())
        if self._lost is not None:
            return fail(self._lost)
        waiter: Deferred[Any] = Deferred(self._pushWaiters.remove)
        self._pushWaiters.append(waiter)
        return waiter

    def dataReceived(self, data: bytes) -> None:
        if self._lost is not None:
            # Past the server's last word, or a message that was not one.
            return
        self._decoder.feed(data)
        while self._lost is None and (frame := self._decoder.nextFrame()) is not None:
            try:
                self._received(readMessage(frame, self._decoder))
            except ProtocolError as e:
                self._end(Failure(e), abort=True)

    def _received(self, message: Any) -> None:
        route, pending = self._matcher.route(message)
        if route is Route.PUSH:
            self._pushed(message)
        elif route is Route.REPLY:
            assert isinstance(pending, _Waiting)
            if pending.timer is not None:
                pending.timer.cancel()
                pending.timer = None
            pending.deferred.callback(message)
        elif route is Route.CLOSING:
            self._end(Failure(ConnectionLost(f"the server closed the connection: {describeClosing(message)}")))

    def _pushed(self, message: Any) -> None:
        if self.onMessage is not None:
            self.onMessage(message)
        elif self._pushWaiters:
            self._pushWaiters.popleft().callback(message)
        else:
            self._pushes.append(message)

    def _end(self, reason: Failure, abort: bool = False) -> None:
        """
        Take nothing more from the server: what waits will fail with
        C{reason} once the connection is closed.
        """
        self._lost = reason
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def close(self) -> None:
        """
        Close the connection; requests still waiting fail.
        """
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._lost is None:
            self._lost = reason if not reason.check(ConnectionDone) else Failure(ConnectionLost("the connection was closed"))
        for entry in self._matcher.drain():
            assert isinstance(entry, _Waiting)
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
            if not entry.deferred.called:
                entry.deferred.errback(self._lost)
        waiters, self._pushWaiters = self._pushWaiters, deque()
        for waiter in waiters:
            waiter.errback(self._lost)


def connect(
    reactor: Any,
    description: str,
    framing: str = "line",
    timeout: float | None = None,
    maxReplySize: int = Limits.maxMessageSize,
) -> Deferred[JSONClientProtocol]:
    """
    Connect to a jsonproto server.

    @param description: A Twisted client endpoint string:
        C{tcp:host=localhost:port=3001}, C{tcp:localhost:3001},
        C{tls:example.com:3443} (verified against the system's trust
        roots), C{tls:example.com:3443:trustRoots=/etc/ca-dir} (a directory
        of PEM certificates), C{tls:...:certificate=client.pem:privateKey=client.pem}
        for mutual TLS, C{unix:/run/jsonproto.sock}.  The endpoint's own
        C{timeout=} limits connecting.
    @param framing: C{line} or C{int32}, as the server speaks.
    @param timeout: The default seconds to wait for each reply (not for
        connecting); L{None} to wait as long as the connection lasts.
    @param maxReplySize: The longest message taken from the server, in
        bytes; the daemon's default C{--max-message-size} unless told.
    """
    return endpoints.connectProtocol(
        endpoints.clientFromString(reactor, description),
        JSONClientProtocol(framing=framing, timeout=timeout, clock=reactor, maxReplySize=maxReplySize),
    )
