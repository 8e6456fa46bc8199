"""
What a service's own code sees of its connections: open and close hooks,
each connection's own state, and the registry of connections, reachable
from any handler.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.interfaces import IConnections, IHandlerContext, IPipeline
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.lifecycle import HOOK_TIMEOUT
from tests.e2e import startDaemon
from tests.support import LogCatcher, connect, line, readLines


class HookTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.dispatcher = defaultDispatcher()
        self.events: list[Any] = []
        self.factory = JSONServerFactory(self.dispatcher, limits=Limits(idleTimeout=0), clock=self.clock)

    def test_openAndClose(self) -> None:
        """
        The open hook sees the connection before its first message; the
        close hook sees it gone from the registry, with the reason.
        """
        self.dispatcher.onOpen(lambda c: self.events.append(("open", c.id, len(c.connections))))
        self.dispatcher.onClose(lambda c, why: self.events.append(("close", c.id, why, len(c.connections))))
        proto, transport = connect(self.factory)
        proto.dataReceived(line({"type": "SUM", "a": 1, "b": 1}))
        proto.readConnectionLost()
        transport.finishClose()
        self.assertEqual(
            self.events, [("open", proto.info.id, 1), ("close", proto.info.id, "the peer closed its sending side", 0)]
        )

    def test_asynchronousOpenHoldsMessages(self) -> None:
        """
        Messages wait while an asynchronous open hook runs, then are
        answered in order.
        """
        ready: Deferred[None] = Deferred()
        self.dispatcher.onOpen(lambda c: ready)
        proto, transport = connect(self.factory)
        proto.dataReceived(line({"type": "SUM", "a": 1, "b": 1}) * 3)
        self.assertEqual((transport.value(), transport.producerState), (b"", "paused"))
        ready.callback(None)
        self.assertEqual([r["result"] for r in readLines(transport.value())], [2, 2, 2])
        self.assertEqual(transport.producerState, "producing")

    def test_coroutineHooks(self) -> None:
        """
        Hooks may be coroutines; a failing one is logged and the connection
        goes on.
        """
        waiting: Deferred[None] = Deferred()

        async def opened(context: Any) -> None:
            await waiting
            context.state["name"] = "bob"

        def broken(context: Any) -> None:
            raise RuntimeError("hook bug")

        self.dispatcher.onOpen(broken)
        self.dispatcher.onOpen(opened)
        self.dispatcher.register("NAME", lambda m, c: {"name": c.state["name"]})
        proto, transport = connect(self.factory)
        proto.dataReceived(line({"type": "NAME"}))
        waiting.callback(None)
        self.assertEqual(readLines(transport.value()), [{"status": "OK", "name": "bob"}])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_hookTimeout(self) -> None:
        """
        A hook that never finishes is given up after its timeout, logged,
        and the connection's messages are answered.
        """
        logged = LogCatcher(self)
        self.dispatcher.onOpen(lambda c: Deferred())
        proto, transport = connect(self.factory)
        proto.dataReceived(line({"type": "SUM", "a": 1, "b": 2}))
        self.clock.advance(HOOK_TIMEOUT)
        self.assertEqual(readLines(transport.value()), [{"status": "OK", "result": 3}])
        self.assertEqual(len(logged.matching("did not finish within")), 1)

    def test_stopWaitsForCloseHooks(self) -> None:
        """
        The registry is not empty, for a stopping service, while a close
        hook still runs.
        """
        done: Deferred[None] = Deferred()
        self.dispatcher.onClose(lambda c, why: done)
        proto, transport = connect(self.factory)
        empty = self.factory.connections.whenEmpty()
        transport.finishClose()
        self.assertFalse(empty.called)
        done.callback(None)
        self.assertTrue(empty.called)

    def test_stateIsPerConnection(self) -> None:
        """
        context.state belongs to one connection, for its lifetime.
        """
        self.dispatcher.register("SET", lambda m, c: c.state.update(v=m["v"]) or {})
        self.dispatcher.register("GET", lambda m, c: {"v": c.state.get("v")})
        a, ta = connect(self.factory)
        b, tb = connect(self.factory, port=40001)
        a.dataReceived(line({"type": "SET", "v": 1}) + line({"type": "GET"}))
        b.dataReceived(line({"type": "GET"}))
        self.assertEqual(readLines(ta.value())[1]["v"], 1)
        self.assertEqual(readLines(tb.value())[0]["v"], None)

    def test_interfaces(self) -> None:
        """
        The context, the registry and the pipeline provide the interfaces
        handlers and the adapter are written against.
        """
        proto, transport = connect(self.factory)
        verifyObject(IHandlerContext, proto.info)
        verifyObject(IConnections, self.factory.connections)
        verifyObject(IPipeline, proto.pipeline)


class LobbyTests(TestCase):
    """
    Over real sockets, a lobby written with the hooks and the registry: a
    member's message reaches the others as a push, and one who leaves is
    gone from the list at once.
    """

    timeout = 60

    @inlineCallbacks
    def test_lobby(self) -> None:
        _, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--handlers", "tests.lobbyhandlers")

        def clients() -> tuple[list[Any], list[Any]]:
            alice = socket.create_connection(("127.0.0.1", port), timeout=10)
            bob = socket.create_connection(("127.0.0.1", port), timeout=10)
            aliceIn, bobIn = alice.makefile("rb"), bob.makefile("rb")
            alice.sendall(line({"type": "JOIN", "name": "alice"}))
            first = [json.loads(aliceIn.readline())]
            bob.sendall(line({"type": "JOIN", "name": "bob"}))
            bobSaw = [json.loads(bobIn.readline())]
            first.append(json.loads(aliceIn.readline()))  # bob joined
            bob.sendall(line({"type": "SAY", "text": "hi"}))
            bobSaw.append(json.loads(bobIn.readline()))
            first.append(json.loads(aliceIn.readline()))  # what bob said
            bobIn.close()
            bob.close()
            first.append(json.loads(aliceIn.readline()))  # bob left
            alice.sendall(line({"type": "WHO"}))
            first.append(json.loads(aliceIn.readline()))
            aliceIn.close()
            alice.close()
            return first, bobSaw

        seen, bobSaw = yield deferToThread(clients)
        self.assertEqual(
            seen,
            [
                {"status": "OK", "members": ["alice"]},
                {"type": "JOINED", "name": "bob"},
                {"type": "SAID", "name": "bob", "text": "hi"},
                {"type": "LEFT", "name": "bob"},
                {"status": "OK", "members": ["alice"]},
            ],
        )
        self.assertEqual(bobSaw, [{"status": "OK", "members": ["alice", "bob"]}, {"status": "OK"}])
