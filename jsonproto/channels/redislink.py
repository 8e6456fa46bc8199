"""
A process's two connections to Redis, kept up: one for commands (the
engine's scripts) and one subscribed to the channels listened to here.

Both go through txredisapi (a Twisted Redis client, with hiredis parsing
replies): each connection is a txredisapi factory of one connection, which
connects through any Twisted client endpoint and connects again, after
each loss, with exponential backoff and jitter (Twisted's C{ClientService}
underneath).  This module adds what the engine needs on top: to be told
when each connection comes and goes, commands that fail at once while the
command connection is down (rather than wait for it), and a subscription
per channel whose confirmation says when Redis has taken it.

txredisapi imports C{twisted.internet.reactor} when it is imported, which
installs the default reactor if none is installed yet; it is therefore
imported only once a link is made (twistd has chosen the reactor by
then), never when this module is.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger

from jsonproto.channels.engine import ChannelsUnavailable

log = Logger()

DEFAULT_RECONNECT_DELAY = 0.25
DEFAULT_MAX_RECONNECT_DELAY = 5.0
DEFAULT_REPLY_TIMEOUT = 5.0
"""
Seconds a command may wait for its reply; past it the connection is taken
for dead, closed and made again (a Redis that stopped answering).
"""


class LinkListener(Protocol):
    """
    Who a link tells what happens: the engine.
    """

    def commandsChanged(self, up: bool) -> None: ...

    def subscriberChanged(self, up: bool) -> None: ...

    def messageReceived(self, name: bytes, payload: bytes) -> None: ...


class Link(Protocol):
    """
    What the engine needs of its connections to Redis (L{RedisLink}; a
    fake in tests).
    """

    @property
    def commandsUp(self) -> bool: ...

    @property
    def subscriberUp(self) -> bool: ...

    description: str

    def start(self, listener: Any) -> None: ...

    def stop(self) -> Deferred[Any]: ...

    def eval(self, script: bytes, keys: list[bytes], args: list[Any]) -> Deferred[Any]: ...

    def subscribe(self, name: bytes) -> Deferred[Any]: ...

    def unsubscribe(self, name: bytes) -> Deferred[Any]: ...


class RedisLink:
    """
    The command connection and the subscriber connection to one Redis.

    @ivar commandsUp: Whether commands can be sent now.
    @ivar subscriberUp: Whether the subscriber connection is up (its
        subscriptions are made again by the engine each time it comes up).
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        description: str = "redis",
        reconnectDelay: float = DEFAULT_RECONNECT_DELAY,
        maxReconnectDelay: float = DEFAULT_MAX_RECONNECT_DELAY,
        replyTimeout: float = DEFAULT_REPLY_TIMEOUT,
    ) -> None:
        self._endpoint = endpoint
        self.description = description
        self._reconnectDelay = reconnectDelay
        self._maxReconnectDelay = maxReconnectDelay
        self._replyTimeout = replyTimeout
        self._listener: LinkListener | None = None
        self._commands: Any = None
        self._subscriber: Any = None
        self._factories: list[Any] = []

    @property
    def commandsUp(self) -> bool:
        return self._commands is not None

    @property
    def subscriberUp(self) -> bool:
        return self._subscriber is not None

    def start(self, listener: LinkListener) -> None:
        """
        Connect both, and keep them connected until L{stop}.
        """
        import txredisapi

        self._listener = listener
        link = self

        class Subscriber(txredisapi.SubscriberProtocol):
            def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
                if link._subscriber is self and link._listener is not None:
                    link._listener.messageReceived(channel, message)

        # charset=None: replies stay bytes (payloads are handed on as they
        # came); convertNumbers=False: no bulk reply is taken for a number.
        commands = txredisapi.RedisFactory(
            self.description, None, 1, isLazy=True, charset=None, replyTimeout=self._replyTimeout, convertNumbers=False
        )
        subscriber = txredisapi.RedisFactory(self.description, None, 1, isLazy=True, charset=None, convertNumbers=False)
        subscriber.protocol = Subscriber
        for factory, up, down in ((commands, self._commandsMade, self._commandsLost), (subscriber, self._subscriberMade, self._subscriberLost)):
            factory.initialDelay = self._reconnectDelay
            factory.maxDelay = self._maxReconnectDelay
            _watch(factory, up, down)
            self._factories.append(factory)
            factory.startConnecting(self._endpoint)

    def stop(self) -> Deferred[Any]:
        """
        Close both connections, and connect no more.
        """
        from twisted.internet.defer import gatherResults

        factories, self._factories = self._factories, []
        self._listener = None
        self._commands = self._subscriber = None
        return gatherResults([f.disconnect() for f in factories], consumeErrors=True)

    def _commandsMade(self, protocol: Any) -> None:
        self._commands = protocol
        if self._listener is not None:
            self._listener.commandsChanged(True)

    def _commandsLost(self, protocol: Any) -> None:
        if self._commands is protocol:
            self._commands = None
            if self._listener is not None:
                self._listener.commandsChanged(False)

    def _subscriberMade(self, protocol: Any) -> None:
        self._subscriber = protocol
        if self._listener is not None:
            self._listener.subscriberChanged(True)

    def _subscriberLost(self, protocol: Any) -> None:
        if self._subscriber is protocol:
            self._subscriber = None
            if self._listener is not None:
                self._listener.subscriberChanged(False)

    # What the engine asks

    def eval(self, script: bytes, keys: list[bytes], args: list[Any]) -> Deferred[Any]:
        """
        Run a Lua script (by its SHA1 once Redis has it, with the script
        itself again if Redis has lost it): fails with
        L{ChannelsUnavailable} at once if the command connection is down,
        or if it is lost or Redis answers with an error.
        """
        commands = self._commands
        if commands is None:
            return fail(ChannelsUnavailable(f"Redis at {self.description} is unreachable"))
        try:
            result: Deferred[Any] = commands.eval(script, keys, args)
        except Exception as e:  # the connection closed as the command was sent
            return fail(ChannelsUnavailable(f"Redis at {self.description}: {e}"))
        return result.addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        raise ChannelsUnavailable(f"Redis at {self.description}: {failure.getErrorMessage()}")

    def subscribe(self, name: bytes) -> Deferred[Any]:
        """
        Subscribe to one Redis channel: fires once Redis has taken the
        subscription (every message published after that comes to
        L{LinkListener.messageReceived}); fails if the subscriber
        connection is down or lost meanwhile.

        One channel a command: txredisapi pairs each confirmation with the
        next command waiting, which is only right one for one.
        """
        subscriber = self._subscriber
        if subscriber is None:
            return fail(ChannelsUnavailable("the subscriber connection to Redis is down"))
        try:
            result: Deferred[Any] = subscriber.subscribe([name])
        except Exception as e:
            return fail(ChannelsUnavailable(f"Redis at {self.description}: {e}"))
        return result.addErrback(self._failed)

    def unsubscribe(self, name: bytes) -> Deferred[Any]:
        """
        Subscribe no more to one Redis channel (nothing to do while the
        subscriber connection is down: the next one will not subscribe).
        """
        subscriber = self._subscriber
        if subscriber is None:
            return succeed(None)
        try:
            result: Deferred[Any] = subscriber.unsubscribe([name])
        except Exception:
            return succeed(None)
        return result.addErrback(lambda failure: None)


def _watch(factory: Any, made: Any, lost: Any) -> None:
    """
    Have C{made(protocol)} called when each connection of C{factory} is
    ready for commands, and C{lost(protocol)} when it is lost.
    """
    build = factory.buildProtocol

    def buildProtocol(addr: Any) -> Any:
        protocol = build(addr)
        protocol.whenConnected().addCallback(made)
        protocol.whenDisconnected().addCallback(lost)
        return protocol

    factory.buildProtocol = buildProtocol
