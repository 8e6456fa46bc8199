"""
The blocking subscriber, L{Subscriber}: a L{Client} that subscribes to
channels and stays subscribed, connecting again by itself when the
connection is lost, and carrying on from the last publication it handed
on.

    with Subscriber("localhost", 3001) as subscriber:
        subscriber.subscribe("room:1")
        for event in subscriber.events():
            if isinstance(event, Publication):
                print(event.data)
            elif isinstance(event, Resync):
                ...  # fetch the channel's state afresh

A plain L{Client} never reconnects: this class is for programs that want
it to.  Waiting (for the server, and between attempts to connect) happens
only inside its methods, in the thread that calls them.
"""

from __future__ import annotations

import selectors
import time
from collections import deque
from typing import Any, Callable, Iterator

from jsonproto.client.backoff import Backoff
from jsonproto.client.blocking import CLIENT_TIMEOUT, Client, Timeout, checkTimeout
from jsonproto.client.common import ProtocolError, ReplyTooLong
from jsonproto.client.resume import RETRY_CODES, Event, Positions, Refused, Resuming, SubscribeError, SubscriberStopped

_SUBSCRIBE, _UNSUBSCRIBE = "SUBSCRIBE", "UNSUBSCRIBE"


class Subscriber(Resuming):
    """
    A blocking subscriber.  It connects when made (as L{Client} does, so
    a wrong address or a server that is not there is an error at once);
    after that, a lost connection is made again after a wait from its
    L{Backoff}, its channels subscribed to again with C{since}, and what
    they missed is handed on in order, each publication once.

    @ivar backoff: The waits between attempts to connect.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        notify: Callable[[str], None] | None = None,
        **options: Any,
    ) -> None:
        """
        Connect.

        @param host: The server, as L{Client} takes it; so are C{port} and
            C{options} (C{framing}, C{tls}, C{ca}, C{certificate},
            C{privateKey}, C{serverHostname}, C{timeout}, C{maxReplySize},
            C{unixPath}).  C{timeout} limits each attempt to connect, and
            is the default wait of L{subscribe} and L{nextEvent}.
        @param sleep: Waits between attempts to connect (C{time.sleep};
            tests give one that does not).
        @param notify: Told, in one line each, when the connection is
            lost, when an attempt to connect fails, and when a channel
            resumes: for a program's log.  L{None}: nobody is told.
        @raise OSError: The first connection failed (as L{Client}).
        @raise ValueError: A bad option.
        """
        self._host, self._port, self._options = host, port, options
        self._timeout = checkTimeout(options.get("timeout", 10.0))
        self.backoff = backoff if backoff is not None else Backoff()
        self._sleep = sleep
        self._notify = notify
        self._positions = Positions()
        self._events: deque[Event] = deque()
        # Requests made with Client.send() on this connection, in order.
        self._sent: deque[tuple[str, str]] = deque()
        self._replies: dict[str, dict[str, Any]] = {}
        self._refusals: dict[str, SubscribeError] = {}
        self._awaited: set[str] = set()
        self._renewing: set[str] = set()
        self._wait = 0.0
        self._stopped: Exception | None = None
        self._client: Client | None = self._open()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """
        Whether a connection is up now (it may be found lost at the next
        read).
        """
        return self._client is not None

    def close(self) -> None:
        """
        Close the connection and stop: events already received can still
        be taken; then L{nextEvent} raises L{SubscriberStopped}.
        """
        if self._stopped is None:
            self._stopped = SubscriberStopped("the subscriber was closed")
        if self._client is not None:
            self._client.close()
            self._client = None

    # Subscribing

    def subscribe(self, channel: str, timeout: Timeout = CLIENT_TIMEOUT) -> dict[str, Any]:
        """
        Subscribe to C{channel}, from now on and on every new connection.

        @param timeout: Seconds to wait for the server's reply (connecting
            again if need be); the subscriber's timeout unless told.
        @return: The server's reply: the channel's C{offset} and C{epoch}.
        @raise SubscribeError: The server refused (the error reply is its
            C{reply}); the subscriber does not subscribe to C{channel}.
        @raise TimeoutError: No reply came in time; the subscriber goes on
            trying, on this connection and the next.
        @raise ReplyTooLong: See L{nextEvent}.
        """
        self._raiseIfStopped()
        if channel in self._positions and channel in self._replies:
            return self._replies[channel]
        self._positions.want(channel)
        deadline = self._deadline(timeout)
        self._awaited.add(channel)
        try:
            if self._client is not None and (_SUBSCRIBE, channel) not in self._sent:
                self._send(_SUBSCRIBE, channel, self._positions.request(channel))
            while channel not in self._replies and channel not in self._refusals:
                self._step(deadline)
        finally:
            self._awaited.discard(channel)
        if channel in self._refusals:
            raise self._refusals.pop(channel)
        return self._replies[channel]

    def unsubscribe(self, channel: str) -> None:
        """
        Stop subscribing to C{channel}: no publication of it is handed on
        from now on (those already on their way are dropped).
        """
        self._positions.forget(channel)
        self._replies.pop(channel, None)
        self._renewed(channel)
        if self._client is not None:
            self._send(_UNSUBSCRIBE, channel, {"type": "UNSUBSCRIBE", "channel": channel})

    # Events

    def nextEvent(self, timeout: Timeout = CLIENT_TIMEOUT) -> Event:
        """
        The next event: a L{jsonproto.client.resume.Publication}, L{Missed
        <jsonproto.client.resume.Missed>}, L{Resync
        <jsonproto.client.resume.Resync>} or L{Refused}, those already
        received first.  A lost connection is made again meanwhile.

        @param timeout: Seconds to wait (waits between attempts to connect
            included); the subscriber's timeout unless told; L{None} for
            no limit.
        @raise TimeoutError: None came in time.
        @raise SubscriberStopped: L{close} was called, and nothing received
            before is left.
        @raise ReplyTooLong: The server sent a message longer than
            C{maxReplySize}: the subscriber stops (it would get the same
            message again on the next connection).
        """
        deadline = self._deadline(timeout)
        while not self._events:
            self._step(deadline)
        return self._events.popleft()

    def events(self) -> Iterator[Event]:
        """
        Every event as it comes, without a time limit, until L{close}.
        """
        while True:
            try:
                yield self.nextEvent(timeout=None)
            except SubscriberStopped:
                return

    # Waiting

    def _deadline(self, timeout: Timeout) -> float | None:
        seconds = self._timeout if timeout is CLIENT_TIMEOUT else checkTimeout(timeout)
        return None if seconds is None else time.monotonic() + seconds

    def _step(self, deadline: float | None) -> None:
        """
        Wait once: for the server to send something (taking it), or, with
        no connection, for the next attempt to connect (making it).

        @raise TimeoutError: C{deadline} has passed.
        """
        self._raiseIfStopped()
        client = self._client
        if client is None:
            self._reconnect(deadline)
            return
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("nothing came in time")
        with selectors.DefaultSelector() as selector:
            selector.register(client.fileno(), selectors.EVENT_READ)
            if not selector.select(remaining):
                raise TimeoutError("nothing came in time")
        try:
            client.poll()
        except ReplyTooLong as e:
            self.close()
            self._stopped = e
            raise
        except (ConnectionError, ProtocolError) as e:
            self._takeReplies(client)
            self._lost(client, str(e))
            return
        self._takeReplies(client)

    def _reconnect(self, deadline: float | None) -> None:
        wait = self._wait
        if deadline is not None and time.monotonic() + wait > deadline:
            remaining = max(0.0, deadline - time.monotonic())
            self._sleep(remaining)
            self._wait = wait - remaining
            raise TimeoutError("not connected again in time")
        self._sleep(wait)
        self._wait = 0.0
        try:
            client = self._open()
        except OSError as e:
            self._wait = self.backoff.next()
            self._tell(f"cannot connect to {self._where()}: {e.strerror or e}; trying again in {self._wait:.1f} s")
            return
        self._client = client
        channels = self._positions.channels
        self._renewing = set(channels)
        if not channels:
            self.backoff.reset()
        self._tell(f"connected to {self._where()}" + (f"; subscribing again to {', '.join(channels)}" if channels else ""))
        for channel in channels:
            if self._client is client:
                self._send(_SUBSCRIBE, channel, self._positions.request(channel))

    def _open(self) -> Client:
        client = Client(self._host, self._port, **self._options)
        client.onMessage = lambda message: self._pushed(client, message)
        return client

    def _send(self, kind: str, channel: str, message: dict[str, Any]) -> None:
        client = self._client
        assert client is not None
        try:
            client.send(message)
        except (ConnectionError, TimeoutError) as e:
            self._lost(client, str(e))
            return
        self._sent.append((kind, channel))

    def _lost(self, client: Client, why: str) -> None:
        """
        C{client}'s connection is lost: wait, then connect again.
        """
        if self._client is not client:
            return
        client.close()
        self._client = None
        self._sent.clear()
        self._wait = self.backoff.next()
        self._tell(f"lost the connection to {self._where()} ({why}); connecting again in {self._wait:.1f} s")

    # Receiving

    def _pushed(self, client: Client, message: Any) -> None:
        # A reply read before this push, in the same read, is taken first:
        # the events keep the order in which the server sent them.
        self._takeReplies(client)
        self._events.extend(self._positions.pushed(message))

    def _takeReplies(self, client: Client) -> None:
        while self._client is client and client.replyReady:
            reply = client.receive()
            kind, channel = self._sent.popleft()
            if kind == _SUBSCRIBE:
                self._subscribed(client, channel, reply)

    def _subscribed(self, client: Client, channel: str, reply: dict[str, Any]) -> None:
        if channel not in self._positions:
            return
        if reply.get("status") == "OK":
            position = self._positions.position(channel)
            try:
                self._events.extend(self._positions.subscribed(channel, reply))
            except ProtocolError as e:
                self._lost(client, str(e))
                return
            if reply.get("recovered") is True and position is not None:
                self._tell(f"resumed {channel} after offset {position[1]}: {reply.get('replayed', 0)} publications it missed follow")
            self._replies[channel] = reply
        elif reply.get("code") in RETRY_CODES:
            self._lost(client, f"the server could not subscribe to {channel} now: {reply.get('message')}")
            return
        else:
            self._positions.forget(channel)
            refusal = SubscribeError(channel, reply)
            if channel in self._awaited:
                self._refusals[channel] = refusal
            else:
                self._events.append(Refused(channel, reply))
                self._tell(str(refusal))
        self._renewed(channel)

    # Saying

    def _where(self) -> str:
        return self._options.get("unixPath") or f"{self._host}:{self._port}"

    def _tell(self, line: str) -> None:
        if self._notify is not None:
            self._notify(line)

    def _raiseIfStopped(self) -> None:
        if self._stopped is not None:
            raise self._stopped.with_traceback(None)
