"""
The fast path answers exactly as the general path does.

L{jsonproto.core.fastpath.answerFrames} (and its C translation in
C{jsonproto.core._speedups}) takes over the common messages of a read.  These
tests hold it to one rule: whatever a client sends, in whatever reads, the
client gets the same bytes back, the connection ends up in the same state,
and every counter an operator reads says the same, whichever path answered.
Each conversation is run three times, on the general path alone, with the
Python fast path and with the C one, and the three are compared.
"""

from __future__ import annotations

import collections
from itertools import pairwise
import json
import os
import shutil
import subprocess
import sys
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from jsonproto.core import fastpath
from jsonproto.wire.framing import cutLines, pureCutLines
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.errors import INVALID_FIELD, RequestError
from jsonproto.wire.framing import TOO_LONG, encodeInt32, encodeLine
from jsonproto.limits import Limits
from jsonproto.server.protocol import JSONMessageProtocol, JSONServerFactory
from tests.e2e import Collector
from tests.support import connect

try:
    from jsonproto.core import _speedups
except ImportError:  # pragma: no cover - checked by test_extensionBuilt
    _speedups = None  # type: ignore[assignment]

IMPLEMENTATIONS: dict[str, Callable[..., Any] | None] = {
    "general": None,
    "python": fastpath.pureBind,
}
if _speedups is not None:
    IMPLEMENTATIONS["C"] = _speedups.bind

MAX_MESSAGE_SIZE = 300


def _handlers(dispatcher: Any, later: list[Deferred[Any]]) -> None:
    """
    Register a handler for every way a handler can answer.
    """

    def deferLater(message: Any, context: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        later.append(d)
        return d

    async def coroutine(message: Any, context: Any) -> dict[str, Any]:
        return {"coroutine": True}

    def boom(message: Any, context: Any) -> dict[str, Any]:
        raise ValueError("a bug")

    def refuse(message: Any, context: Any) -> dict[str, Any]:
        raise RequestError(INVALID_FIELD, "refused")

    def push(message: Any, context: Any) -> dict[str, Any]:
        context.send({"pushed": message.get("n")})
        return {}

    def close(message: Any, context: Any) -> dict[str, Any]:
        context.close("the client asked")
        return {"bye": True}

    def counters(message: Any, context: Any) -> dict[str, Any]:
        # What a handler sees of its connection is up to date.
        return {"in": context.messagesIn, "out": context.messagesOut}

    table: dict[str, Callable[..., Any]] = {
        "LATER": deferLater,
        "COROUTINE": coroutine,
        "BOOM": boom,
        "REFUSE": refuse,
        "NAN": lambda m, c: {"x": float("nan")},
        "NULL": lambda m, c: {"x": None},
        "SET": lambda m, c: {"x": {1}},
        "OWN_ERROR": lambda m, c: {"status": "ERROR", "message": "handler says no", "code": "custom"},
        "OWN_STATUS": lambda m, c: {"status": "MAYBE"},
        "SUBCLASS": lambda m, c: collections.OrderedDict(sub=True),
        "NOT_A_DICT": lambda m, c: [1, 2],
        "BIG": lambda m, c: {"blob": "x" * 40000},
        "BIG_INT": lambda m, c: {"x": 2**70},
        "ECHO": lambda m, c: {"echo": m},
        "PUSH": push,
        "CLOSE": close,
        "COUNTERS": counters,
        "OWN_ID": lambda m, c: {"id": "mine", "x": 1},
        "EMPTY": lambda m, c: {},
        "MIRROR": lambda m, c: {k: v for k, v in m.items() if k != "id"},
    }
    for name, handler in table.items():
        dispatcher.register(name, handler)


SAMPLE_MESSAGES: list[bytes] = [
    b'{"type":"SUM","a":10,"b":20}',
    b'{"type":"SUM","a":1.5,"b":2}',
    b'{"type":"SUM","a":true,"b":2}',
    b'{"type":"SUM","a":1e308,"b":1e308}',
    b'{"type":"GREETING","name":"Alice"}',
    b'{"type":"GREETING","name":"\\u00e9\\u4e2d"}',
    b'{"type":"GREETING"}',
    b'{"type":"SUM","a":1,"b":2,"id":7}',
    b'{"type":"SUM","a":1,"b":2,"id":"abc"}',
    b'{"type":"SUM","a":1,"b":2,"id":1.5}',
    b'{"type":"SUM","a":1,"b":2,"id":null}',
    b'{"type":"SUM","a":1,"b":2,"id":true}',
    b'{"type":"SUM","a":1,"b":2,"id":[1]}',
    b'{"type":"SUM","a":123456789012345678901234567890,"b":1}',
    b'{"type":"ECHO","n":12345678901234567890123}',
    b'{"type":"ECHO","s":"12345678901234567890123"}',
    b'{"type":"NOPE"}',
    b'{"type":42}',
    b'{"name":"no type"}',
    b"[1,2,3]",
    b'"just a string"',
    b"not json",
    b'{"type":"SUM","a":NaN,"b":1}',
    b'{"type":"ECHO","s":"\\ud800"}',
    b'{"type":"ECHO","deep":' + b"[" * 1100 + b"]" * 1100 + b"}",
    b"\xff\xfe",
    b'{"type":"ECHO","pad":"' + b"p" * MAX_MESSAGE_SIZE + b'"}',
    # Exactly as long as allowed (a \r after it does not count).
    b'{"type":"ECHO","pad":"' + b"p" * (MAX_MESSAGE_SIZE - 24) + b'"}',
    b'{"type":"LATER","id":1}',
    b'{"type":"COROUTINE"}',
    b'{"type":"BOOM","id":2}',
    b'{"type":"REFUSE","id":3}',
    b'{"type":"NAN","id":4}',
    b'{"type":"NULL"}',
    b'{"type":"SET","id":5}',
    b'{"type":"OWN_ERROR"}',
    b'{"type":"OWN_STATUS"}',
    b'{"type":"SUBCLASS","id":6}',
    b'{"type":"NOT_A_DICT"}',
    b'{"type":"BIG"}',
    b'{"type":"BIG_INT"}',
    b'{"type":"PUSH","n":1}',
    b'{"type":"COUNTERS"}',
    b'{"type":"OWN_ID"}',
    b'{"type":"OWN_ID","id":"theirs"}',
    b'{"type":"EMPTY"}',
    b'{"type":"EMPTY","id":"\\u00e9\\n\\"x"}',
    b'{"type":"GREETING","name":"Bob","id":-0.25}',
    b'{"type":"OWN_STATUS","id":3}',
    # Flat messages and replies (jsonproto/core/_flatjson.c), and near misses.
    b' { "type" : "MIRROR" ,\t"s" : "a b/" , "n" : -12 , "t" : true , "f" : false , "z" : null }\r ',
    b'{"type":"MIRROR","s":"quote\\"in","u":"\\u00e9","raw":"\xc3\xa9","del":"\x7f"}',
    b'{"type":"MIRROR","big":123456789012345678,"bigger":-1234567890123456789,"u64":18446744073709551615}',
    b'{"type":"MIRROR","n":1,"n":2}',
    b'{"type":"MIRROR","x":-0,"y":0,"z":-1,"e":1e2,"E":1E2,"f":0.5}',
    b'{"type":"MIRROR","tab":"a\tb"}',
    b'{"type":"MIRROR","lead":01}',
    b'{"type":"MIRROR","minus":-}',
    b'{"type":"MIRROR","tru":tru}',
    b'{"type":"MIRROR","trail":1,}',
    b'{"type":"MIRROR","status":"mine"}',
    b'{"type":"MIRROR"}{}',
    b'{"type":"SUM","a":1,"b":2,"id":-9223372036854775808}',
    b'{"type":"SUM","a":1,"b":2,"id":"\x01"}',
    b'{"type":"CLOSE"}',
]

FRAMERS: dict[str, Callable[[bytes], bytes]] = {
    "line": encodeLine,
    "int32": encodeInt32,
    # What other clients write: CRLF, and blank lines between messages.
    "crlf": lambda message: message + b"\r\n \t\r\n\n",
}
PROTOCOL_FRAMING = {"line": "line", "int32": "int32", "crlf": "line"}


def converse(implementation: str, framing: str, reads: list[bytes], limits: Limits) -> dict[str, Any]:
    """
    Send C{reads} to a new connection, firing the Deferreds handlers return
    after each read, and say everything the client and an operator could
    observe.
    """
    later: list[Deferred[Any]] = []
    dispatcher = defaultDispatcher()
    _handlers(dispatcher, later)
    clock = Clock()
    factory = JSONServerFactory(dispatcher, framing=PROTOCOL_FRAMING[framing], limits=limits, clock=clock)
    original = fastpath.bind
    fastpath.bind = IMPLEMENTATIONS[implementation]  # type: ignore[assignment]
    try:
        proto, transport = connect(factory)
    finally:
        fastpath.bind = original  # type: ignore[assignment]
    # Frames the general path handled: not compared, it is what differs.
    handled: list[bytes] = []
    frameReceived = proto.frameReceived
    proto.frameReceived = lambda frame: handled.append(frame) or frameReceived(frame)  # type: ignore[method-assign]
    for data in reads:
        proto.dataReceived(data)
        n = 0
        while later:
            later.pop(0).callback({"n": n})
            n += 1
    info = proto.info
    latency = dispatcher.latency
    return {
        "sent": transport.value(),
        "closing": transport.disconnecting,
        "paused": proto._paused,
        "counters": (info.messagesIn, info.messagesOut, info.bytesIn, info.bytesOut),
        "byType": dict(latency.counts),
        "errorsByType": dict(latency.errors),
        "calls": latency.calls,
        "observed": {k: sum(v) for k, v in latency.buckets.items()},
        "errorsByCode": dict(factory.connections.errorReplies),
        "closedBy": dict(factory.connections.closedBy),
        "errorsInRow": proto._errorsInRow,
        "generalPath": len(handled),
    }


NOT_COMPARED = {"generalPath"}


class _Comparing(SynchronousTestCase):
    """
    Tests that run a conversation on every path and compare.
    """

    def assertSameEverywhere(self, framing: str, reads: list[bytes], limits: Limits | None = None) -> dict[str, Any]:
        """
        Every implementation leaves the client and the operator with the
        same view of C{reads}; return that view.
        """
        limits = limits or Limits(maxMessageSize=MAX_MESSAGE_SIZE)
        results = {name: converse(name, framing, reads, limits) for name in IMPLEMENTATIONS}
        # Handlers that fail log their tracebacks, as they should.
        self.flushLoggedErrors()
        general = results.pop("general")
        for name, result in results.items():
            for key in general.keys() - NOT_COMPARED:
                self.assertEqual(result[key], general[key], f"{name} differs in {key}")
        return general



class FastPathTests(_Comparing):
    def test_everyKindOfMessageInOneRead(self) -> None:
        """
        Every sample message, one read each framing: good ones, bad ones,
        every way a handler can answer.
        """
        for framing, frame in FRAMERS.items():
            messages = [m for m in SAMPLE_MESSAGES if m != b'{"type":"CLOSE"}']
            view = self.assertSameEverywhere(framing, [b"".join(frame(m) for m in messages)])
            # Not a comparison of nothing: the line framings answered every
            # message, and sent the one push (int32 closes at the over-long
            # message).
            if framing != "int32":
                self.assertEqual(view["counters"][1], len(messages))
                self.assertEqual(view["sent"].count(b"\n"), len(messages) + 1)

    def test_fastPathsAnswer(self) -> None:
        """
        The comparisons compare something: each fast path answers the common
        messages itself, leaving the general path only the unusual one.
        """
        for framing, frame in FRAMERS.items():
            reads = [frame(b'{"type":"SUM","a":1,"b":2}') * 10 + frame(b'{"type":"NOPE"}')]
            for name in IMPLEMENTATIONS:
                view = converse(name, framing, reads, Limits(maxMessageSize=MAX_MESSAGE_SIZE))
                self.assertEqual(view["generalPath"], 11 if name == "general" else 1, (framing, name))

    def test_oneMessagePerRead(self) -> None:
        """
        The same messages each in a read of its own.
        """
        for framing, frame in FRAMERS.items():
            self.assertSameEverywhere(framing, [frame(m) for m in SAMPLE_MESSAGES])

    def test_closingHandlerStopsTheRead(self) -> None:
        """
        A handler that closes its connection gets its reply, and nothing
        behind it in the read is answered.
        """
        sum_ = b'{"type":"SUM","a":1,"b":2}'
        for framing, frame in FRAMERS.items():
            view = self.assertSameEverywhere(framing, [frame(sum_) + frame(b'{"type":"CLOSE"}') + frame(sum_) * 3])
            self.assertTrue(view["closing"])
            self.assertEqual(view["counters"][:2], (2, 2))

    def test_tooManyErrors(self) -> None:
        """
        Bad messages in a row close the connection at the same one.
        """
        bad = b'{"type":"OWN_ERROR"}'
        for framing, frame in FRAMERS.items():
            view = self.assertSameEverywhere(
                framing,
                [frame(b'{"type":"SUM","a":1,"b":2}') + frame(bad) * 10],
                Limits(maxMessageSize=MAX_MESSAGE_SIZE, maxErrors=4),
            )
            self.assertTrue(view["closing"])

    def test_fullBatchIsFlushed(self) -> None:
        """
        Replies past a batch's worth are written before the rest of the read
        is answered, so the transport can push back.
        """
        for framing, frame in FRAMERS.items():
            view = self.assertSameEverywhere(framing, [frame(b'{"type":"BIG"}') * 5 + frame(b'{"type":"SUM","a":1,"b":2}') * 100])
            self.assertEqual(view["counters"][1], 105)

    def test_manyPendingPauses(self) -> None:
        """
        Past C{maxPending} asynchronous requests, reading pauses at the same
        message whichever path answered the ones before.
        """
        for framing, frame in FRAMERS.items():
            view = self.assertSameEverywhere(
                framing,
                [frame(b'{"type":"SUM","a":1,"b":2}') * 3 + frame(b'{"type":"LATER"}') * 4 + frame(b'{"type":"SUM","a":1,"b":2}') * 3],
                Limits(maxMessageSize=MAX_MESSAGE_SIZE, maxPending=2),
            )
            self.assertEqual(view["counters"][1], 10)

    def test_sampledTiming(self) -> None:
        """
        One call in SAMPLE is timed, counted the same on every path.
        """
        frame = encodeLine(b'{"type":"SUM","a":1,"b":2}')
        # The 64th call is the first timed.
        for count in (63, 64, 200):
            view = self.assertSameEverywhere("line", [frame * count])
            self.assertEqual(view["calls"], count)
            self.assertEqual(view["observed"], {"SUM": count // 64} if count >= 64 else {})

    def test_dispatcherReplaced(self) -> None:
        """
        A dispatcher put in the factory's place answers the connections
        already open from then on, as it does on the general path.
        """
        for name, bind in IMPLEMENTATIONS.items():
            factory = JSONServerFactory(defaultDispatcher(), clock=Clock())
            original = fastpath.bind
            fastpath.bind = bind  # type: ignore[assignment]
            try:
                proto, transport = connect(factory)
            finally:
                fastpath.bind = original  # type: ignore[assignment]
            proto.dataReceived(b'{"type":"SUM","a":1,"b":2}\n')
            replacement = Dispatcher()
            replacement.register("SUM", lambda m, c: {"result": "replaced"})
            factory.dispatcher = replacement
            proto.dataReceived(b'{"type":"SUM","a":1,"b":2}\n{"type":"SUM","a":1,"b":2}\n')
            self.assertEqual(
                transport.value(),
                b'{"status":"OK","result":3}\n' + b'{"status":"OK","result":"replaced"}\n' * 2,
                name,
            )
            self.assertEqual(replacement.counts, {"SUM": 2}, name)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        framing=st.sampled_from(sorted(FRAMERS)),
        messages=st.lists(st.sampled_from(SAMPLE_MESSAGES), max_size=30),
        cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=6),
        maxErrors=st.integers(min_value=0, max_value=5),
    )
    def test_anyConversation(self, framing: str, messages: list[bytes], cuts: list[int], maxErrors: int) -> None:
        """
        Any sequence of sample messages, cut into reads anywhere.
        """
        stream = b"".join(FRAMERS[framing](m) for m in messages)
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        reads = [stream[a:b] for a, b in pairwise(points) if b > a]
        self.assertSameEverywhere(framing, reads, Limits(maxMessageSize=MAX_MESSAGE_SIZE, maxErrors=maxErrors))


class BigIntegerTests(_Comparing):
    @settings(max_examples=200, deadline=None)
    @given(
        padding=st.integers(min_value=0, max_value=45),
        digits=st.integers(min_value=17, max_value=23),
        where=st.sampled_from(["n", "s"]),
    )
    def test_anywhereInTheMessage(self, padding: int, digits: int, where: str) -> None:
        """
        An integer too long for 64 bits is kept exact wherever it falls in
        the message (the C scan looks at every 20th byte first).
        """
        number = "9" * digits
        value = number if where == "n" else f'"{number}"'
        message = f'{{"type":"ECHO","pad":"{" " * padding}","{where}":{value}}}'.encode()
        view = self.assertSameEverywhere("line", [encodeLine(message)])
        self.assertEqual(json.loads(view["sent"])["echo"][where], int(number) if where == "n" else number)


class CutLinesTests(SynchronousTestCase):
    """
    The C line cutter agrees with the Python one.
    """

    @settings(max_examples=400, deadline=None)
    @given(
        data=st.lists(st.sampled_from([b"\n", b"\r", b" ", b"\t", b"\x0b", b"a", b"{}", b"\r\n", b"\xff", b"\x00"]), max_size=60).map(b"".join),
        start=st.integers(min_value=0, max_value=60),
        maxLength=st.integers(min_value=0, max_value=8),
    )
    def test_sameLines(self, data: bytes, start: int, maxLength: int) -> None:
        if _speedups is None:
            raise SkipTest("jsonproto.core._speedups is not built")
        start = min(start, len(data))
        expected: list[Any] = []
        got: list[Any] = []
        self.assertEqual(
            _speedups.cutLines(got, data, start, maxLength, TOO_LONG),
            pureCutLines(expected, data, start, maxLength, TOO_LONG),
        )
        self.assertEqual(got, expected)

    def test_example(self) -> None:
        """
        What cutting means, on one read.
        """
        for cut in {cutLines, pureCutLines}:
            frames: list[Any] = []
            data = b'skip\n{"a":1}\r\n \t\n\n' + b"x" * 11 + b"\nrest"
            self.assertEqual(cut(frames, data, 5, 10, TOO_LONG), len(data) - 4)
            self.assertEqual(frames, [b'{"a":1}', TOO_LONG])


class ImplementationTests(SynchronousTestCase):
    def test_extensionBuilt(self) -> None:
        """
        Installed from source where a C compiler is at hand, the package has
        its C fast path, and uses it.
        """
        if os.environ.get("JSONPROTO_NO_SPEEDUPS"):
            self.assertEqual(fastpath.implementation, "python")
            return
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            self.assertIn(fastpath.implementation, ("C", "python"))
            return
        self.assertIsNot(_speedups, None)
        self.assertEqual(fastpath.implementation, "C")
        self.assertIs(cutLines, _speedups.cutLines)

    def test_switchedOff(self) -> None:
        """
        C{JSONPROTO_NO_SPEEDUPS} makes a process use the Python fast path,
        for comparing the two or ruling the extension out.
        """
        env = dict(os.environ, JSONPROTO_NO_SPEEDUPS="1")
        out = subprocess.run(
            [sys.executable, "-c", "import jsonproto.core.fastpath as f; print(f.implementation)"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        self.assertEqual(out.strip(), "python")

    def test_replyTypesUnchanged(self) -> None:
        """
        What the fast path writes is the codec's compact JSON.
        """
        view = converse("python", "line", [encodeLine(b'{"type":"SUM","a":10,"b":20,"id":"x"}')], Limits())
        self.assertEqual(json.loads(view["sent"]), {"status": "OK", "result": 30, "id": "x"})
        self.assertEqual(view["sent"], b'{"status":"OK","result":30,"id":"x"}\n')


def _withoutFastPath(base: type[JSONMessageProtocol]) -> type[JSONMessageProtocol]:
    """
    C{base} with its fast path taken away: every read goes through
    Twisted's doRead and the general path.
    """

    def connectionMade(self: Any) -> None:
        base.connectionMade(self)
        self._fastPath = None
        self.transport.__dict__.pop("doRead", None)

    return type(f"General{base.__name__}", (base,), {"connectionMade": connectionMade})


class OverTCPTests(TestCase):
    """
    Over a real socket, where the C fast path also reads from the socket
    itself (the FastPath is the transport's doRead), a client sees the same as on the general
    path.
    """

    @inlineCallbacks
    def connect(self, factory: JSONServerFactory) -> Any:
        """
        Listen on 127.0.0.1 with C{factory} and connect a L{Collector} that
        never finishes by itself; return it and the server's protocol.
        """
        built: list[Any] = []
        buildProtocol = factory.buildProtocol
        factory.buildProtocol = lambda addr: built.append(buildProtocol(addr)) or built[-1]  # type: ignore[method-assign]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        collector = Collector(lambda data: False)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), collector)
        return collector, built[0]

    @inlineCallbacks
    def converse(self, general: bool, chunks: list[bytes], framing: str = "line") -> Any:
        dispatcher = defaultDispatcher()
        _handlers(dispatcher, [])
        dispatcher._handlers["LATER"] = lambda m, c: deferLater(reactor, 0, lambda: {"later": True})
        factory = JSONServerFactory(dispatcher, framing=framing, limits=Limits(maxMessageSize=MAX_MESSAGE_SIZE))
        if general:
            factory.protocol = _withoutFastPath(factory.protocol)
        collector, server = yield self.connect(factory)
        reader = type(server.transport.__dict__.get("doRead")).__name__
        for chunk in chunks:
            collector.transport.write(chunk)
            # A turn of the reactor, so the server may read this chunk
            # before the next is written (the comparison holds however the
            # reads fall: this only varies them).
            yield deferLater(reactor, 0, lambda: None)
        received = yield collector.finished
        self.flushLoggedErrors()
        return received, factory.connections.totals(), dict(dispatcher.latency.counts), reader

    @inlineCallbacks
    def connectTimed(self) -> Any:
        """
        Connect to a listener whose timers run on a L{Clock} (at 1000), and
        return the clock, the server's protocol, and a C{send(data)} that
        returns once the server has read C{data}.
        """
        clock = Clock()
        clock.advance(1000)
        collector, server = yield self.connect(JSONServerFactory(defaultDispatcher(), clock=clock))
        self.addCleanup(collector.transport.loseConnection)
        info = server.info

        @inlineCallbacks
        def send(data: bytes) -> Any:
            # A bounded number of reactor turns.
            before = info.bytesIn
            collector.transport.write(data)
            for _ in range(10_000):
                if info.bytesIn == before + len(data):
                    return
                yield deferLater(reactor, 0, lambda: None)
            self.fail("the server did not read what was sent")

        return clock, server, send

    @inlineCallbacks
    def test_activity(self) -> None:
        """
        Over a real socket too, reading part of a message is not activity for
        the idle timer; completing one is.
        """
        clock, server, send = yield self.connectTimed()
        info = server.info
        sum_ = b'{"type":"SUM","a":1,"b":2}'
        yield send(sum_ + b"\n")
        clock.advance(5)
        yield send(sum_ + b"\n")
        self.assertEqual(info.lastActivity, 1005)
        clock.advance(5)
        yield send(sum_[:10])
        self.assertEqual((info.messagesIn, info.lastActivity), (2, 1005))
        clock.advance(5)
        yield send(sum_[10:] + b"\n")
        self.assertEqual((info.messagesIn, info.lastActivity), (3, 1015))
        if fastpath.implementation == "C":
            self.assertEqual(type(server.transport.__dict__.get("doRead")).__name__, "FastPath")

    @inlineCallbacks
    def test_partialMessageTimed(self) -> None:
        """
        Over a real socket too, part of a message starts the message timer:
        the rest not arriving in time closes the connection.
        """
        clock, server, send = yield self.connectTimed()
        timeout = server.limits.messageTimeout
        sum_ = b'{"type":"SUM","a":1,"b":2}'
        yield send(sum_ + b"\n")
        yield send(sum_ + b"\n" + sum_[:10])
        clock.advance(timeout - 1)
        self.assertFalse(server.transport.disconnecting)
        clock.advance(1)
        self.assertTrue(server.transport.disconnecting)
        self.assertEqual(server.factory.connections.closedBy, {"message_timeout": 1})
        if fastpath.implementation == "C":
            self.assertEqual(type(server.transport.__dict__.get("doRead")).__name__, "FastPath")

    @inlineCallbacks
    def test_sameReplies(self) -> None:
        # Not PUSH nor COUNTERS: a push may overtake a reply still being
        # computed, and the counters depend on how many are; over a real
        # socket, when such a reply is ready depends on how the reads fall.
        # Not the over-long ones: int32 closes at those.
        sample = [
            m
            for m in SAMPLE_MESSAGES
            if len(m) <= MAX_MESSAGE_SIZE and not any(t in m for t in (b'"CLOSE"', b'"PUSH"', b'"COUNTERS"'))
        ]
        messages = sample * 2 + [b'{"type":"CLOSE"}']
        for framing, framer in [("line", FRAMERS["crlf"]), ("int32", encodeInt32)]:
            stream = b"".join(framer(m) for m in messages)
            chunks = [stream[i : i + 700] for i in range(0, len(stream), 700)]
            fast = yield self.converse(False, chunks, framing)
            general = yield self.converse(True, chunks, framing)
            self.assertEqual(fast[:3], general[:3])
            # Every message answered.
            self.assertEqual(fast[1]["messagesOut"], len(messages))
            if fastpath.implementation == "C":
                # The C fast path read from the socket itself.
                self.assertEqual(fast[3], "FastPath")
            self.assertEqual(general[3], "NoneType")
