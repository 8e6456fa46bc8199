"""
The drain of one message connection when the service stops: the requests
the peer had already sent are answered, later ones refused, and the
connection closes after the replies it owes.

"Already sent" cannot be known exactly: what is in flight, or in the
socket's buffer, has been sent but not read.  So the drain goes in turns of
L{DRAIN_TURN}, and a turn in which nothing was read ends it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall

if TYPE_CHECKING:
    from jsonproto.core.pipeline import Pipeline
    from jsonproto.server.connection import TrackedProtocol

    # Checked as what it is mixed into; at run time a plain mixin.
    _Host = TrackedProtocol
else:
    _Host = object

DRAIN_TURN = 0.01
"""
Seconds between looks at a draining connection: time for the reactor to
read what is already waiting in the socket, short enough not to delay
shutdown.
"""

# Stages of a drain.
ANSWERING = 1  # answering what had arrived when the drain began
REFUSING = 2  # answering "Shutting down" to anything later


class Drain(_Host):
    """
    The drain of a L{jsonproto.server.connection.TrackedProtocol} that
    answers messages through a L{Pipeline}.

    A mixin, like L{jsonproto.server.flowcontrol.FlowControl}: its state is
    a few attributes of the protocol, which cost a connection that never
    drains nothing (their defaults are the class's), and the read path
    tells whether a drain is under way from one of them.  The class it is
    mixed into provides C{pipeline}, and sets C{_readDuringDrain} on every
    read while C{_drainStage} is set.
    """

    pipeline: Pipeline | None
    _drainStage = 0
    _readDuringDrain = False
    _drainCall: IDelayedCall | None = None
    _drainReason = "the server is shutting down"

    def drain(self, reason: str) -> None:
        """
        The service is stopping.  Requests the peer had already sent (read
        within the first L{DRAIN_TURN}) are answered normally; later ones
        get "Shutting down".  Once a turn passes with nothing read, the
        connection closes after the replies it owes.  A drain while one
        is under way changes nothing: a second turn would run beside the
        first, tracked by nothing, and fire after the connection closed.
        """
        if self._drainStage:
            return
        # Not yet a close when done: one now would close the connection as
        # soon as its owed work is done, before the turn has read what is
        # waiting in the socket, and count it as a C{server} close.
        self._drainReason = reason
        self._drainStage = ANSWERING
        self._readDuringDrain = False
        self._drainCall = self.clock.callLater(DRAIN_TURN, self._drainTurn)

    def _drainTurn(self) -> None:
        self._drainStage = REFUSING
        if self.pipeline is not None:
            self.pipeline.refusing = True
        if self._readDuringDrain:
            self._readDuringDrain = False
            self._drainCall = self.clock.callLater(DRAIN_TURN, self._drainTurn)
            return
        self._drainCall = None
        self.closeWhenDone(self._closeWhenDone or self._drainReason, "shutdown")

    def cancelTimers(self) -> None:
        super().cancelTimers()
        if self._drainCall is not None and self._drainCall.active():
            self._drainCall.cancel()
        self._drainCall = None
