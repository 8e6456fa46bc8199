"""
The drain of one message connection when the service stops: the requests
the peer had already sent are answered, later ones refused, and the
connection closes after the replies it owes.

"Already sent" cannot be known exactly: what is in flight, or in the
socket's buffer, has been sent but not read.  So the drain goes in turns of
L{DRAIN_TURN}: what is read in the first is answered, what is read later
refused, and a turn in which the connection could read and read nothing
ends it.  A connection that cannot read (its client not taking its
replies, its requests at C{Limits.maxPending}) is not closed for reading
nothing: what waits in the socket would go unanswered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall

if TYPE_CHECKING:
    from jsonproto.core.pipeline import Pipeline
    from jsonproto.server.flowcontrol import FlowControl

    # Checked as what it is mixed into (before FlowControl, whose way back
    # to reading it extends); at run time a plain mixin.
    _Host = FlowControl
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
    answers messages through a L{Pipeline}, with the pause reasons of
    L{jsonproto.server.flowcontrol.FlowControl}.

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
        get "Shutting down".  Once a turn passes in which the connection
        could read and read nothing, it closes after the replies it owes.
        A drain while one is under way changes nothing: a second turn would
        run beside the first, tracked by nothing, and fire after the
        connection closed.
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
        self._drainCall = None
        if self.closing:
            return
        if self._drainStage == ANSWERING:
            self._drainStage = REFUSING
            self._refuseFromNow()
        if self._transportPaused:
            # Not reading, so nothing to learn from a turn: the next begins
            # when reading resumes (L{_readIfUnpaused}).  Turns rearmed while
            # paused would cost thousands of stalled connections a core.
            return
        if self._readDuringDrain:
            self._readDuringDrain = False
            self._drainCall = self.clock.callLater(DRAIN_TURN, self._drainTurn)
            return
        self.closeWhenDone(self._closeWhenDone or self._drainReason, "shutdown")

    def _refuseFromNow(self) -> None:
        """
        Answer C{"Shutting down"} to whatever is read from now on.  Messages
        already read but not yet answered (held while the connection was
        paused: a client slow to read, replies owed up to
        C{Limits.maxPending}, the turn budget) are still answered normally:
        reading stays paused until they are, so the refusal begins when
        reading resumes (L{_readIfUnpaused}).
        """
        pipeline = self.pipeline
        if pipeline is not None and not pipeline.holdsMessages:
            pipeline.refusing = True

    def _readIfUnpaused(self) -> None:
        """
        Reading resumes, if nothing holds it paused: during a drain, the
        moment the refusal begins, if it waited for messages held, and the
        start of a turn, which must pass with nothing read before the
        connection may close, since the socket may hold what the client
        sent while it could not be read.
        """
        if not self._drainStage:
            super()._readIfUnpaused()
            return
        pipeline = self.pipeline
        if self._drainStage == REFUSING and pipeline is not None:
            # Called once the pipeline has run out of messages (or stopped):
            # a refusal that waited for those held begins here, if not yet.
            pipeline.refusing = True
        wasPaused = self._transportPaused
        super()._readIfUnpaused()
        if wasPaused and not self._transportPaused:
            if self._drainCall is not None:
                # A turn partly spent paused proves nothing: one more.
                self._readDuringDrain = True
            elif self._drainStage == REFUSING:
                # Turns stopped while paused: one begins with the reading.
                self._drainCall = self.clock.callLater(DRAIN_TURN, self._drainTurn)

    def cancelTimers(self) -> None:
        super().cancelTimers()
        if self._drainCall is not None and self._drainCall.active():
            self._drainCall.cancel()
        self._drainCall = None
