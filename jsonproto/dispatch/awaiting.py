"""
What a handler returns to be awaited, as a L{Deferred}: a coroutine, or an
asyncio future.

On every reactor a coroutine handler may await Deferreds.  Under Twisted's
asyncio reactor (C{twistd -r asyncio}) it may also await asyncio futures,
and so use asyncio libraries (C{asyncio.sleep}, C{redis.asyncio}, an
asyncio HTTP client): it then runs as an asyncio task, so that
C{asyncio.current_task()}, C{asyncio.timeout()} and the libraries built on
them work, and the Deferreds it awaits are waited for on its behalf.

Any other reactor has no asyncio event loop running: a handler that awaits
asyncio there fails, and the log says to run with C{-r asyncio}
(L{needsAsyncioReactor}) rather than asyncio's own "no running event loop".
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Coroutine

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.python.failure import Failure

ASYNCIO_REACTOR_HINT = (
    "asyncio needs Twisted's asyncio reactor, which this process is not running: "
    "start the daemon with twistd -r asyncio jsonproto ..., or install "
    "twisted.internet.asyncioreactor before the reactor is imported"
)

_ASYNCIO_ERRORS = ("no running event loop", "await wasn't used with future", "no current event loop")
"""
What asyncio says when it is used with no event loop running.
"""


class AsyncioReactorNeeded(RuntimeError):
    """
    A handler returned or awaited an asyncio future, and no asyncio event
    loop is running.
    """

    def __init__(self) -> None:
        super().__init__(ASYNCIO_REACTOR_HINT)


def _runningLoop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def needsAsyncioReactor(failure: Failure) -> bool:
    """
    Whether a handler failed for using asyncio without its event loop.
    """
    if failure.check(AsyncioReactorNeeded):
        return True
    return (
        failure.check(RuntimeError) is not None
        and any(text in str(failure.value) for text in _ASYNCIO_ERRORS)
        and _runningLoop() is None
    )


def toDeferred(awaitable: Awaitable[Any]) -> Deferred[Any]:
    """
    The result of C{awaitable} (a coroutine, an asyncio future, or any
    other awaitable but a L{Deferred}), as a L{Deferred}.

    Cancelling the L{Deferred} cancels what it waits for: the coroutine
    gets L{CancelledError} at its C{await}.

    @raise AsyncioReactorNeeded: If C{awaitable} is an asyncio future and
        no asyncio event loop is running.
    """
    loop = _runningLoop()
    if asyncio.isfuture(awaitable):
        if loop is None:
            raise AsyncioReactorNeeded()
        return Deferred.fromFuture(awaitable).addErrback(_asyncioCancelled)
    coroutine = awaitable if asyncio.iscoroutine(awaitable) else _await(awaitable)
    if loop is None:
        return ensureDeferred(coroutine)
    return Deferred.fromFuture(loop.create_task(_drive(coroutine, loop))).addErrback(_asyncioCancelled)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _asyncioCancelled(failure: Failure) -> Failure:
    """
    A task cancelled ends in asyncio's C{CancelledError}; the dispatcher,
    and whoever cancelled, know Twisted's.
    """
    if failure.check(asyncio.CancelledError):
        return Failure(CancelledError())
    return failure


async def _drive(coroutine: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> Any:
    """
    Run C{coroutine} inside an asyncio task, waiting for what it awaits:
    asyncio futures as the task would, and Deferreds too, which asyncio
    cannot wait for itself.

    The coroutine is stepped here, its C{await}s seen one at a time: this
    task waits until what it yielded (a future or a Deferred) is done, and
    then resumes it where it was, where its C{await} takes the result.  If
    the task is cancelled meanwhile, so is what the coroutine waits for.
    """
    error: BaseException | None = None
    while True:
        try:
            yielded = coroutine.send(None) if error is None else coroutine.throw(error)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            if yielded is None:
                await asyncio.sleep(0)  # a bare yield: give the loop a turn
            elif isinstance(yielded, Deferred) or asyncio.isfuture(yielded):
                await _done(yielded, loop)
            else:
                error = TypeError(f"a handler awaited {yielded!r}, which is neither a Deferred nor an asyncio future")
        except asyncio.CancelledError as e:
            if asyncio.isfuture(yielded):
                error = e  # the future is cancelled: its await raises this
            # A Deferred cancelled has failed: its await raises that.


async def _done(awaited: Any, loop: asyncio.AbstractEventLoop) -> None:
    """
    Wait until C{awaited}, a Deferred or an asyncio future, is done,
    leaving its result in it for the coroutine awaiting it to take.  It is
    not awaited itself: the coroutine's own C{await} of it is suspended, and
    a future is awaited by one C{await} at a time.
    """
    done = loop.create_future()

    def wake(result: Any) -> Any:
        if not done.done():
            done.set_result(None)
        return result

    if isinstance(awaited, Deferred):
        awaited.addBoth(wake)
    else:
        awaited.add_done_callback(wake)
    try:
        await done
    except asyncio.CancelledError:
        awaited.cancel()
        raise
