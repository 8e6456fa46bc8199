"""
The dispatcher: how a decoded message finds its handler, and how whatever
the handler does becomes one reply.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.errors import INVALID_FIELD, RequestError

CONTEXT = object()


class DispatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dispatcher = Dispatcher()

    def answer(self, message: Any) -> Any:
        result = self.dispatcher.dispatch(message, CONTEXT)
        if isinstance(result, Deferred):
            return self.successResultOf(result)
        return result

    def test_handlerReply(self) -> None:
        """
        A handler's dict becomes the reply, "status": "OK" first; it gets
        the message and the context.
        """
        seen = []

        @self.dispatcher.handler("PING")
        def ping(message: Any, context: Any) -> dict[str, Any]:
            seen.append((message, context))
            return {"pong": message["n"]}

        self.assertEqual(list(self.answer({"type": "PING", "n": 3}).items()), [("status", "OK"), ("pong", 3)])
        self.assertEqual(seen, [({"type": "PING", "n": 3}, CONTEXT)])

    def test_statusOverride(self) -> None:
        """
        A handler may set its own status; it stays the first key.
        """
        self.dispatcher.register("X", lambda m, c: {"result": 1, "status": "PARTIAL"})
        self.assertEqual(list(self.answer({"type": "X"})), ["status", "result"])
        self.assertEqual(self.answer({"type": "X"})["status"], "PARTIAL")

    def test_id(self) -> None:
        """
        A string, number or null id comes back in the reply, errors included.
        """
        self.dispatcher.register("X", lambda m, c: {})
        for messageId in ["abc", 7, 2.5, None, -1]:
            self.assertEqual(self.answer({"type": "X", "id": messageId})["id"], messageId)
            self.assertEqual(self.answer({"type": "NOPE", "id": messageId})["id"], messageId)
        self.assertNotIn("id", self.answer({"type": "X"}))

    def test_invalidId(self) -> None:
        """
        An id that is not a string, number or null is refused (booleans are
        not numbers), and not echoed.
        """
        self.dispatcher.register("X", lambda m, c: {})
        for messageId in [True, False, [1], {"a": 1}]:
            reply = self.answer({"type": "X", "id": messageId})
            self.assertEqual(reply, {"status": "ERROR", "message": "The id must be a string, a number or null", "code": "invalid_id"})

    def test_unknownType(self) -> None:
        """
        The seed's reply for a type nobody handles.
        """
        self.assertEqual(
            self.answer({"type": "NOPE"}),
            {"status": "ERROR", "message": "Unknown type", "code": "unknown_type"},
        )

    def test_missingType(self) -> None:
        """
        A message without a string type is told so.
        """
        for message in [{}, {"type": 1}, {"type": None}, {"type": ["SUM"]}]:
            self.assertEqual(self.answer(message)["code"], "invalid_type")

    def test_notAnObject(self) -> None:
        """
        JSON that is not an object cannot be a request.
        """
        for message in [[], [{"type": "SUM"}], "SUM", 1, None, True]:
            self.assertEqual(self.answer(message)["code"], "not_an_object")

    def test_requestError(self) -> None:
        """
        A handler raising RequestError sends that error, with the id.
        """

        def bad(message: Any, context: Any) -> Any:
            raise RequestError(INVALID_FIELD, "x must be blue")

        self.dispatcher.register("X", bad)
        self.assertEqual(
            self.answer({"type": "X", "id": 1}),
            {"status": "ERROR", "message": "Invalid field", "code": "invalid_field", "detail": "x must be blue", "id": 1},
        )

    def test_handlerCrash(self) -> None:
        """
        A handler that raises gives "Internal error" and nothing of the
        exception; the traceback is logged.
        """

        def crash(message: Any, context: Any) -> Any:
            raise KeyError("secret")

        self.dispatcher.register("X", crash)
        reply = self.answer({"type": "X", "id": 9})
        self.assertEqual(reply, {"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": 9})
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_handlerRaisesCancelledError(self) -> None:
        """
        A handler that raises CancelledError itself (nobody cancelled it) is
        a crash like any other: "Internal error", logged and counted.
        """

        def cancelled(message: Any, context: Any) -> Any:
            raise CancelledError()

        self.dispatcher.register("X", cancelled)
        reply = self.answer({"type": "X", "id": 9})
        self.assertEqual(reply, {"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": 9})
        self.assertEqual(len(self.flushLoggedErrors(CancelledError)), 1)
        self.assertEqual(self.dispatcher.latency.errors, {"X": 1})

    def test_notADict(self) -> None:
        """
        A handler returning something other than a dict is an internal error.
        """
        self.dispatcher.register("X", lambda m, c: [1, 2])
        self.assertEqual(self.answer({"type": "X"})["code"], "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_deferred(self) -> None:
        """
        A handler may return a Deferred; the reply comes when it fires.
        """
        pending: Deferred[dict[str, Any]] = Deferred()
        self.dispatcher.register("X", lambda m, c: pending)
        result = self.dispatcher.dispatch({"type": "X", "id": "a"}, CONTEXT)
        self.assertNoResult(result)
        pending.callback({"done": True})
        self.assertEqual(self.successResultOf(result), {"status": "OK", "done": True, "id": "a"})

    def test_deferredFailure(self) -> None:
        """
        A failing Deferred is an error reply like a raise: RequestError as
        it is, anything else as "Internal error".
        """
        pending: Deferred[dict[str, Any]] = Deferred()
        self.dispatcher.register("X", lambda m, c: pending)
        result = self.dispatcher.dispatch({"type": "X"}, CONTEXT)
        pending.errback(RequestError(INVALID_FIELD))
        self.assertEqual(self.successResultOf(result)["code"], "invalid_field")

        pending = Deferred()
        result = self.dispatcher.dispatch({"type": "X"}, CONTEXT)
        pending.errback(ZeroDivisionError())
        self.assertEqual(self.successResultOf(result)["code"], "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_coroutine(self) -> None:
        """
        A coroutine function is a handler; it may await Deferreds.
        """
        pending: Deferred[int] = Deferred()

        @self.dispatcher.handler("X")
        async def x(message: Any, context: Any) -> dict[str, Any]:
            value = await pending
            if value < 0:
                raise RequestError(INVALID_FIELD)
            return {"value": value}

        result = self.dispatcher.dispatch({"type": "X"}, CONTEXT)
        self.assertNoResult(result)
        pending.callback(5)
        self.assertEqual(self.successResultOf(result), {"status": "OK", "value": 5})

        pending = Deferred()
        result = self.dispatcher.dispatch({"type": "X"}, CONTEXT)
        pending.callback(-1)
        self.assertEqual(self.successResultOf(result)["code"], "invalid_field")

    def test_register(self) -> None:
        """
        A type has one handler: registering a second is an error, not a
        silent replacement.  The decorator returns the function.
        """

        def f(m: Any, c: Any) -> dict[str, Any]:
            return {}

        self.assertIs(self.dispatcher.handler("A")(f), f)
        self.assertRaises(ValueError, self.dispatcher.register, "A", f)
        self.assertRaises(ValueError, self.dispatcher.register, "", f)
        self.assertEqual(self.dispatcher.messageTypes, {"A"})

    def test_oneWay(self) -> None:
        """
        A one-way type's handler is kept apart from those answered, for the
        pipeline to send no reply for it; a type is one or the other, once.
        """

        def f(m: Any, c: Any) -> None:
            pass

        self.assertIs(self.dispatcher.handler("LOG", oneWay=True)(f), f)
        self.dispatcher.register("ASK", f)
        self.assertEqual(self.dispatcher.oneWayHandlers, {"LOG": f})
        self.assertEqual(self.dispatcher.handlers, {"ASK": f})
        self.assertEqual(self.dispatcher.messageTypes, {"LOG", "ASK"})
        self.assertEqual([(d.messageType, d.oneWay) for d in self.dispatcher.declarations], [("LOG", True), ("ASK", False)])
        for messageType, oneWay in [("LOG", True), ("LOG", False), ("ASK", True), ("ASK", False)]:
            self.assertRaises(ValueError, self.dispatcher.register, messageType, f, oneWay=oneWay)


class BuiltinTests(SynchronousTestCase):
    """
    The seed's GREETING and SUM.
    """

    def answer(self, message: Any) -> Any:
        return defaultDispatcher().dispatch(message, CONTEXT)

    def test_greeting(self) -> None:
        self.assertEqual(
            self.answer({"type": "GREETING", "name": "Alice"}),
            {"status": "OK", "reply": "Hello, Alice!"},
        )

    def test_greetingNeedsName(self) -> None:
        """
        The seed would say "Hello, undefined!"; we say what is wrong.
        """
        for message, detail in [
            ({"type": "GREETING"}, "$.name: required, but not given"),
            ({"type": "GREETING", "name": None}, "$.name: expected a string, got null"),
            ({"type": "GREETING", "name": 5}, "$.name: expected a string, got an integer"),
        ]:
            reply = self.answer(message)
            self.assertEqual((reply["code"], reply["detail"]), ("invalid_field", detail))

    def test_sum(self) -> None:
        """
        Integers stay integers: 10 + 20 is 30, not 30.0.
        """
        reply = self.answer({"type": "SUM", "a": 10, "b": 20})
        self.assertEqual(reply, {"status": "OK", "result": 30})
        self.assertIsInstance(reply["result"], int)
        self.assertEqual(self.answer({"type": "SUM", "a": 0.5, "b": -2})["result"], -1.5)

    def test_sumNeedsNumbers(self) -> None:
        """
        The seed gives "1020" for strings and 2 for true + 1; we refuse.
        """
        for a, b, detail in [
            ("10", "20", "$.a: expected a number, got a string"),
            (True, 1, "$.a: expected a number, got a boolean"),
            (1, False, "$.b: expected a number, got a boolean"),
            (None, 1, "$.a: expected a number, got null"),
            (1, [2], "$.b: expected a number, got an array"),
            (1, {"n": 2}, "$.b: expected a number, got an object"),
        ]:
            reply = self.answer({"type": "SUM", "a": a, "b": b})
            self.assertEqual((reply["code"], reply["detail"]), ("invalid_field", detail))
        self.assertEqual(self.answer({"type": "SUM", "a": 1})["detail"], "$.b: required, but not given")

    def test_sumOverflow(self) -> None:
        """
        1e308 + 1e308 has no JSON value.
        """
        self.assertEqual(self.answer({"type": "SUM", "a": 1e308, "b": 1e308})["code"], "number_out_of_range")
