"""
The reactor C{twistd jsonproto} runs on unless C{twistd -r} names another:
Twisted's epoll reactor, less one layer per event.

Twisted's epoll reactor hands every ready descriptor to
C{log.callWithLogger}, which sets up a legacy logging context (a prefix for
C{twisted.python.log.msg} lines) around the read or write.  jsonproto logs
with C{twisted.logger}, naming the connection in each event, so that layer
only costs: four Python calls and a context dictionary per event, about a
tenth of the daemon's CPU in ping-pong.

With C{jsonproto.core._speedups} built, the loop over the events is C
(C{dispatchEvents}), and the commonest event, a descriptor that is
readable and nothing else, is handled there as the reactor's own
C{_doReadOrWrite} would: that call and its checks were another tenth of
the daemon's CPU once reads were answered in C.  Other events, and every
event without the extension, go through C{_doReadOrWrite}.  Errors are
caught and logged the same way either way.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet import epollreactor
from twisted.internet.posixbase import _NO_FILEDESC
from twisted.python import log
from twisted.python.failure import Failure

from jsonproto.core.extension import speedups

dispatchEvents = None if speedups is None else speedups.dispatchEvents


class EPollReactor(epollreactor.EPollReactor):
    """
    Twisted's epoll reactor, dispatching events without the legacy logging
    context.
    """

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        if dispatchEvents is not None:
            dispatchEvents(
                events, self._selectables, self._doReadOrWrite, self._disconnectSelectable, self._readFailed, _NO_FILEDESC
            )
            return
        selectables = self._selectables
        doReadOrWrite = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                doReadOrWrite(selectable, fd, event)

    def _readFailed(self, selectable: Any, error: BaseException) -> None:
        """
        A selectable's doRead raised in C{dispatchEvents}: log it, and
        disconnect the selectable with it as the reason, as
        C{_doReadOrWrite} does.
        """
        log.err(Failure(error, type(error), error.__traceback__))
        self._disconnectSelectable(selectable, error, True)

    doIteration = doPoll


def install() -> Any:
    """
    Install this reactor as the global one.
    """
    from twisted.internet.main import installReactor

    reactor = EPollReactor()
    installReactor(reactor)
    return reactor
