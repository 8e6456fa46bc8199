"""
A request to a typed handler may be decoded straight from its bytes into
the handler's type (L{jsonproto.core.envelope.answerTyped}) rather than to
a dict that is then converted: whichever way it goes, the client sees the
same bytes and the service counts the same things.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import weakref
from typing import Annotated, Any, Optional, TypedDict

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.core.budget import BufferBudget
from jsonproto.core.envelope import Straight, answerStraight, readStraight
from jsonproto.core.pipeline import FLUSH, BLOCKED, Pipeline
from jsonproto.core.traffic import Traffic
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.seed import register as registerSeed
from jsonproto.errors import INVALID_FIELD, RequestError
from jsonproto.limits import Limits
from jsonproto.wire.framing import LineDecoder
from tests.test_twins import observe

MAX = 4000


class Unit(enum.Enum):
    C = "C"
    F = "F"


class Tags(msgspec.Struct):
    site: str
    floor: int = 0


class Reading(msgspec.Struct, gc=False):
    device: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    celsius: float
    unit: Unit = Unit.C
    tags: Optional[Tags] = None
    samples: Annotated[list[float], msgspec.Meta(max_length=8)] = []
    note: str = ""


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    n: int


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Named(TypedDict):
    name: str


class Tracked(msgspec.Struct, weakref=True):
    n: int


class Ack(msgspec.Struct):
    ok: bool
    seen: int


def answerTyped(d: Dispatcher, frame: bytes) -> Any:
    """
    A request answered the straight way, or L{None} if it is not taken.
    """
    straight = Straight()
    if not readStraight(d.handlers, {}, frame, straight):
        return None
    return answerStraight(straight, d.latency, d, frame, None)


def typedDispatcher(straight: bool, later: list[Deferred[Any]], seen: list[Any] | None = None) -> Dispatcher:
    """
    The seed's types and typed handlers of every kind and outcome; with
    C{straight} false, a dispatcher that never lets requests be decoded
    straight into their types.
    """

    class Converting(Dispatcher):
        decodesTyped = False  # type: ignore[assignment]

    d = Dispatcher() if straight else Converting()
    seen = [] if seen is None else seen
    registerSeed(d)

    def reading(message: Reading, context: Any) -> dict[str, Any]:
        return {"echo": msgspec.to_builtins(message)}

    def strict(message: Strict, context: Any) -> dict[str, Any]:
        return {"n": message.n}

    def point(message: Point, context: Any) -> dict[str, Any]:
        return {"sum": message.x + message.y}

    def named(message: Named, context: Any) -> dict[str, Any]:
        return {"hello": message["name"]}

    def acked(message: Point, context: Any) -> Ack:
        return Ack(ok=True, seen=message.x)

    def refused(message: Point, context: Any) -> dict[str, Any]:
        raise RequestError(INVALID_FIELD, f"x={message.x} refused")

    def buggy(message: Point, context: Any) -> dict[str, Any]:
        raise ValueError("a bug")

    def waits(message: Point, context: Any) -> Deferred[Any]:
        result: Deferred[Any] = Deferred()
        later.append(result)
        return result

    def floaty(message: Point, context: Any) -> dict[str, Any]:
        return {"x": float("nan") if message.x else 1.5}

    for name, handler in {
        "READING": reading,
        "STRICT": strict,
        "POINT": point,
        "NAMED": named,
        "ACKED": acked,
        "REFUSED": refused,
        "BUGGY": buggy,
        "WAITS": waits,
        "FLOATY": floaty,
    }.items():
        d.register(name, handler)
    d.register("UNTYPED", lambda message, context: {"got": message})

    def note(message: Point, context: Any) -> None:
        seen.append(msgspec.to_builtins(message))

    def noteLater(message: Point, context: Any) -> Deferred[Any]:
        result: Deferred[Any] = Deferred()
        later.append(result)
        return result

    d.register("NOTE", note, oneWay=True)
    d.register("NOTE_REFUSED", refused, oneWay=True)
    d.register("NOTE_BUGGY", buggy, oneWay=True)
    d.register("NOTE_LATER", noteLater, oneWay=True)
    d.register("NOTE_WRONG", lambda message, context: [message.x], oneWay=True, request=Point)
    return d


def converse(straight: bool, reads: list[bytes]) -> dict[str, Any]:
    """
    Feed C{reads} to a pipeline and say all anyone could observe.
    """
    later: list[Deferred[Any]] = []
    seen: list[Any] = []
    d = typedDispatcher(straight, later, seen)
    traffic = Traffic()
    errors: dict[str, int] = {}
    pipeline: Any = None

    def awaitReply(owed: Any, result: Deferred[Any], message: Any) -> None:
        result.addCallback(lambda reply: pipeline.complete(owed, reply))

    pipeline = Pipeline(
        LineDecoder(MAX),
        False,
        d,
        Limits(maxMessageSize=MAX, maxErrors=0, maxPending=8),
        None,
        traffic,
        now=lambda: 0.0,
        awaitReply=awaitReply,
        errorCounts=errors,
        budget=BufferBudget(total=100_000, perHost=0),
    )
    return {
        "observed": observe(pipeline, later, reads, (FLUSH, BLOCKED)),
        "traffic": (traffic.messagesIn, traffic.messagesOut, traffic.bytesIn, traffic.bytesOut),
        "errors": errors,
        "counts": d.counts,
        "handlerErrors": d.latency.errors,
        "oneWaySeen": seen,
    }


MESSAGES: list[bytes] = [
    b'{"type":"SUM","a":10,"b":20}',
    b'{"type":"GREETING","name":"Alice"}',
    b'{"type":"GREETING","name":"Alice","id":1}',
    b'{"id":"x","type":"SUM","a":1.5,"b":-2}',
    b'{"type":"SUM","a":true,"b":2,"id":"t"}',
    b'{"type":"SUM","a":1,"b":2,"id":true}',
    b'{"type":"SUM","a":1,"b":2,"id":{"no":1}}',
    b'{"type":"SUM","a":1,"b":2,"id":null}',
    b'{"type":"SUM","a":1,"b":2,"id":1e2}',
    b'{"type":"SUM","a":1,"b":2,"id":1,"id":"last"}',
    b'{"type":"SUM","a":1,"a":5,"b":2}',
    b'{"type":"GREETING","type":"SUM","a":1,"b":2}',
    b'{"type":"SUM","a":1,"b":2,"extra":[1,{"x":null}]}',
    b'{"type":"SUM","a":-9223372036854775809,"b":1}',
    b'{"type":"SUM","a":1' + b"0" * 309 + b',"b":0}',
    b'{"type":"SUM","a":1,"b":2,"id":123456789012345678901234567890}',
    b'{"type":"SUM","a":1e999,"b":1}',
    b'{"type":"SUM","a":1,"b":1e-999}',
    b'{"type":"SUM","a":NaN,"b":1}',
    b'{"type":"SUM","a":1,"b":2,"x":"\xff"}',
    b'{"type":"SUM","a":1,"b":2,"x":"\xed\xa0\x80"}',
    b'{"type":"GREETING","name":"caf\xc3\xa9 \xe2\x98\x95"}',
    b'{"type":"GREETING","name":"\\ud83d\\ude00"}',
    b'{"type":"GREETING","name":"\\ud800"}',
    b'{"type":"SUM","a":1,"b":2,"x":"\\udc00"}',
    b'{"type":"SUM","a":1,"b":2,"x":"tab\there"}',
    b'{"type":"SUM","a":1,"b":2,"deep":' + b"[" * 1100 + b"]" * 1100 + b"}",
    b'{"type":"SUM","a":1,"b":2,"deep":' + b"[" * 600 + b"]" * 600 + b"}",
    b' {"type":"SUM","a":1,"b":2} ',
    b'{"type":"SUM","a":1,"b":2} x',
    b'{"type":"SUM","a":1,"b":2,}',
    b'{"type":"SUM","b":2}',
    b'{"type":"NOPE","a":1}',
    b'{"type":42}',
    b"[1,2]",
    b"null",
    b'"SUM"',
    b'{"type":"READING","device":"d1","celsius":21.5}',
    b'{"type":"READING","device":"d1","celsius":21,"unit":"F","tags":{"site":"n","floor":3},"samples":[1,2.5],"note":"\xc3\xa9"}',
    b'{"type":"READING","device":"","celsius":21.5}',
    b'{"type":"READING","device":"d1","celsius":"hot"}',
    b'{"type":"READING","device":"d1","celsius":true}',
    b'{"type":"READING","device":"d1","celsius":1,"unit":"K"}',
    b'{"type":"READING","device":"d1","celsius":1,"tags":{"floor":1}}',
    b'{"type":"READING","device":"d1","celsius":1,"samples":[1,2,3,4,5,6,7,8,9]}',
    b'{"type":"READING","device":"d1","celsius":1,"tags":null}',
    b'{"type":"STRICT","n":1}',
    b'{"type":"STRICT","n":1,"id":3}',
    b'{"type":"STRICT","n":1,"other":2}',
    b'{"type":"POINT","x":1,"y":2}',
    b'{"type":"POINT","x":1.5}',
    b'{"type":"NAMED","name":"n","id":"i"}',
    b'{"type":"NAMED"}',
    b'{"type":"ACKED","x":7,"id":7}',
    b'{"type":"REFUSED","x":1,"id":"r"}',
    b'{"type":"BUGGY","x":1,"id":"b"}',
    b'{"type":"WAITS","x":1,"id":"w"}',
    b'{"type":"FLOATY","x":1}',
    b'{"type":"FLOATY","x":0}',
    b'{"type":"UNTYPED","x":1}',
    b'{"type":"NOTE","x":1,"y":2}',
    b'{"type":"NOTE","x":1,"id":"n"}',
    b'{"type":"NOTE","x":true}',
    b'{"type":"NOTE","x":1,"junk":"\xff"}',
    b'{"type":"NOTE_REFUSED","x":1}',
    b'{"type":"NOTE_BUGGY","x":1}',
    b'{"type":"NOTE_LATER","x":1}',
    b'{"type":"NOTE_WRONG","x":1}',
]


class StraightDecodingTests(SynchronousTestCase):
    """
    Requests decoded straight into their types against the same requests
    converted from dicts.
    """

    def assertSame(self, reads: list[bytes]) -> None:
        self.assertEqual(converse(True, reads), converse(False, reads))
        self.flushLoggedErrors(ValueError, TypeError)

    def test_eachMessage(self) -> None:
        """
        Every message of the corpus alone, and all of them in one read.
        """
        for message in MESSAGES:
            self.assertSame([message + b"\n"])
        self.assertSame([b"\n".join(MESSAGES) + b"\n"])

    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from(["SUM", "GREETING", "READING", "POINT", "STRICT", "NAMED", "NOTE", "NOPE"]),
        st.dictionaries(
            st.sampled_from(["a", "b", "name", "device", "celsius", "unit", "tags", "samples", "x", "y", "n", "id", "zz"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
                max_leaves=6,
            ),
            max_size=6,
        ),
    )
    def test_anyFields(self, messageType: str, fields: dict[str, Any]) -> None:
        """
        A message of any type with any fields of any JSON values.
        """
        import json

        payload = json.dumps({"type": messageType, **fields}, ensure_ascii=bool(len(fields) % 2)).encode("utf-8", "surrogatepass")
        self.assertSame([payload + b"\n"])

    def test_takenStraight(self) -> None:
        """
        A request that fits its typed handler is answered without the
        ordinary way's decoding; others are left to it.
        """
        d = typedDispatcher(True, [])
        self.assertTrue(d.decodesTyped)
        answer = lambda frame: answerTyped(d, frame)  # noqa: E731
        self.assertEqual(answer(b'{"type":"SUM","a":1,"b":2,"id":"i"}'), {"status": "OK", "result": 3, "id": "i"})
        for notTaken in (
            b'{"type":"SUM","a":true,"b":2}',
            b'{"type":"UNTYPED","x":1}',
            b'{"type":"STRICT","n":1}',
            b'{"type":"SUM","a":1,"b":2,"x":"\xff"}',
            b'{"type":"SUM","a":1' + b"0" * 30 + b',"b":0}',
            b"[1]",
        ):
            self.assertIsNone(answer(notTaken), notTaken)
        note = Straight()
        self.assertTrue(readStraight(d.handlers, d.oneWayHandlers, b'{"type":"NOTE","x":1}', note))
        self.assertEqual((note.oneWay, note.messageType, note.value), (True, "NOTE", Point(1, 0)))

    def test_lastMessageNotKept(self) -> None:
        """
        Once its handler has returned, a typed message is the handler's
        alone: the connection does not hold on to its last one, of a
        request or of a one-way type, for as long as it stays idle.
        """
        held: list[weakref.ref[Tracked]] = []
        d = Dispatcher()
        d.register("ASK", lambda message, context: held.append(weakref.ref(message)) or {}, request=Tracked)
        d.register("TELL", lambda message, context: held.append(weakref.ref(message)), request=Tracked, oneWay=True)
        pipeline = Pipeline(
            LineDecoder(MAX), False, d, Limits(maxMessageSize=MAX), None, Traffic(),
            now=lambda: 0.0, awaitReply=lambda owed, result, message: None,
        )
        for message, reply in [(b'{"type":"ASK","n":1}\n', b'{"status":"OK"}\n'), (b'{"type":"TELL","n":2}\n', b"")]:
            pipeline.receive(message)
            pipeline.run()
            self.assertEqual(pipeline.takeOutput(), reply)
            gc.collect()
            self.assertIsNone(held[-1](), message)
        self.assertEqual(len(held), 2)

    def test_untypedDispatcher(self) -> None:
        """
        A dispatcher with no typed handler offers nothing to decode
        straight: its messages cost no look at the envelope first.
        """
        d = Dispatcher()
        d.register("PLAIN", lambda message, context: {})
        self.assertFalse(d.decodesTyped)

    def test_waitingHandler(self) -> None:
        """
        A typed handler that answers later gets its reply in its place,
        with the request's id.
        """
        d = typedDispatcher(True, [])
        d.register("LATER", lambda message, context: succeed({"done": True}), request=Point)
        result = answerTyped(d, b'{"type":"LATER","x":1,"id":5}')
        self.assertIsInstance(result, Deferred)
        self.assertEqual(self.successResultOf(result), {"status": "OK", "done": True, "id": 5})
