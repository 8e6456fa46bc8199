"""
Connection management shared by every listener: tracking, the connection
limit, idle timeouts, closing with a reason, and the echo service.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.server.connection import CLOSE_GRACE_PERIOD
from jsonproto.server.registry import ConnectionRegistry, formatAddress
from jsonproto.server.echo import EchoFactory
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.drain import DRAIN_TURN
from tests.support import LogCatcher, connect, int32, line, noPendingCalls, readInt32, readLines


class RegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.connections = ConnectionRegistry(maxConnections=0)
        self.factory = JSONServerFactory(connections=self.connections, clock=self.clock)

    def test_tracksActive(self) -> None:
        """
        Every open connection is listed with its id, peer and start time,
        and leaves the list when it closes.
        """
        first, t1 = connect(self.factory, port=1111)
        self.clock.advance(5)
        second, t2 = connect(self.factory, port=2222)
        self.assertEqual(
            [(c.id, c.peer, c.connectedAt) for c in self.connections],
            [(first.info.id, "127.0.0.1:1111", 1000.0), (second.info.id, "127.0.0.1:2222", 1005.0)],
        )
        self.assertEqual(second.info.id, first.info.id + 1)
        t1.finishClose()
        self.assertEqual([c.peer for c in self.connections], ["127.0.0.1:2222"])
        self.assertIs(self.connections.get(second.info.id), second.info)
        self.assertIsNone(self.connections.get(first.info.id))
        self.assertEqual((len(self.connections), self.connections.accepted), (1, 2))

    def test_sharedBetweenFactories(self) -> None:
        """
        Factories given one registry list their connections together, and
        the registry's limit counts them together.
        """
        self.connections.maxConnections = 2
        echo = EchoFactory(connections=self.connections, clock=self.clock)
        connect(self.factory)
        connect(echo)
        _, refused = connect(echo)
        self.assertEqual(len(self.connections), 2)
        self.assertTrue(refused.disconnecting)

    def test_logsOpenAndClose(self) -> None:
        """
        Connect and disconnect are logged with the id and the peer; the
        close with its duration, reason and traffic.
        """
        logged = LogCatcher(self)
        proto, transport = connect(self.factory, port=4242)
        proto.dataReceived(line({"type": "SUM", "a": 1, "b": 2}))
        self.clock.advance(2.5)
        transport.finishClose()
        opened = logged.matching("opened")[0]
        closed = logged.matching("closed after")[0]
        self.assertEqual((opened["connectionId"], opened["peer"]), (proto.info.id, "127.0.0.1:4242"))
        self.assertEqual(
            (closed["connectionId"], closed["peer"], closed["duration"], closed["messagesIn"], closed["messagesOut"]),
            (proto.info.id, "127.0.0.1:4242", 2.5, 1, 1),
        )

    def test_formatAddress(self) -> None:
        """
        Peers are written the way operators write them.
        """
        self.assertEqual(formatAddress(IPv6Address("TCP", "::1", 80)), "[::1]:80")
        self.assertEqual(formatAddress(UNIXAddress(b"/run/j.sock")), "unix:/run/j.sock")
        self.assertEqual(formatAddress(UNIXAddress(None)), "unix:")


class ConnectionLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.connections = ConnectionRegistry(maxConnections=2)

    def test_busy(self) -> None:
        """
        Past the limit a new connection gets "Server busy" and is closed;
        the connections already open are unaffected; once one closes, a new
        one is admitted.
        """
        factory = JSONServerFactory(connections=self.connections, clock=self.clock)
        first, t1 = connect(factory)
        second, t2 = connect(factory)
        third, t3 = connect(factory)
        self.assertEqual(
            readLines(t3.value()), [{"status": "ERROR", "message": "Server busy", "code": "server_busy"}]
        )
        self.assertTrue(t3.disconnecting)
        self.assertEqual(self.connections.refused, 1)
        second.dataReceived(line({"type": "SUM", "a": 1, "b": 1}))
        self.assertEqual(readLines(t2.value()), [{"status": "OK", "result": 2}])
        t3.finishClose()
        t1.finishClose()
        fourth, t4 = connect(factory)
        self.assertFalse(t4.disconnecting)
        self.assertEqual(len(self.connections), 2)

    def test_busyInt32(self) -> None:
        """
        The refusal is framed like the listener's messages.
        """
        factory = JSONServerFactory(connections=self.connections, framing="int32", clock=self.clock)
        connect(factory)
        connect(factory)
        _, refused = connect(factory)
        self.assertEqual(readInt32(refused.value())[0]["code"], "server_busy")

    def test_refusedConnectionAborted(self) -> None:
        """
        A refused client that does not read its refusal is aborted, and
        leaves no timer behind.
        """
        factory = JSONServerFactory(connections=self.connections, clock=self.clock)
        connect(factory)
        connect(factory)
        _, refused = connect(factory)
        self.clock.advance(CLOSE_GRACE_PERIOD)
        self.assertTrue(refused.aborted)

    def test_unlimited(self) -> None:
        """
        0 means no limit.
        """
        factory = JSONServerFactory(connections=ConnectionRegistry(0), clock=self.clock)
        transports = [connect(factory)[1] for _ in range(50)]
        self.assertFalse(any(t.disconnecting for t in transports))


class IdleTimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.dispatcher = defaultDispatcher()
        self.factory = JSONServerFactory(self.dispatcher, limits=Limits(idleTimeout=60), clock=self.clock)

    def test_closesIdle(self) -> None:
        """
        A connection that sends nothing for the idle timeout is closed,
        and leaves no timer behind.
        """
        logged = LogCatcher(self)
        proto, transport = connect(self.factory)
        self.clock.advance(59.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(logged.matching("closing connection")[0]["reason"], "idle for 60 seconds")
        transport.finishClose()
        self.assertFalse(transport.aborted)
        noPendingCalls(self, self.clock)

    def test_messagesPostpone(self) -> None:
        """
        Each complete message restarts the count.
        """
        proto, transport = connect(self.factory)
        for _ in range(10):
            self.clock.advance(50)
            proto.dataReceived(line({"type": "SUM", "a": 1, "b": 1}))
        self.assertFalse(transport.disconnecting)
        self.clock.advance(60)
        self.assertTrue(transport.disconnecting)

    def test_partialMessageIsNotActivity(self) -> None:
        """
        Bytes that never complete a message do not keep a connection open.
        """
        proto, transport = connect(self.factory)
        for _ in range(6):
            self.clock.advance(10)
            proto.dataReceived(b"x")
        self.assertTrue(transport.disconnecting)

    def test_pendingWorkKeepsOpen(self) -> None:
        """
        A connection waiting on a slow reply is not idle; it may close once
        the reply is written and the timeout passes again.
        """
        slow: Deferred[dict[str, Any]] = Deferred()
        self.dispatcher.register("SLOW", lambda m, c: slow)
        factory = JSONServerFactory(self.dispatcher, limits=Limits(idleTimeout=60, requestTimeout=0), clock=self.clock)
        proto, transport = connect(factory)
        proto.dataReceived(line({"type": "SLOW"}))
        self.clock.advance(300)
        self.assertFalse(transport.disconnecting)
        slow.callback({})
        self.clock.advance(60)
        self.assertTrue(transport.disconnecting)

    def test_abortsNonReader(self) -> None:
        """
        If the peer does not let the close complete (it is not reading),
        the connection is aborted after the grace period, and the log says
        why.
        """
        logged = LogCatcher(self)
        proto, transport = connect(self.factory)
        self.clock.advance(60)
        self.assertFalse(transport.aborted)
        self.clock.advance(CLOSE_GRACE_PERIOD)
        self.assertTrue(transport.aborted)
        self.assertEqual(
            len(logged.matching("aborting connection 1 from 127.0.0.1:40000: the peer did not close its side within 5 seconds")), 1
        )
        noPendingCalls(self, self.clock)

    def test_disabled(self) -> None:
        """
        An idle timeout of 0 never closes, and sets no timer.
        """
        factory = JSONServerFactory(limits=Limits(idleTimeout=0), clock=self.clock)
        proto, transport = connect(factory)
        noPendingCalls(self, self.clock)
        self.clock.advance(10**9)
        self.assertFalse(transport.disconnecting)

    def test_int32(self) -> None:
        """
        The length-prefixed framing has the same idle timeout.
        """
        factory = JSONServerFactory(framing="int32", limits=Limits(idleTimeout=60), clock=self.clock)
        proto, transport = connect(factory)
        self.clock.advance(30)
        proto.dataReceived(int32({"type": "SUM", "a": 1, "b": 1}))
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_closedConnectionCancelsTimer(self) -> None:
        """
        A client that leaves takes its timer with it.
        """
        proto, transport = connect(self.factory)
        transport.finishClose()
        noPendingCalls(self, self.clock)


class EchoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = EchoFactory(limits=Limits(idleTimeout=60), clock=self.clock)

    def test_echo(self) -> None:
        """
        Every byte comes back unchanged, as it arrives, with no framing.
        """
        proto, transport = connect(self.factory)
        for chunk in [b"Hello Server, are you there?", b"\x00\xff\n", "Zoë".encode()[:3]]:
            proto.dataReceived(chunk)
        self.assertEqual(transport.value(), b"Hello Server, are you there?\x00\xff\nZo\xc3")
        self.assertEqual((proto.info.bytesIn, proto.info.bytesOut), (34, 34))

    def test_idle(self) -> None:
        """
        Echo connections close when idle too; any bytes count as activity.
        """
        proto, transport = connect(self.factory)
        self.clock.advance(59)
        proto.dataReceived(b"x")
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_halfClose(self) -> None:
        """
        A client that stops sending is closed once its echo is written.
        """
        proto, transport = connect(self.factory)
        proto.dataReceived(b"bye")
        proto.readConnectionLost()
        self.assertEqual((transport.value(), transport.disconnecting), (b"bye", True))


class CloseAllTests(SynchronousTestCase):
    def test_drain(self) -> None:
        """
        Closing every connection (as the service stops) lets each finish
        the replies it owes first, and reports when the last has gone.
        """
        clock = Clock()
        dispatcher = defaultDispatcher()
        slow: Deferred[dict[str, Any]] = Deferred()
        dispatcher.register("SLOW", lambda m, c: slow)
        connections = ConnectionRegistry()
        factory = JSONServerFactory(dispatcher, connections=connections, clock=clock)
        idle, idleTransport = connect(factory)
        busy, busyTransport = connect(factory)
        busy.dataReceived(line({"type": "SLOW", "id": 1}))
        drained = connections.closeAll("the server is shutting down")
        # A turn to read what is already waiting in the socket.
        clock.advance(DRAIN_TURN)
        self.assertTrue(idleTransport.disconnecting)
        self.assertFalse(busyTransport.disconnecting)
        idleTransport.finishClose()
        self.assertNoResult(drained)
        slow.callback({"done": True})
        self.assertEqual(readLines(busyTransport.value()), [{"status": "OK", "done": True, "id": 1}])
        self.assertTrue(busyTransport.disconnecting)
        busyTransport.finishClose()
        self.successResultOf(drained)
        noPendingCalls(self, clock)

    def test_closeAllTwice(self) -> None:
        """
        Closing every connection again while they drain (an application's
        own stop, run twice) changes nothing: each closes when the first
        drain says, and leaves no timer behind, which would fire on a
        closed connection and fail the application's tests as a dirty
        reactor.
        """
        clock = Clock()
        connections = ConnectionRegistry()
        factory = JSONServerFactory(defaultDispatcher(), connections=connections, clock=clock)
        proto, transport = connect(factory)
        drained = connections.closeAll("the server is shutting down")
        clock.advance(DRAIN_TURN / 2)
        again = connections.closeAll("the server is shutting down")
        clock.advance(DRAIN_TURN / 2)
        self.assertTrue(transport.disconnecting)
        transport.finishClose()
        self.successResultOf(drained)
        self.successResultOf(again)
        self.assertEqual(connections.closedBy, {"shutdown": 1})
        noPendingCalls(self, clock)

    def test_drainEmpty(self) -> None:
        """
        With no connections the drain is over at once.
        """
        self.successResultOf(ConnectionRegistry().closeAll("bye"))
