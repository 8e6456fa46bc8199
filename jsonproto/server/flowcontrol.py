"""
Flow control for a message connection: why it stops reading, and when it
reads again.

A connection reads, and answers, only while no reason to pause holds:

    - L{OUTPUT_BLOCKED}: its transport's write buffer is full, because the
      peer is not reading its replies.  The transport says so through
      L{IPushProducer}, at its own thresholds (Twisted's C{bufferSize} for
      TCP, and whatever a TLS or PROXY wrapper passes on); the connection
      gives up on a peer that takes nothing for C{Limits.sendTimeout}.
    - L{TOO_MANY_PENDING}: C{Limits.maxPending} of its requests are still
      being computed.
    - L{TURN}: it has had its share of this reactor turn
      (C{Limits.turnBudget}), and the other connections have theirs.
    - L{OPENING}: the dispatcher's open hooks are still running.

The reasons are bits of one C{int}, so that the read path asks whether any
holds with one attribute read.  The transport is paused once, when the
first reason arises, and resumed once the last has gone and the messages
already read are answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from zope.interface import implementer

if TYPE_CHECKING:
    from jsonproto.server.connection import TrackedProtocol

    # Checked as what it is mixed into; at run time a plain mixin.
    _Host = TrackedProtocol
else:
    _Host = object

OUTPUT_BLOCKED = 1
"""
The transport's write buffer is full.
"""

TOO_MANY_PENDING = 2
"""
As many requests are in flight as C{Limits.maxPending} allows.
"""

TURN = 4
"""
The other connections' turn; the only reason that does not count as a
pause in C{ConnectionInfo.pauses}.
"""

OPENING = 8
"""
The open hooks are running.
"""


@implementer(IPushProducer)
class FlowControl(_Host):
    """
    The pause reasons of a L{jsonproto.server.connection.TrackedProtocol}
    that answers messages, and its side of L{IPushProducer} for its
    transport.

    A mixin, like Twisted's C{TimeoutMixin}, rather than an object the
    protocol holds: the reasons are read on every read and every run of the
    pipeline, where an attribute of the protocol itself is the cheapest
    look, and an idle connection carries no object more for them.

    The class it is mixed into provides C{_run} (answer what is held) and
    C{outbox} (publications waiting for the connection, or L{None}).
    """

    outbox: Any
    # Why reading is paused (a set of the reasons above), and whether the
    # transport is paused now.
    _paused = 0
    _transportPaused = False
    _sendCall: IDelayedCall | None = None
    _turnCall: IDelayedCall | None = None

    def _run(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must say how it answers what is held")

    def canTakePublications(self) -> bool:
        """
        Whether publications can be written now: the connection is open and
        its transport's buffer has room.
        """
        return bool(self.connected) and not self.closing and not self._paused & OUTPUT_BLOCKED

    # IPushProducer, driven by the transport's write buffer

    def pauseProducing(self) -> None:
        """
        The transport's write buffer is full: the peer is not reading.
        Stop reading and answering until it drains, and give up on the peer
        if it does not within the send timeout.
        """
        self._pause(OUTPUT_BLOCKED)
        if self.limits.sendTimeout and self._sendCall is None:
            self._sendCall = self.clock.callLater(self.limits.sendTimeout, self._sendTimedOut)

    def resumeProducing(self) -> None:
        """
        The transport's write buffer has drained.
        """
        if self._sendCall is not None:
            self._sendCall.cancel()
            self._sendCall = None
        self._resume(OUTPUT_BLOCKED)
        if self.outbox is not None:
            self.outbox.flush()

    def stopProducing(self) -> None:
        """
        The transport is closing; connectionLost does the rest.
        """

    def _sendTimedOut(self) -> None:
        self._sendCall = None
        self.forceClose(f"the peer took none of its replies for {self.limits.sendTimeout:g} seconds", "send_timeout")

    # The reasons

    def _pause(self, reason: int) -> None:
        if not self._paused and reason != TURN and self.info is not None:
            self.info.pauses += 1
        self._paused |= reason
        if not self._transportPaused and not self.closing:
            self._transportPaused = True
            self.transport.pauseProducing()

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if self._paused or not self.connected or self.closing:
            return
        # Answer what is held first; reading resumes when it runs out.
        self._run()

    def _readIfUnpaused(self) -> None:
        """
        Resume reading from the transport if no reason to pause holds.
        """
        if self._transportPaused and not self._paused and self.connected and not self.closing:
            self._transportPaused = False
            self.transport.resumeProducing()

    def _yieldTurn(self) -> None:
        """
        This turn's share of work is spent: pause, and carry on in the next
        reactor turn, after the other connections.
        """
        self._pause(TURN)
        if self._turnCall is None:
            self._turnCall = self.clock.callLater(0, self._nextTurn)

    def _nextTurn(self) -> None:
        self._turnCall = None
        self._paused &= ~TURN
        if not self._paused and self.connected and not self.closing:
            # Reading resumes once the pipeline runs out of messages.
            self._run()

    # Closing

    def _finish(self) -> None:
        # The transport stops reading for good; no reason holds any more.
        self._paused = 0
        self._transportPaused = False
        super()._finish()

    def cancelTimers(self) -> None:
        super().cancelTimers()
        for call in (self._sendCall, self._turnCall):
            if call is not None and call.active():
                call.cancel()
        self._sendCall = self._turnCall = None
