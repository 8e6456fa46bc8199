"""
A connection's beginning and end, as a service's own code sees them: the
functions a handlers module registers with L{Dispatcher.onOpen} and
L{Dispatcher.onClose} (a lobby adding and removing a member, a game
announcing a player).

Each may return a value, a L{Deferred} or a coroutine.  Each is bounded by
a timeout, and its failure (or running out of time) is logged, never
fatal: the connection goes on, or has gone, either way.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsonproto.dispatch import awaiting

log = Logger()

HOOK_TIMEOUT = 10.0
"""
Seconds an open or close hook may take before it is given up (cancelled,
and logged).
"""


def runHooks(
    hooks: Sequence[Callable[..., Any]], arguments: tuple[Any, ...], what: str, clock: IReactorTime, timeout: float = HOOK_TIMEOUT
) -> Deferred[None] | None:
    """
    Call each hook with C{arguments}, one after the other's result if it
    is asynchronous.

    @param what: C{"open"} or C{"close"}, for the log.
    @return: L{None} if every hook has finished already, else a L{Deferred}
        that fires (never fails) once they all have.
    """
    waiting: list[Deferred[Any]] = []
    for hook in hooks:
        try:
            result = hook(*arguments)
        except Exception:
            log.failure("{what} hook {hook} failed", Failure(), what=what, hook=_name(hook))
            continue
        if inspect.isawaitable(result) and not isinstance(result, Deferred):
            result = awaiting.toDeferred(result)
        if isinstance(result, Deferred):
            result.addTimeout(timeout, clock)
            result.addErrback(_failed, what, hook, timeout)
            waiting.append(result)
    if not waiting:
        return None
    if len(waiting) == 1:
        return waiting[0].addCallback(lambda _: None)
    return DeferredList(waiting, consumeErrors=True).addCallback(lambda _: None)


def _failed(failure: Failure, what: str, hook: Callable[..., Any], timeout: float) -> None:
    from twisted.internet.defer import TimeoutError

    if failure.check(TimeoutError):
        log.error("{what} hook {hook} did not finish within {timeout:g} seconds", what=what, hook=_name(hook), timeout=timeout)
    else:
        log.failure("{what} hook {hook} failed", failure, what=what, hook=_name(hook))


def _name(hook: Callable[..., Any]) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)

