"""
Splitting a byte stream into messages, in time linear in the bytes received.

The decoders here know nothing of Twisted: C{feed} takes whatever a read
returned, C{nextFrame} hands back one complete message at a time.  Pulling
frames one by one (rather than calling back for each) lets a protocol stop in
the middle of a read, when it must pause, and carry on later from the same
place.

Twisted's own receivers fall short for a server that must survive its peers:
C{LineReceiver} re-splits the whole buffer for every line (quadratic when a
read carries many lines); C{LineOnlyReceiver} and C{IntNStringReceiver}
re-concatenate a partial message with every read (quadratic when a large
message trickles in); none can pause mid-read; and an over-long line ends
their parsing of that read instead of skipping to the next line.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, Literal, Protocol


class _Marker(enum.Enum):
    TOO_LONG = "TOO_LONG"
    ABANDONED = "ABANDONED"


TOO_LONG: Final = _Marker.TOO_LONG
"""
Returned by C{nextFrame} in place of a message that exceeded the size limit,
at the position in the stream where that message stood, so that the reply
telling the client keeps its place among the other replies.
"""

ABANDONED: Final = _Marker.ABANDONED
"""
Returned by C{nextFrame} in place of a message the decoder was told to give
up on while it was arriving (L{LineDecoder.abandon}): the server could not
afford to hold the rest.
"""

Frame = bytes | Literal[_Marker.TOO_LONG, _Marker.ABANDONED]


class Decoder(Protocol):
    """
    What a protocol needs of a decoder.
    """

    maxLength: int

    def __init__(self, maxLength: int) -> None: ...

    def feed(self, data: bytes) -> None: ...

    def nextFrame(self) -> Frame | None: ...

    @property
    def bufferedBytes(self) -> int: ...

    @property
    def partialBytes(self) -> int: ...

    @property
    def midMessage(self) -> bool: ...

    @property
    def hasFrames(self) -> bool: ...

    def abandon(self) -> None: ...


class FrameQueue:
    """
    Complete frames cut from the reads so far, handed out one at a time: the
    base of every decoder (the compiled pipeline calls decoders through it).

    The decoders keep their state in slots: less memory per connection.
    """

    __slots__ = ("_frames", "_next")

    def __init__(self) -> None:
        self._frames: list[Frame] = []
        self._next = 0

    def feed(self, data: bytes) -> None:
        """
        Take the bytes of one read.
        """
        raise NotImplementedError

    def _startFeed(self) -> list[Frame]:
        # Frames all taken: reuse the list rather than let it grow.
        frames = self._frames
        if self._next == len(frames):
            frames.clear()
            self._next = 0
        return frames

    def nextFrame(self) -> Frame | None:
        """
        The next complete message, or L{None} until more bytes are fed.
        """
        if self._next < len(self._frames):
            frame = self._frames[self._next]
            self._next += 1
            return frame
        return None

    @property
    def hasFrames(self) -> bool:
        """
        Whether complete messages are waiting to be taken.
        """
        return self._next < len(self._frames)

    def _queuedBytes(self, overhead: int) -> int:
        return sum(len(f) + overhead for f in self._frames[self._next :] if isinstance(f, bytes))


class LineDecoder(FrameQueue):
    """
    Newline-delimited messages: C{\\n} ends a message, a C{\\r} before it is
    dropped, empty and all-blank lines are skipped.

    A line longer than the limit becomes one L{TOO_LONG}; the rest of it is
    discarded as it arrives, without being buffered, and decoding resumes
    after the next newline.  Buffered bytes never exceed the limit plus one
    read.

    @ivar maxLength: The longest line accepted, in bytes, not counting the
        delimiter or a C{\\r} before it.
    """

    __slots__ = ("maxLength", "_partial", "_partialLength", "_discarding")

    def __init__(self, maxLength: int) -> None:
        super().__init__()
        self.maxLength = maxLength
        # The unfinished line, as the reads that brought it.
        self._partial: list[bytes] = []
        self._partialLength = 0
        # True while skipping the rest of an over-long line.
        self._discarding = False

    def feed(self, data: bytes) -> None:
        """
        Take the bytes of one read.
        """
        # One split of the read: the lines it ends, then the start of an
        # unfinished one (b"" when the read ends with a newline).  A read
        # that holds no newline comes back whole, not copied.
        pieces = data.split(b"\n")
        last = len(pieces) - 1
        if last == 0:
            # Part of a long line.
            self._keepTail(data)
            return
        frames = self._startFeed()
        # The lines from pieces[start] to the tail are frames.
        start = 0
        if self._discarding:
            # The over-long line ends here; its TOO_LONG is already out.
            self._discarding = False
            start = 1
        elif self._partial:
            # This read ends a line begun in an earlier one.
            self._partial.append(pieces[0])
            pieces[0] = b"".join(self._partial)
            self._partial = []
            self._partialLength = 0
        for index in range(start, last):
            _addLine(frames, pieces[index], self.maxLength)
        self._keepTail(pieces[last])

    def _keepTail(self, tail: bytes) -> None:
        """
        Keep the start of an unfinished line, or discard it if the line is
        already too long.
        """
        if tail and not self._discarding:
            self._partial.append(tail)
            self._partialLength += len(tail)
            # One byte of slack: a \r may yet turn out to precede the \n.
            if self._partialLength > self.maxLength + 1:
                self._partial = []
                self._partialLength = 0
                self._discarding = True
                self._frames.append(TOO_LONG)

    @property
    def bufferedBytes(self) -> int:
        """
        Bytes received but not yet handed out: an unfinished message, and
        complete ones not yet taken.
        """
        return self._partialLength + self._queuedBytes(0)

    @property
    def partialBytes(self) -> int:
        """
        Bytes held of the unfinished message: what a server pays in memory
        for a message still arriving.
        """
        return self._partialLength

    @property
    def midMessage(self) -> bool:
        """
        Whether part of a message has arrived and the rest has not.
        """
        return self._partialLength > 0 or self._discarding

    def abandon(self) -> None:
        """
        Give up on the unfinished message: drop what is held of it, discard
        the rest as it arrives, and hand out L{ABANDONED} in its place.
        Decoding resumes after its newline.
        """
        if self._partialLength:
            self._partial = []
            self._partialLength = 0
            self._discarding = True
            self._startFeed().append(ABANDONED)


def _addLine(frames: list[Frame], line: bytes, maxLength: int) -> None:
    """
    Append to C{frames} one line, its C{\\n} already cut off: without a
    C{\\r} at its end, skipped when blank, L{TOO_LONG} when longer than
    C{maxLength}.
    """
    size = len(line)
    if size and line[size - 1] == 13:  # \r
        line = line[: size - 1]
        size -= 1
    # Blank: empty, or (rarely) all whitespace, which starts with a byte no
    # greater than a space.
    if not size or (line[0] <= 32 and line.isspace()):
        return
    frames.append(line if size <= maxLength else TOO_LONG)


_LENGTH: Final = struct.Struct("!I")


class Int32Decoder(FrameQueue):
    """
    Length-prefixed messages: a 4-byte big-endian unsigned length, then that
    many bytes.

    A length over the limit is refused before any of its body is buffered: it
    becomes one L{TOO_LONG}, after which the decoder yields nothing more (the
    stream cannot be resynchronised, so the connection has to end).

    Each read is cut into all the frames it completes at once, in one loop;
    only an unfinished frame is kept, and it grows in place, so a large frame
    arriving in many reads is copied once.

    @ivar maxLength: The longest message accepted, in bytes, not counting the
        prefix.
    """

    __slots__ = ("maxLength", "_partial", "_failed")

    def __init__(self, maxLength: int) -> None:
        super().__init__()
        self.maxLength = maxLength
        self._partial = bytearray()
        self._failed = False

    def feed(self, data: bytes) -> None:
        """
        Take the bytes of one read.
        """
        if self._failed:
            return
        frames = self._startFeed()
        partial = self._partial
        if partial:
            partial += data
            source: bytes | bytearray = partial
        else:
            source = data
        # The same bytes, indexed and sliced: in the compiled twin, a
        # pointer to them (framing.pxd), so neither makes Python objects.
        view = source
        maxLength = self.maxLength
        offset, end = 0, len(source)
        while end - offset >= 4:
            # The top byte widened first: compiled, shifting it as a C int
            # by 24 would overflow from 128 up.
            length = view[offset]
            length = (length << 24) | (view[offset + 1] << 16) | (view[offset + 2] << 8) | view[offset + 3]
            if length > maxLength:
                self._failed = True
                self._partial = bytearray()
                frames.append(TOO_LONG)
                return
            stop = offset + 4 + length
            if stop > end:
                break
            frame = view[offset + 4 : stop]
            # (In Python, a slice of what was kept is a bytearray; the
            # compiled twin's slices of its view are bytes already.)
            frames.append(frame if isinstance(frame, bytes) else bytes(frame))
            offset = stop
        if source is partial:
            del partial[:offset]
        elif offset < end:
            self._partial = bytearray(source[offset:])

    @property
    def bufferedBytes(self) -> int:
        """
        Bytes received but not yet handed out.
        """
        return len(self._partial) + self._queuedBytes(4)

    @property
    def partialBytes(self) -> int:
        """
        Bytes held of the unfinished message.
        """
        return len(self._partial)

    @property
    def midMessage(self) -> bool:
        """
        Whether part of a message has arrived and the rest has not
        (complete frames not yet taken do not count).
        """
        return bool(self._partial)

    def abandon(self) -> None:
        """
        Give up on the unfinished message: L{ABANDONED} takes its place,
        and, the stream having lost its frame boundaries, nothing more is
        decoded.
        """
        if self._partial:
            self._failed = True
            self._partial = bytearray()
            self._startFeed().append(ABANDONED)


def encodeLine(payload: bytes) -> bytes:
    """
    Frame one message for the line framing.
    """
    return payload + b"\n"


_SHORT = 1024
"""
The length below which a message's prefix is taken ready-made from
L{_PREFIXES}: most replies are shorter, and packing the length is most of
the cost of framing one.
"""

_PREFIXES = tuple(_LENGTH.pack(length) for length in range(_SHORT))


def encodeInt32(payload: bytes) -> bytes:
    """
    Frame one message for the length-prefixed framing.
    """
    size = len(payload)
    return (_PREFIXES[size] if size < _SHORT else _LENGTH.pack(size)) + payload
