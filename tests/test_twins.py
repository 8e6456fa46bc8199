"""
The compiled core is the Python pipeline's twin: the same conversation
through both gives the same bytes, in the same writes, and the same
counters, on both framings and both envelopes, however the bytes are cut
into reads.
"""

from __future__ import annotations

import collections
import importlib
import sys
from types import ModuleType
from typing import Any, Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from jsonproto.core import compiled
from jsonproto.core.budget import BufferBudget
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.seed import register as registerSeed
from jsonproto.errors import INVALID_FIELD, RequestError
from jsonproto.limits import Limits

MAX = 2000


def pureModules() -> dict[str, ModuleType]:
    """
    The pipeline's modules imported from their Python sources, beside the
    compiled ones this process runs (which are put back as they were).
    """
    saved = {name: sys.modules.pop(name) for name in compiled.COMPILED if name in sys.modules}
    finder = compiled.SourceOnly()
    sys.meta_path.insert(0, finder)
    try:
        return {name: importlib.import_module(name) for name in compiled.COMPILED}
    finally:
        sys.meta_path.remove(finder)
        for name in compiled.COMPILED:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        # Importing a submodule sets it on its package too: put those back.
        for name, module in saved.items():
            package, _, child = name.rpartition(".")
            setattr(sys.modules[package], child, module)


def dispatcher(later: list[Deferred[Any]]) -> Dispatcher:
    """
    A dispatcher with a handler for every way a handler can answer.
    """
    d = Dispatcher()
    registerSeed(d)

    def deferLater(message: Any, context: Any) -> Deferred[Any]:
        result: Deferred[Any] = Deferred()
        later.append(result)
        return result

    async def coroutine(message: Any, context: Any) -> dict[str, Any]:
        return {"coroutine": True}

    def boom(message: Any, context: Any) -> dict[str, Any]:
        raise ValueError("a bug")

    def refuse(message: Any, context: Any) -> dict[str, Any]:
        raise RequestError(INVALID_FIELD, "refused")

    table: dict[str, Callable[..., Any]] = {
        "LATER": deferLater,
        "COROUTINE": coroutine,
        "BOOM": boom,
        "REFUSE": refuse,
        "NAN": lambda m, c: {"x": float("nan")},
        "SET": lambda m, c: {"x": {1}},
        "OWN_ERROR": lambda m, c: {"status": "ERROR", "message": "handler says no", "code": "custom"},
        "OWN_STATUS": lambda m, c: {"status": "MAYBE"},
        "SUBCLASS": lambda m, c: collections.OrderedDict(sub=True),
        "NOT_A_DICT": lambda m, c: [1, 2],
        "BIG": lambda m, c: {"blob": "x" * 40000},
        "ECHO": lambda m, c: {"echo": m},
        "OWN_ID": lambda m, c: {"id": "mine", "x": 1},
        "result": lambda m, c: {"result": m.get("v")},
    }
    for name, handler in table.items():
        d.register(name, handler)
    d.register("NOTE", lambda m, c: None, oneWay=True)
    d.register("NOTE_FAILS", refuse, oneWay=True)
    return d


MESSAGES: list[bytes] = [
    b'{"type":"SUM","a":10,"b":20}',
    b'{"type":"SUM","a":1.5,"b":2,"id":7}',
    b'{"type":"SUM","a":true,"b":2,"id":"x"}',
    b'{"type":"SUM","a":1e308,"b":1e308}',
    b'{"type":"GREETING","name":"\\u00e9\\u4e2d"}',
    b'{"type":"SUM","a":1,"b":2,"id":true}',
    b'{"type":"SUM","a":-9223372036854775809,"b":1,"id":123456789012345678901234567890}',
    b'{"type":"NOPE","id":null}',
    b'{"type":42}',
    b'{"type":42,"id":"t"}',
    b"[1,2,3]",
    b"not json",
    b"x",
    b'{"type":"SUM","a":NaN,"b":1}',
    b'{"type":"ECHO","s":"\\ud800"}',
    b"\xff\xfe",
    b'{"type":"ECHO","pad":"' + b"p" * MAX + b'"}',
    b'{"type":"LATER","id":1}',
    b'{"type":"COROUTINE"}',
    b'{"type":"BOOM","id":2}',
    b'{"type":"REFUSE","id":3}',
    b'{"type":"NAN","id":4}',
    b'{"type":"SET","id":5}',
    b'{"type":"OWN_ERROR"}',
    b'{"type":"OWN_STATUS"}',
    b'{"type":"SUBCLASS","id":6}',
    b'{"type":"NOT_A_DICT"}',
    b'{"type":"BIG"}',
    b'{"type":"OWN_ID","id":"theirs"}',
    b'{"type":"NOTE","id":9}',
    b'{"type":"NOTE_FAILS"}',
    # JSON-RPC requests, batches and notifications (jsonproto's envelope
    # answers them as messages with no type).
    b'{"jsonrpc":"2.0","method":"SUM","params":{"a":1,"b":2},"id":1}',
    b'{"jsonrpc":"2.0","method":"result","params":{"v":[1]},"id":"r"}',
    b'{"jsonrpc":"2.0","method":"SUM","params":{"a":1}}',
    b'[{"jsonrpc":"2.0","method":"LATER","id":1},{"jsonrpc":"2.0","method":"NOPE","id":2},1]',
    b"[]",
]


def converse(modules: dict[str, ModuleType], framing: str, envelope: str, reads: list[bytes]) -> dict[str, Any]:
    """
    Feed C{reads} to a new pipeline from C{modules}, completing what
    handlers leave pending after each read, and say all anyone could
    observe.
    """
    later: list[Deferred[Any]] = []
    d = dispatcher(later)
    pipelineModule = modules["jsonproto.core.pipeline"]
    pipelineType = modules["jsonproto.core.rpcpipeline"].RPCPipeline if envelope == "jsonrpc" else pipelineModule.Pipeline
    framingModule = modules["jsonproto.wire.framing"]
    traffic = modules["jsonproto.core.traffic"].Traffic()
    decoder = (framingModule.Int32Decoder if framing == "int32" else framingModule.LineDecoder)(MAX)
    errors: dict[str, int] = {}
    pipeline: Any = None

    def awaitReply(owed: Any, result: Deferred[Any], message: Any) -> None:
        result.addCallback(lambda reply: pipeline.complete(owed, reply))

    pipeline = pipelineType(
        decoder,
        framing == "int32",
        d,
        Limits(maxMessageSize=MAX, maxErrors=20, errorDecay=0, maxPending=4),
        None,
        traffic,
        now=lambda: 0.0,
        awaitReply=awaitReply,
        errorCounts=errors,
        budget=BufferBudget(total=3000, perHost=0),
    )
    return {
        "observed": observe(pipeline, later, reads, (pipelineModule.FLUSH, pipelineModule.BLOCKED)),
        "traffic": (traffic.messagesIn, traffic.messagesOut, traffic.bytesIn, traffic.bytesOut),
        "errors": errors,
        "counts": d.counts,
        "handlerErrors": d.latency.errors,
        "close": (pipeline.closeReason, pipeline.closeKind),
        "buffered": (pipeline.bufferedBytes, pipeline.midMessage, pipeline.holdsMessages, pipeline.busy, pipeline.owed),
    }


def observe(pipeline: Any, later: list[Deferred[Any]], reads: list[bytes], runAgain: tuple[int, ...]) -> list[Any]:
    """
    Feed C{reads} to C{pipeline}, running it after each until it returns
    an outcome other than C{runAgain}'s, completing what handlers leave
    pending (C{later}) as it goes; what it returned, held and wrote, in
    order.
    """
    observed: list[Any] = []
    for data in reads:
        observed.append(pipeline.receive(data))
        for _ in range(1000):
            observed.append(pipeline.holdsMessages)
            outcome = pipeline.run()
            observed.append(outcome)
            observed.append(pipeline.takeOutput())
            while later:
                later.pop(0).callback({"later": True})
            observed.append(pipeline.takeOutput())
            if outcome not in runAgain:
                break
    return observed


def frame(framing: str, message: bytes) -> bytes:
    if framing == "int32":
        return len(message).to_bytes(4, "big") + message
    return message + (b"\r\n\n" if len(message) % 2 else b"\n")


class TwinTests(SynchronousTestCase):
    """
    The compiled pipeline against its Python source.
    """

    def setUp(self) -> None:
        if compiled.implementation() != "compiled":
            raise SkipTest("this process runs the Python core: there is no compiled twin to compare")
        self.pure = pureModules()
        self.compiled = {name: sys.modules[name] for name in compiled.COMPILED}
        # Each of them: a module that failed to build would be compared
        # with itself.
        for name in compiled.COMPILED:
            self.assertFalse(self.pure[name].__file__.endswith(".so"), name)
            self.assertTrue(self.compiled[name].__file__.endswith(".so"), name)

    def test_current(self) -> None:
        """
        The compiled modules were built from the sources beside them: a
        stale build would be compared, and run, in their place.
        """
        self.assertEqual(compiled.stale(), [], "rebuild the compiled core: make, or python setup.py build_ext --inplace")

    def assertTwins(self, framing: str, envelope: str, reads: list[bytes]) -> None:
        self.assertEqual(converse(self.pure, framing, envelope, reads), converse(self.compiled, framing, envelope, reads))
        # The handlers' bugs, logged by both.
        self.flushLoggedErrors(ValueError, TypeError)

    def test_eachMessage(self) -> None:
        """
        Every message of the corpus, alone and all in one read, on both
        framings and both envelopes.
        """
        for framing in ("line", "int32"):
            for envelope in ("jsonproto", "jsonrpc"):
                everything = b"".join(frame(framing, m) for m in MESSAGES)
                self.assertTwins(framing, envelope, [everything])
                for message in MESSAGES:
                    self.assertTwins(framing, envelope, [frame(framing, message)])

    def test_limits(self) -> None:
        """
        The limits: a message too long, the buffer budget, the error
        budget, requests in flight.
        """
        for framing in ("line", "int32"):
            self.assertTwins(framing, "jsonproto", [frame(framing, b"nope") * 30])
            self.assertTwins(framing, "jsonproto", [frame(framing, b'{"type":"LATER"}') * 10])
            self.assertTwins(framing, "jsonproto", [b'{"type":"ECHO","pad":"' + b"p" * 2500, b'"}\n'])
            self.assertTwins(framing, "jsonproto", [frame(framing, b'{"type":"ECHO","pad":"' + b"q" * 3000 + b'"}')])

    @settings(max_examples=150, deadline=None)
    @given(
        st.sampled_from(["line", "int32"]),
        st.sampled_from(["jsonproto", "jsonrpc"]),
        st.lists(st.sampled_from(MESSAGES), min_size=1, max_size=12),
        st.lists(st.integers(min_value=1, max_value=5000), max_size=8),
    )
    def test_anyCut(self, framing: str, envelope: str, messages: list[bytes], cuts: list[int]) -> None:
        """
        Any sequence of messages, cut into reads anywhere.
        """
        data = b"".join(frame(framing, m) for m in messages)
        reads, start = [], 0
        for cut in sorted(set(cuts)):
            if cut < len(data):
                reads.append(data[start:cut])
                start = cut
        reads.append(data[start:])
        self.assertTwins(framing, envelope, reads)
