"""
The Twisted subscriber, L{SubscriberService}: subscribes to channels and
stays subscribed, connecting again by itself (through Twisted's
L{ClientService}) when the connection is lost, and carrying on from the
last publication it handed on.

    subscriber = SubscriberService(reactor, "tcp:localhost:3001")
    subscriber.startService()
    await subscriber.subscribe("room:1")
    async for event in subscriber:
        if isinstance(event, Publication):
            print(event.data)

A plain L{connect} never reconnects: this service is for programs that
want it to.  As a service it can be given a parent (C{setServiceParent})
in a C{twistd} application, which starts and stops it.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet import endpoints, protocol
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsonproto.client.backoff import Backoff
from jsonproto.client.common import ProtocolError, ReplyTooLong, RequestTimedOut
from jsonproto.client.protocol import JSONClientProtocol
from jsonproto.client.resume import RETRY_CODES, Event, Positions, Refused, Resuming, SubscribeError, SubscriberStopped
from jsonproto.limits import Limits

log = Logger()


class _SubscriberProtocol(JSONClientProtocol):
    """
    A connection of a L{SubscriberService}, which it tells when it is made
    and lost.
    """

    def __init__(self, subscriber: SubscriberService, **options: Any) -> None:
        super().__init__(**options)
        self.subscriber = subscriber

    def connectionMade(self) -> None:
        super().connectionMade()
        self.subscriber._connected(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        super().connectionLost(reason)
        self.subscriber._disconnected(self, self._lost or reason)


class SubscriberService(Service, Resuming):
    """
    A subscriber for Twisted programs.  Events (L{jsonproto.client.resume.Publication},
    L{Missed <jsonproto.client.resume.Missed>}, L{Resync
    <jsonproto.client.resume.Resync>}, L{Refused}) are queued for
    L{nextEvent} and C{async for}, or handed to C{onEvent} if it is set.

    @ivar onEvent: L{None}, to queue each event; or a function, called
        with each event as it arrives instead.
    @ivar backoff: The waits between attempts to connect.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: str | IStreamClientEndpoint,
        *,
        framing: str = "line",
        timeout: float | None = 10.0,
        maxReplySize: int = Limits.maxMessageSize,
        backoff: Backoff | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param endpoint: A Twisted client endpoint, or its string (as
            L{connect} takes it: C{tcp:localhost:3001}, C{tls:...},
            C{unix:...}).
        @param framing: C{line} or C{int32}, as the server speaks.
        @param timeout: Seconds to wait for the reply to each SUBSCRIBE; one
            that does not come in time drops the connection, to try again.
        @param maxReplySize: The longest message taken from the server; a
            longer one stops the service (it would come again on the next
            connection), failing what waits with
            L{jsonproto.client.common.ReplyTooLong}.
        @param clock: The L{IReactorTime} for the waits between attempts
            and for timeouts; the reactor unless told.
        """
        clock = reactor if clock is None else clock
        if isinstance(endpoint, str):
            endpoint = endpoints.clientFromString(reactor, endpoint)
        assert not isinstance(endpoint, str)
        options: dict[str, Any] = {"framing": framing, "timeout": timeout, "clock": clock, "maxReplySize": maxReplySize}
        JSONClientProtocol(**options)  # a bad option fails here, not at each connection
        factory = protocol.Factory.forProtocol(lambda: _SubscriberProtocol(self, **options))
        self.backoff = backoff if backoff is not None else Backoff()
        self._connector = ClientService(endpoint, factory, retryPolicy=self._retryIn, clock=clock)
        self._positions = Positions()
        self._connection: _SubscriberProtocol | None = None
        # Channels whose SUBSCRIBE on this connection awaits its reply, and
        # those of them sent when it was made.
        self._inFlight: set[str] = set()
        self._renewing: set[str] = set()
        self._replies: dict[str, dict[str, Any]] = {}
        self._waiting: dict[str, list[Deferred[dict[str, Any]]]] = {}
        self._events: deque[Event] = deque()
        self._eventWaiters: deque[Deferred[Event]] = deque()
        self._stopped: Failure | None = None
        self.onEvent: Callable[[Event], None] | None = None

    # The service

    def startService(self) -> None:
        """
        Connect, and keep connected until L{stopService}.
        """
        self._stopped = None
        super().startService()
        self._connector.startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop connecting and close the connection.  Events already received
        can still be taken; then L{nextEvent} fails with
        L{SubscriberStopped}, and C{async for} ends.

        @return: Fires once the connection is closed.
        """
        self._stop(Failure(SubscriberStopped("the subscriber was stopped")))
        return self._connector.stopService()

    def _stop(self, reason: Failure) -> None:
        if self._stopped is None:
            self._stopped = reason
        super().stopService()
        waiting, self._waiting = self._waiting, {}
        for deferreds in waiting.values():
            for d in deferreds:
                d.errback(self._stopped)
        waiters, self._eventWaiters = self._eventWaiters, deque()
        for waiter in waiters:
            waiter.errback(self._stopped)

    def whenConnected(self, failAfterFailures: int | None = None) -> Deferred[JSONClientProtocol]:
        """
        The connection of the moment, or the next one made: for requests
        on the subscriber's connection (C{PUBLISH}, say), or to learn that
        the first attempts to connect fail.

        @param failAfterFailures: Fail after this many attempts in a row
            have failed (L{None}: only when the service stops).
        """
        return self._connector.whenConnected(failAfterFailures=failAfterFailures)  # type: ignore[return-value]

    # Subscribing

    def subscribe(self, channel: str) -> Deferred[dict[str, Any]]:
        """
        Subscribe to C{channel}, from now on and on every new connection.

        @return: Fires with the server's reply (the channel's C{offset}
            and C{epoch}) once connected and subscribed; fails with
            L{SubscribeError} if the server refuses (the subscriber then
            does not subscribe to it), with L{SubscriberStopped} if the
            service stops first.
        """
        if channel in self._positions and channel in self._replies:
            return succeed(self._replies[channel])
        if self._stopped is not None and not self.running:
            return fail(self._stopped)
        self._positions.want(channel)
        waiter: Deferred[dict[str, Any]] = Deferred()
        waiting = self._waiting.setdefault(channel, [])
        waiting.append(waiter)
        if self._connection is not None and channel not in self._inFlight:
            self._send(self._connection, channel)
        return waiter

    def unsubscribe(self, channel: str) -> Deferred[None]:
        """
        Stop subscribing to C{channel}: no publication of it is handed on
        from now on.  A L{subscribe} still waiting fails with
        C{CancelledError}.

        @return: Fires once the server has answered, or the connection
            is gone (at once, when not connected).
        """
        self._positions.forget(channel)
        self._replies.pop(channel, None)
        self._renewed(channel)
        for waiter in self._waiting.pop(channel, []):
            waiter.errback(CancelledError(f"unsubscribed from {channel}"))
        if self._connection is None:
            return succeed(None)
        answered = self._connection.request({"type": "UNSUBSCRIBE", "channel": channel})
        # A connection lost first unsubscribes as well.
        return answered.addBoth(lambda _: None)

    # Events

    def nextEvent(self) -> Deferred[Event]:
        """
        The next event, those already received first.  Only while
        C{onEvent} is L{None}.

        @return: Fires with the event; fails with L{SubscriberStopped} once
            the service is stopped and nothing received is left (with
            L{jsonproto.client.common.ReplyTooLong} if that stopped it).
            Cancel it (or C{addTimeout}) to stop waiting.
        """
        if self._events:
            return succeed(self._events.popleft())
        if self._stopped is not None:
            return fail(self._stopped)
        waiter: Deferred[Event] = Deferred(self._eventWaiters.remove)
        self._eventWaiters.append(waiter)
        return waiter

    def __aiter__(self) -> SubscriberService:
        return self

    async def __anext__(self) -> Event:
        """
        C{async for event in subscriber}: every event, until the service
        stops.
        """
        try:
            return await self.nextEvent()
        except SubscriberStopped:
            raise StopAsyncIteration from None

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            if self.onEvent is not None:
                try:
                    self.onEvent(event)
                except Exception:
                    log.failure("onEvent raised an exception handling {event!r}", event=event)
            elif self._eventWaiters:
                self._eventWaiters.popleft().callback(event)
            else:
                self._events.append(event)

    # Connections

    def _retryIn(self, failures: int) -> float:
        """
        The ClientService's retry policy: the subscriber's own backoff,
        which starts over only once a connection has renewed every
        subscription (a server that takes connections and closes them at
        once is waited for longer and longer, too).
        """
        wait = self.backoff.next()
        log.info("connecting again in {wait:.1f} s", wait=wait)
        return wait

    def _connected(self, connection: _SubscriberProtocol) -> None:
        self._connection = connection
        connection.onMessage = lambda message: self._emit(self._positions.pushed(message))
        channels = self._positions.channels
        self._inFlight = set()
        self._renewing = set(channels)
        if not channels:
            self.backoff.reset()
        for channel in channels:
            self._send(connection, channel)

    def _disconnected(self, connection: _SubscriberProtocol, reason: Failure) -> None:
        if self._connection is connection:
            self._connection = None
        if reason.check(ReplyTooLong):
            log.error("stopping: {reason}", reason=reason.getErrorMessage())
            self._stop(reason)
            self._connector.stopService()
        elif self.running:
            log.info("lost the connection: {reason}", reason=reason.getErrorMessage())

    def _send(self, connection: _SubscriberProtocol, channel: str) -> None:
        self._inFlight.add(channel)
        connection.request(self._positions.request(channel)).addCallbacks(
            self._subscribed, self._notSubscribed, callbackArgs=(connection, channel), errbackArgs=(connection, channel)
        )

    def _subscribed(self, reply: dict[str, Any], connection: _SubscriberProtocol, channel: str) -> None:
        self._inFlight.discard(channel)
        if channel not in self._positions:
            return
        if reply.get("status") == "OK":
            try:
                events = self._positions.subscribed(channel, reply)
            except ProtocolError as e:
                log.error("{error}", error=str(e))
                connection.transport.abortConnection()
                return
            self._replies[channel] = reply
            for waiter in self._waiting.pop(channel, []):
                waiter.callback(reply)
            self._emit(events)
        elif reply.get("code") in RETRY_CODES:
            log.info("the server cannot subscribe to {channel} now ({code}): trying again", channel=channel, code=reply.get("code"))
            connection.transport.loseConnection()
            return
        else:
            self._positions.forget(channel)
            waiting = self._waiting.pop(channel, [])
            refusal = SubscribeError(channel, reply)
            for waiter in waiting:
                waiter.errback(refusal)
            if not waiting:
                log.warn("{refusal}", refusal=str(refusal))
                self._emit([Refused(channel, reply)])
        self._renewed(channel)

    def _notSubscribed(self, failure: Failure, connection: _SubscriberProtocol, channel: str) -> None:
        # A connection lost meanwhile renews the subscription on the next.
        if connection is self._connection:
            self._inFlight.discard(channel)
        if failure.check(RequestTimedOut):
            log.info("no reply to SUBSCRIBE {channel} in time: connecting again", channel=channel)
            connection.transport.abortConnection()
