"""
Handlers that await asyncio (a sleep, a Redis client) and Deferreds, for
the tests of C{twistd -r asyncio}.  The Redis server's port is in
C{JSONPROTO_TEST_REDIS_PORT}.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec
import redis.asyncio
from twisted.internet import reactor
from twisted.internet.task import deferLater

from jsonproto.dispatch.dispatcher import Dispatcher


class Store(msgspec.Struct):
    key: str
    value: str


def register(dispatcher: Dispatcher) -> None:
    port = int(os.environ.get("JSONPROTO_TEST_REDIS_PORT", "6379"))
    client = redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=10)

    @dispatcher.handler("NAP")
    async def nap(message: Any, context: Any) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"slept": 0.05}

    @dispatcher.handler("STORE")
    async def store(message: Store, context: Any) -> dict[str, Any]:
        async def setAndGet() -> bytes:
            await client.set(message.key, message.value)
            return await client.get(message.key)

        # asyncio.wait_for, not asyncio.timeout: Python 3.10 has no timeout.
        value = await asyncio.wait_for(setAndGet(), 10)
        return {"stored": value.decode()}

    @dispatcher.handler("LATER")
    async def later(message: Any, context: Any) -> dict[str, Any]:
        await deferLater(reactor, 0.01, lambda: None)
        return {"later": True}

    @dispatcher.handler("BOTH")
    async def both(message: Any, context: Any) -> dict[str, Any]:
        await deferLater(reactor, 0.01, lambda: None)
        await asyncio.sleep(0.01)
        value = await deferLater(reactor, 0, lambda: "deferred")
        return {"both": value}
