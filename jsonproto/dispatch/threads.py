"""
Running blocking or CPU-heavy handlers in worker threads, with a bound on
both the threads and the work waiting for them.

A handler that blocks the reactor thread stalls every connection of the
process.  Wrap it with L{WorkerPool.handler} and it runs in one of a fixed
number of threads instead; its reply still goes out in request order.
When every thread is busy and the queue is full, the client is told
C{"Server busy"} at once rather than the server queueing without limit.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from jsonproto.dispatch.dispatcher import Handler, Message, Reply
from jsonproto.errors import SERVER_BUSY, RequestError


class WorkerPool:
    """
    A bounded pool of threads for handlers::

        workers = WorkerPool(maxThreads=4, maxQueued=64)

        @dispatcher.handler("HASH")
        @workers.handler
        def hashPassword(message, context):
            return {"hash": slowHash(message["password"])}

    The threads start with the first request and stop when the reactor
    shuts down.  A handler running in a thread must not touch the reactor
    or the connection (C{context.send}); it may read C{context}'s fields.

    A request that times out is answered at once, but its thread cannot be
    interrupted: it keeps its place in the pool until the function returns.

    @ivar maxThreads: Functions running at once.
    @ivar maxQueued: Functions waiting for a thread; past it, requests are
        refused with C{"Server busy"}.
    """

    def __init__(
        self,
        maxThreads: int = 4,
        maxQueued: int = 64,
        reactor: Any = None,
        name: str = "jsonproto-workers",
    ) -> None:
        if maxThreads < 1 or maxQueued < 0:
            raise ValueError("a worker pool needs at least one thread and a queue of 0 or more")
        if reactor is None:
            from twisted.internet import reactor
        self.maxThreads = maxThreads
        self.maxQueued = maxQueued
        self._reactor = reactor
        self._name = name
        self._pool: ThreadPool | None = None
        self._inFlight = 0

    @property
    def inFlight(self) -> int:
        """
        Functions running or waiting for a thread.
        """
        return self._inFlight

    def _start(self) -> ThreadPool:
        pool = ThreadPool(minthreads=0, maxthreads=self.maxThreads, name=self._name)
        pool.start()
        self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        self._pool = pool
        return pool

    def stop(self) -> None:
        """
        Stop the threads, waiting for running functions to return.
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def run(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """
        Call C{function(*args)} in a worker thread.

        @return: Fires with its result.  Cancelling it answers at once; the
            call itself runs to its end.
        @raise RequestError: L{SERVER_BUSY} if the threads and the queue are
            all taken.
        """
        if self._inFlight >= self.maxThreads + self.maxQueued:
            raise RequestError(SERVER_BUSY, "every worker thread is busy and the queue is full")
        pool = self._pool or self._start()
        self._inFlight += 1
        result: Deferred[Any] = Deferred()

        def finished(outcome: Any) -> None:
            self._inFlight -= 1
            if not result.called:
                if isinstance(outcome, Failure):
                    result.errback(outcome)
                else:
                    result.callback(outcome)

        deferToThreadPool(self._reactor, pool, function, *args).addBoth(finished)
        return result

    def handler(self, function: Callable[[Message, Any], Reply]) -> Handler:
        """
        Decorate a blocking handler so that it runs in this pool.
        """

        def inThread(message: Message, context: Any) -> Deferred[Reply]:
            return self.run(function, message, context)

        inThread.__name__ = getattr(function, "__name__", "handler")
        inThread.__doc__ = function.__doc__
        return inThread
