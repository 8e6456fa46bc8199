"""
Typed messages: a handler declares its message's fields with Python types,
and the dispatcher checks them before calling it.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

try:
    from typing import NotRequired, TypedDict
except ImportError:  # Python 3.10: typing's TypedDict knows no NotRequired.
    from typing_extensions import NotRequired, TypedDict

import msgspec
from msgspec import Meta
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.tools.validationcost import Tags, Unit
from jsonproto.wire.codec import encode

CONTEXT = object()


class Reading(msgspec.Struct):
    device: Annotated[str, Meta(min_length=1, max_length=8)]
    celsius: float
    tags: Tags
    samples: Annotated[list[float], Meta(max_length=3)] = []
    unit: Unit = Unit.CELSIUS
    mode: Literal["live", "replay"] = "live"
    note: str | None = None


class Ack(msgspec.Struct):
    device: str
    count: int


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Move(TypedDict):
    dx: int
    dy: NotRequired[int]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    n: int


class WithType(msgspec.Struct):
    type: str


class WithId(msgspec.Struct):
    id: int


class WithStatus(msgspec.Struct):
    status: str


def reading(message: Reading, context: Any) -> Ack:
    return Ack(message.device, len(message.samples))


class TypedHandlerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dispatcher = Dispatcher()
        self.seen: list[Any] = []

    def answer(self, message: Any) -> Any:
        result = self.dispatcher.dispatch(message, CONTEXT)
        if isinstance(result, Deferred):
            return self.successResultOf(result)
        return result

    def detail(self, message: dict[str, Any]) -> str:
        reply = self.answer(message)
        self.assertEqual((reply["status"], reply["code"]), ("ERROR", "invalid_field"), reply)
        return reply["detail"]  # type: ignore[no-any-return]

    def test_fromAnnotation(self) -> None:
        """
        The first parameter's annotation is the message type: the handler
        gets a value of it, defaults filled in, and the envelope's type and
        id are not its fields.
        """

        @self.dispatcher.handler("READING")
        def handle(message: Reading, context: Any) -> dict[str, Any]:
            self.seen.append((message, context))
            return {}

        reply = self.answer({"type": "READING", "id": 7, "device": "p-7", "celsius": 21, "tags": {"site": "Zürich"}})
        self.assertEqual(reply, {"status": "OK", "id": 7})
        [(message, context)] = self.seen
        self.assertEqual(message, Reading("p-7", 21.0, Tags("Zürich", 0, None)))
        self.assertEqual((message.unit, message.mode, message.samples, message.note), (Unit.CELSIUS, "live", [], None))
        self.assertIs(context, CONTEXT)

    def test_details(self) -> None:
        """
        A message that does not fit is answered invalid_field, with the
        member's JSON path and what was expected there, and the handler is
        not called; true is never a number.
        """
        self.dispatcher.register("READING", reading)
        good = {"type": "READING", "device": "p-7", "celsius": 21.5, "tags": {"site": "x"}}
        cases = [
            ({"celsius": True}, "$.celsius: expected a number, got a boolean"),
            ({"celsius": "21"}, "$.celsius: expected a number, got a string"),
            ({"celsius": None}, "$.celsius: expected a number, got null"),
            ({"device": 7}, "$.device: expected a string, got an integer"),
            ({"device": ""}, "$.device: expected a string of at least 1 character"),
            ({"device": "p-123456789"}, "$.device: expected a string of at most 8 characters"),
            ({"tags": {}}, "$.tags.site: required, but not given"),
            ({"tags": []}, "$.tags: expected an object, got an array"),
            ({"tags": {"site": "x", "floor": -1}}, "$.tags.floor: expected an integer >= 0"),
            ({"tags": {"site": "x", "floor": 1.5}}, "$.tags.floor: expected an integer, got a number with a fraction or exponent"),
            ({"tags": {"site": "x", "floor": True}}, "$.tags.floor: expected an integer, got a boolean"),
            ({"samples": [1.0, False]}, "$.samples[1]: expected a number, got a boolean"),
            ({"samples": [1, 2, 3, 4]}, "$.samples: expected an array of at most 3 items"),
            ({"unit": "K"}, '$.unit: expected one of "C", "F"'),
            ({"mode": "x"}, '$.mode: expected one of "live", "replay"'),
            ({"note": 5}, "$.note: expected a string or null, got an integer"),
        ]
        for change, detail in cases:
            self.assertEqual(self.detail({**good, **change}), detail, change)
        missing = dict(good)
        del missing["celsius"]
        self.assertEqual(self.detail(missing), "$.celsius: required, but not given")
        self.assertEqual(self.answer(good), {"status": "OK", "device": "p-7", "count": 0})

    def test_dataclassAndTypedDict(self) -> None:
        """
        A dataclass or a TypedDict declares a message too, with the same
        rules; a TypedDict handler gets a dict of the declared fields.
        """

        @self.dispatcher.handler("POINT")
        def point(message: Point, context: Any) -> dict[str, Any]:
            return {"sum": message.x + message.y}

        @self.dispatcher.handler("MOVE")
        def move(message: Move, context: Any) -> dict[str, Any]:
            return {"seen": message}

        self.assertEqual(self.answer({"type": "POINT", "x": 2}), {"status": "OK", "sum": 2})
        self.assertEqual(self.detail({"type": "POINT", "x": True}), "$.x: expected an integer, got a boolean")
        self.assertEqual(self.answer({"type": "MOVE", "dx": 1, "id": "m"}), {"status": "OK", "seen": {"dx": 1}, "id": "m"})
        self.assertEqual(self.detail({"type": "MOVE", "dx": 1, "dy": "2"}), "$.dy: expected an integer, got a string")

    def test_explicitTypes(self) -> None:
        """
        request= gives the type without an annotation; request=None keeps
        an annotated handler untyped.
        """
        self.dispatcher.register("P", lambda m, c: {"x": m.x}, request=Point)
        self.dispatcher.register("RAW", reading, request=None)
        self.assertEqual(self.answer({"type": "P", "x": 3}), {"status": "OK", "x": 3})
        self.assertIsNone(self.dispatcher.declarations[1].request)
        self.assertRaises(ValueError, self.dispatcher.register, "Q", reading, request=dict)

    def test_untypedUnchanged(self) -> None:
        """
        A handler without a message type annotation is called as it was,
        nothing wrapped around it: it costs nothing more.
        """

        def plain(message: dict[str, Any], context: Any) -> dict[str, Any]:
            return {"n": message.get("n")}

        self.dispatcher.register("PLAIN", plain)
        self.dispatcher.register("LAMBDA", lambda m, c: {})
        self.assertIs(self.dispatcher.handlers["PLAIN"], plain)
        self.assertEqual(self.answer({"type": "PLAIN", "n": True}), {"status": "OK", "n": True})
        self.assertIsNone(self.dispatcher.declarations[0].request)

    def test_envelopeFields(self) -> None:
        """
        type and id are the envelope's: a message type may not have them, a
        reply type may not have status; a type that refuses unknown fields
        still takes the envelope.
        """
        for request in (WithType, WithId):
            self.assertRaises(ValueError, self.dispatcher.register, "X", lambda m, c: {}, request=request)
        self.assertRaises(ValueError, self.dispatcher.register, "X", lambda m, c: {}, reply=WithStatus)
        self.dispatcher.register("STRICT", lambda m, c: {"n": m.n}, request=Strict)
        self.assertEqual(self.answer({"type": "STRICT", "id": 1, "n": 2}), {"status": "OK", "n": 2, "id": 1})
        self.assertEqual(self.detail({"type": "STRICT", "n": 2, "m": 3}), "$.m: not a field of this message")

    def test_unresolvableAnnotation(self) -> None:
        """
        An annotation that names a type the handler's module cannot see is
        a clear error at registration, not a handler silently untyped.
        """
        namespace: dict[str, Any] = {}
        exec("def handle(message: 'Missing', context): return {}", namespace)
        with self.assertRaises(ValueError) as caught:
            self.dispatcher.register("X", namespace["handle"])
        self.assertIn("request=", str(caught.exception))

    def test_typedReplies(self) -> None:
        """
        A Struct or dataclass returned, at once, from a Deferred or from a
        coroutine, becomes the reply's fields, in their order.
        """
        self.dispatcher.register("STRUCT", lambda m, c: Ack("a", 1))
        self.dispatcher.register("DATACLASS", lambda m, c: Point(1, 2))
        self.dispatcher.register("DEFERRED", lambda m, c: succeed(Ack("d", 2)))

        async def coroutine(message: Point, context: Any) -> Ack:
            return Ack("c", message.x)

        self.dispatcher.register("COROUTINE", coroutine)
        self.assertEqual(list(self.answer({"type": "STRUCT", "id": 1}).items()), [("status", "OK"), ("device", "a"), ("count", 1), ("id", 1)])
        self.assertEqual(self.answer({"type": "DATACLASS"}), {"status": "OK", "x": 1, "y": 2})
        self.assertEqual(self.answer({"type": "DEFERRED"}), {"status": "OK", "device": "d", "count": 2})
        self.assertEqual(self.answer({"type": "COROUTINE", "x": 3}), {"status": "OK", "device": "c", "count": 3})
        self.assertEqual(self.detail({"type": "COROUTINE", "x": "3"}), "$.x: expected an integer, got a string")
        self.assertEqual(self.dispatcher.declarations[3].reply, Ack)

    def test_notAReply(self) -> None:
        """
        A result that is neither a dict nor a typed value is the handler's
        bug: Internal error, logged.
        """
        self.dispatcher.register("X", lambda m, c: Point)
        self.assertEqual(self.answer({"type": "X"})["code"], "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_pushes(self) -> None:
        """
        A declared push builds its message from a typed value; its fields
        may not be called type or status, and a name is declared once.
        """
        said = self.dispatcher.declarePush("SAID", Ack)
        self.assertEqual(said.message(Ack("bob", 2)), {"type": "SAID", "device": "bob", "count": 2})
        self.assertEqual(self.dispatcher.declarePush("BYE").message(), {"type": "BYE"})
        self.assertRaises(TypeError, said.message, Point(1))
        self.assertRaises(ValueError, self.dispatcher.declarePush, "SAID", Ack)
        self.assertRaises(ValueError, self.dispatcher.declarePush, "X", WithStatus)
        self.assertRaises(ValueError, self.dispatcher.declarePush, "Y", WithType)
        self.assertEqual([p.name for p in self.dispatcher.pushes], ["SAID", "BYE"])

    def test_oneWayReplyType(self) -> None:
        """
        A one-way type sends no reply, so it can have no reply type.
        """
        self.assertRaises(ValueError, self.dispatcher.register, "X", reading, oneWay=True, reply=Ack)
        self.dispatcher.register("Y", reading, oneWay=True)
        self.assertIsNone(self.dispatcher.declarations[0].reply)
        self.assertEqual(self.dispatcher.declarations[0].request, Reading)


class SeedTests(SynchronousTestCase):
    """
    GREETING and SUM, typed, answer as they always have.
    """

    def wire(self, message: dict[str, Any]) -> bytes:
        return encode(defaultDispatcher().dispatch(message, CONTEXT))

    def test_okRepliesByteForByte(self) -> None:
        """
        The OK replies are the bytes they were.
        """
        cases = [
            ({"type": "GREETING", "name": "Alice"}, b'{"status":"OK","reply":"Hello, Alice!"}'),
            ({"type": "GREETING", "name": "Zoë", "id": "g"}, '{"status":"OK","reply":"Hello, Zoë!","id":"g"}'.encode()),
            ({"type": "SUM", "a": 10, "b": 20}, b'{"status":"OK","result":30}'),
            ({"type": "SUM", "a": 10, "b": 20, "id": 7}, b'{"status":"OK","result":30,"id":7}'),
            ({"type": "SUM", "a": 0.5, "b": 2}, b'{"status":"OK","result":2.5}'),
            ({"type": "SUM", "a": 10**30, "b": 1}, b'{"status":"OK","result":1000000000000000000000000000001}'),
        ]
        for message, expected in cases:
            self.assertEqual(self.wire(message), expected)

    def test_outOfRange(self) -> None:
        """
        A sum no double holds is number_out_of_range, not Infinity or a
        crash.
        """
        for a, b in [(1e308, 1e308), (-1e308, -1e308), (10**400, 0.5)]:
            reply = defaultDispatcher().dispatch({"type": "SUM", "a": a, "b": b}, CONTEXT)
            self.assertEqual(reply["code"], "number_out_of_range")

    def test_declared(self) -> None:
        """
        Both are typed, so the service's description has their fields.
        """
        declared = {d.messageType: (d.request.__name__, d.reply.__name__) for d in defaultDispatcher().declarations}  # type: ignore[union-attr]
        self.assertEqual(declared, {"GREETING": ("Greeting", "GreetingReply"), "SUM": ("Sum", "SumReply")})
