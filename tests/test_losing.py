"""
Nothing a client is owed is lost, and no client can starve the others: how
the server closes (never destroying replies the peer has not read), what a
bad length costs the requests before it, what a half-close behind a proxy
keeps, what integers come back as, what an unfinished message may hold,
and how long one connection may keep the others waiting.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.core.budget import BufferBudget
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.limits import Limits
from jsonproto.server.addresses import Networks
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.registry import ConnectionRegistry
from jsonproto.tools import certs
from tests.e2e import startDaemon
from tests.support import LogCatcher, connect, int32, line, readInt32, readLines

DEADLINE = 10


def _readAll(sock: socket.socket) -> tuple[bytes, str]:
    """
    Everything the server sends until it closes, and how it closed:
    C{"eof"} for a clean close, else the error's name.
    """
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError) as e:
            return received, type(e).__name__
        if not chunk:
            return received, "eof"
        received += chunk


class LingeringCloseTests(TestCase):
    """
    When the server ends a connection whose peer is still sending, the
    peer gets every reply written before the close: the server closes its
    own side, reads and discards what still comes, and closes once the peer
    has closed its side.  Closing at once would make the kernel answer the
    unread bytes with a reset, which throws away the replies the peer has
    received but not yet read.
    """

    timeout = 60

    def converse(self, port: int, requests: bytes, garbage: bytes) -> tuple[bytes, str]:
        """
        Send C{requests}, then C{garbage} (from a thread, as long as the
        server takes it), while reading the replies slowly, through a small
        receive buffer: when the server closes, replies it wrote are still
        on their way.  Then close our side, and read to the end.
        """
        import threading

        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(DEADLINE)
        s.connect(("127.0.0.1", port))

        def send() -> None:
            try:
                s.sendall(requests)
                s.sendall(garbage)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        try:
            received, ending = _readAll(s)
        finally:
            sender.join(DEADLINE)
            s.close()
        return received, ending

    @inlineCallbacks
    def test_tooManyErrorsWhileSending(self) -> None:
        """
        A client that is closed for too many errors while replies to its
        earlier requests are still on their way, and while it is still
        sending, reads every reply, the "Too many errors", then an orderly
        end: never a reset, which would throw away the replies not yet
        delivered.
        """
        _, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--max-errors", "100", "--error-decay", "0")
        requests = line({"type": "GREETING", "name": "n" * 100_000}) * 20 + b"nope\n" * 101
        received, ending = yield deferToThread(self.converse, port, requests, b"x" * (4 * 1024 * 1024))
        replies = readLines(received)
        self.assertEqual(ending, "eof")
        self.assertEqual([r.get("code", "ok") for r in replies], ["ok"] * 20 + ["invalid_json"] * 101 + ["too_many_errors"])

    @inlineCallbacks
    def test_tooLongWhileSending(self) -> None:
        """
        Over int32 a length past the limit ends the connection; a client
        that goes on sending still reads the replies to its earlier
        requests and "Message too long".
        """
        _, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--framing", "int32")
        requests = int32({"type": "GREETING", "name": "n" * 100_000}) * 20 + struct.pack("!I", 5_000_000)
        received, ending = yield deferToThread(self.converse, port, requests, b"z" * (4 * 1024 * 1024))
        replies = readInt32(received)
        self.assertEqual(ending, "eof")
        self.assertEqual([r.get("code", "ok") for r in replies], ["ok"] * 20 + ["message_too_long"])

    @inlineCallbacks
    def test_tlsCloseIsAnnounced(self) -> None:
        """
        Over TLS the server's close sends TLS's close alert at once (the
        protocol unregisters as its transport's producer first), so the
        client sees an orderly end right after its last reply rather than,
        five seconds later, a reset.
        """
        directory = tempfile.mkdtemp()
        pem = os.path.join(directory, "server.pem")
        key = os.path.join(directory, "server.key")
        certs.writeCertificate(pem, ["localhost", "127.0.0.1"], keyPath=key)
        _, [port] = yield startDaemon(
            self,
            "--port",
            f"jsonproto-tls:0:interface=127.0.0.1:privateKey={key}:certKey={pem}",
            "--max-errors",
            "1",
            "--error-decay",
            "0",
        )
        logged = LogCatcher(self)

        def client() -> tuple[bytes, str]:
            context = ssl.create_default_context(cafile=pem)
            with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
                with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as s:
                    s.sendall(b"nope\nnope\n")
                    return _readAll(s)

        received, ending = yield deferToThread(client)
        self.assertEqual([json.loads(l)["code"] for l in received.splitlines()], ["invalid_json", "invalid_json", "too_many_errors"])
        self.assertIn(ending, ("eof", "SSLZeroReturnError"))
        self.assertEqual(logged.matching("did not close its side"), [])


class HalfCloseBehindProxyTests(TestCase):
    """
    A client behind a PROXY protocol load balancer that shuts down its
    sending side after its requests gets every reply.
    """

    timeout = 60

    @inlineCallbacks
    def test_haproxyHalfClose(self) -> None:
        service, [port] = yield startDaemon(self, "--port", "haproxy:tcp:0:interface=127.0.0.1")

        def client() -> list[Any]:
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
                s.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 3001\r\n")
                s.sendall(line({"type": "SUM", "a": 1, "b": 2}) + line({"type": "GREETING", "name": "P"}))
                s.shutdown(socket.SHUT_WR)
                received, _ = _readAll(s)
            return readLines(received)

        replies = yield deferToThread(client)
        self.assertEqual(replies, [{"status": "OK", "result": 3}, {"status": "OK", "reply": "Hello, P!"}])
        self.assertEqual(service.connections.closedBy.get("peer_finished"), 1)


class _Framed:
    framing: str
    frame: Any
    read: Any


class BadLengthAfterPendingTests(SynchronousTestCase):
    """
    Over int32, a length past the limit ends the connection, but only after
    the replies owed to the requests before it, a slow one included.
    """

    def test_repliesBeforeTheBadLength(self) -> None:
        clock = Clock()
        dispatcher = defaultDispatcher()
        slow: Deferred[dict[str, Any]] = Deferred()
        dispatcher.register("SLOW", lambda m, c: slow)
        factory = JSONServerFactory(dispatcher, framing="int32", limits=Limits(), clock=clock)
        proto, transport = connect(factory)
        proto.dataReceived(int32({"type": "SLOW", "id": 1}) + int32({"type": "SUM", "a": 1, "b": 2, "id": 2}) + b"\xff\xff\xff\xff")
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        slow.callback({"slow": True})
        replies = readInt32(transport.value())
        self.assertEqual([r.get("id") for r in replies], [1, 2, None])
        self.assertEqual(replies[2]["code"], "message_too_long")
        self.assertTrue(transport.disconnecting)


class IntegersStayExactTests(SynchronousTestCase):
    """
    Integers past 64 bits, negative ones included, come back exact, in
    results and ids, whatever the message's size.
    """

    def converse(self, message: dict[str, Any]) -> dict[str, Any]:
        factory = JSONServerFactory(defaultDispatcher(), limits=Limits(), clock=Clock())
        proto, transport = connect(factory)
        proto.dataReceived(json.dumps(message).encode() + b"\n")
        [reply] = readLines(transport.value())
        return reply

    def test_negativeBeyond64Bits(self) -> None:
        for value in (-9223372036854775809, -9999999999999999999, -10**25, 18446744073709551616):
            for padding in ("", "p" * 5000):
                reply = self.converse({"type": "SUM", "a": value, "b": 0, "id": value, "pad": padding})
                self.assertEqual((reply["result"], reply["id"]), (value, value))
                self.assertIs(type(reply["result"]), int)


class BufferBudgetTests(SynchronousTestCase):
    """
    The bytes all connections hold in unfinished messages are bounded, and
    so are those of one address; a message that would overdraw the budget
    is refused with "Server busy", and its connection goes on (over the
    line framing) or closes (over int32).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = ConnectionRegistry(buffers=BufferBudget(total=10_000, perHost=6_000))

    def factory(self, framing: str = "line") -> JSONServerFactory:
        return JSONServerFactory(
            defaultDispatcher(), framing=framing, limits=Limits(), connections=self.registry, clock=self.clock
        )

    def test_totalBudget(self) -> None:
        factory = self.factory()
        a, ta = connect(factory, host="10.0.0.1")
        b, tb = connect(factory, host="10.0.0.2")
        c, tc = connect(factory, host="10.0.0.3")
        a.dataReceived(b'{"type":"GREETING","name":"' + b"a" * 5000)
        b.dataReceived(b'{"type":"GREETING","name":"' + b"b" * 4000)
        self.assertEqual(self.registry.buffers.held, a.pipeline.bufferedBytes + b.pipeline.bufferedBytes)
        c.dataReceived(b'{"type":"GREETING","name":"' + b"c" * 3000)
        [refused] = readLines(tc.value())
        self.assertEqual((refused["code"], refused["message"]), ("server_busy", "Server busy"))
        self.assertFalse(tc.disconnecting)
        # The rest of the refused line is discarded; the next line is answered.
        c.dataReceived(b'cccc"}\n' + line({"type": "SUM", "a": 1, "b": 1}))
        self.assertEqual(readLines(tc.value())[1:], [{"status": "OK", "result": 2}])
        # Those that were held finish normally, and give the budget back.
        a.dataReceived(b'"}\n')
        self.assertEqual(readLines(ta.value())[0]["status"], "OK")
        self.assertLessEqual(self.registry.buffers.held, 4100)
        tb.finishClose()
        self.assertEqual(self.registry.buffers.held, 0)

    def test_perAddress(self) -> None:
        factory = self.factory()
        a, ta = connect(factory, host="10.0.0.1")
        b, tb = connect(factory, host="10.0.0.1", port=40001)
        other, to = connect(factory, host="10.0.0.9")
        a.dataReceived(b"[" + b"1," * 2000)
        b.dataReceived(b"[" + b"1," * 1500)
        self.assertEqual(readLines(tb.value())[0]["code"], "server_busy")
        other.dataReceived(b"[" + b"1," * 2000)
        self.assertEqual(to.value(), b"")

    def test_exemptAddressSpared(self) -> None:
        """
        An address the per-address limits spare (C{--per-ip-exempt}) is held
        to the total budget only; its bytes still count in the total.
        """
        self.registry.exempt = Networks(["127.0.0.0/8"])
        factory = self.factory()
        a, ta = connect(factory, host="127.0.0.1")
        b, tb = connect(factory, host="127.0.0.1", port=40001)
        a.dataReceived(b"[" + b"1," * 2000)
        b.dataReceived(b"[" + b"1," * 1500)
        self.assertEqual((ta.value(), tb.value()), (b"", b""))
        self.assertEqual(self.registry.buffers.held, a.pipeline.bufferedBytes + b.pipeline.bufferedBytes)
        c, tc = connect(factory, host="127.0.0.2")
        c.dataReceived(b"[" + b"1," * 1500)
        self.assertEqual(readLines(tc.value())[0]["code"], "server_busy")

    def test_int32Closes(self) -> None:
        factory = self.factory("int32")
        a, ta = connect(factory, host="10.0.0.1")
        a.dataReceived(int32({"type": "SUM", "a": 1, "b": 2}) + struct.pack("!I", 8000) + b"x" * 7000)
        replies = readInt32(ta.value())
        self.assertEqual([r.get("result", r.get("code")) for r in replies], [3, "server_busy"])
        self.assertTrue(ta.disconnecting)
        self.assertEqual(self.registry.buffers.held, 0)


class FairnessTests(SynchronousTestCase):
    """
    One connection's messages may keep the server for at most the turn
    budget; the rest wait for the next turn, after the other connections
    have had theirs.
    """

    def test_turns(self) -> None:
        clock = Clock()
        dispatcher = defaultDispatcher()
        handled: list[str] = []

        @dispatcher.handler("WORK")
        def work(message: Any, context: Any) -> dict[str, Any]:
            # Each message takes 10 us of the (simulated) clock.
            clock.advance(0.00001)
            handled.append(message["who"])
            return {}

        factory = JSONServerFactory(dispatcher, limits=Limits(turnBudget=0.0005, idleTimeout=0), clock=clock)
        flooder, tf = connect(factory)
        probe, tp = connect(factory, port=40001)
        flooder.dataReceived(line({"type": "WORK", "who": "flood"}) * 1000)
        firstTurn = len(handled)
        self.assertLess(firstTurn, 100)
        self.assertEqual(tf.producerState, "paused")
        probe.dataReceived(line({"type": "WORK", "who": "probe"}))
        self.assertEqual(handled[-1], "probe")
        self.assertEqual(len(readLines(tp.value())), 1)
        for _ in range(1000):
            if len(handled) == 1001:
                break
            clock.advance(0)
        self.assertEqual(handled.count("flood"), 1000)
        self.assertEqual(len(readLines(tf.value())), 1000)
        self.assertEqual(tf.producerState, "producing")
        self.assertEqual(clock.getDelayedCalls(), [])
