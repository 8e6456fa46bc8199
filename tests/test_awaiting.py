"""
Coroutine handlers that await asyncio: run as asyncio tasks where an
asyncio event loop runs (C{twistd -r asyncio}), and told how to get one
where none does.  (The real daemon under C{-r asyncio}: test_asyncio.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.dispatch.awaiting import AsyncioReactorNeeded, toDeferred
from jsonproto.dispatch.dispatcher import Dispatcher
from tests.support import LogCatcher

HINT = "needs the asyncio reactor: run twistd -r asyncio jsonproto"


class WithoutAsyncioTests(SynchronousTestCase):
    """
    No asyncio event loop runs (any reactor but asyncio's).
    """

    def setUp(self) -> None:
        self.dispatcher = Dispatcher()
        self.log = LogCatcher(self)

    def answer(self, message: Any) -> Any:
        result = self.dispatcher.dispatch(message, None)
        return self.successResultOf(result) if isinstance(result, Deferred) else result

    def test_awaitAsyncio(self) -> None:
        """
        A handler awaiting asyncio.sleep fails with Internal error, and the
        log says to run with -r asyncio, not "no running event loop".
        """

        @self.dispatcher.handler("NAP")
        async def nap(message: Any, context: Any) -> dict[str, Any]:
            await asyncio.sleep(0.01)
            return {}

        self.assertEqual(self.answer({"type": "NAP", "id": 1}), {"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": 1})
        self.assertEqual(len(self.log.matching(HINT)), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_returnFuture(self) -> None:
        """
        Returning an asyncio future is told the same.
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        self.dispatcher.register("F", lambda m, c: loop.create_future())
        self.assertEqual(self.answer({"type": "F"})["code"], "internal_error")
        self.assertEqual(len(self.log.matching(HINT)), 1)
        self.assertEqual(len(self.flushLoggedErrors(AsyncioReactorNeeded)), 1)

    def test_otherRuntimeErrors(self) -> None:
        """
        A handler's own RuntimeError is logged as a failure, without the
        hint.
        """

        async def broken(message: Any, context: Any) -> dict[str, Any]:
            raise RuntimeError("the disk is full")

        self.dispatcher.register("B", broken)
        self.assertEqual(self.answer({"type": "B"})["code"], "internal_error")
        self.assertEqual(self.log.matching(HINT), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_deferredsStillWork(self) -> None:
        """
        A coroutine awaiting Deferreds runs as before, at once until its
        first wait.
        """
        pending: Deferred[int] = Deferred()

        async def wait(message: Any, context: Any) -> dict[str, Any]:
            return {"n": await pending}

        self.dispatcher.register("W", wait)
        result = self.dispatcher.dispatch({"type": "W"}, None)
        pending.callback(4)
        self.assertEqual(self.successResultOf(result), {"status": "OK", "n": 4})


class WithAsyncioTests(SynchronousTestCase):
    """
    An asyncio event loop runs, as under the asyncio reactor.
    """

    def within(self, body: Any) -> Any:
        """
        Run C{body()} (a coroutine function) in a running asyncio loop.
        """
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(body())
        finally:
            loop.close()

    def test_asyncioAndDeferreds(self) -> None:
        """
        One coroutine awaits asyncio futures, a library's context manager
        that needs a task (asyncio.timeout), and Deferreds, in any order.
        """

        async def handler() -> Any:
            loop = asyncio.get_running_loop()
            fired: Deferred[str] = Deferred()
            loop.call_later(0.01, fired.callback, "deferred")
            got = [await fired]
            await asyncio.sleep(0)
            if hasattr(asyncio, "timeout"):
                async with asyncio.timeout(5):
                    await asyncio.sleep(0.01)
            else:  # Python 3.10: wait_for makes a task of its own.
                await asyncio.wait_for(asyncio.sleep(0.01), 5)
            got.append(asyncio.current_task() is not None)
            failing: Deferred[None] = Deferred()
            loop.call_soon(failing.errback, ZeroDivisionError())
            try:
                await failing
            except ZeroDivisionError:
                got.append("caught")
            return got

        async def body() -> Any:
            result = toDeferred(handler())
            outcome: list[Any] = []
            result.addBoth(outcome.append)
            while not outcome:
                await asyncio.sleep(0.005)
            return outcome[0]

        self.assertEqual(self.within(body), ["deferred", True, "caught"])

    def test_cancel(self) -> None:
        """
        Cancelling the Deferred reaches the coroutine at its await, whether
        on an asyncio future or a Deferred, and ends in Twisted's
        CancelledError, as a request timeout expects.
        """
        seen: list[str] = []

        async def sleeper() -> Any:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                seen.append("asyncio")
                raise

        async def waiter() -> Any:
            try:
                await Deferred()
            except CancelledError:
                seen.append("deferred")
                raise

        async def body() -> Any:
            outcomes: list[Any] = []
            for coroutine in (sleeper(), waiter()):
                result = toDeferred(coroutine)
                result.addBoth(outcomes.append)
                await asyncio.sleep(0.01)
                result.cancel()
            while len(outcomes) < 2:
                await asyncio.sleep(0.005)
            return outcomes

        outcomes = self.within(body)
        self.assertEqual(seen, ["asyncio", "deferred"])
        for outcome in outcomes:
            self.assertIsInstance(outcome, Failure)
            outcome.trap(CancelledError)
