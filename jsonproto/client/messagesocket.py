"""
The blocking client's connection, as messages: each written framed and
whole (or as much as the socket takes now), bytes read until a deadline
and cut into messages, and, once the connection cannot go on, the error
that says why, raised from every call that would need it.

It knows nothing of requests and replies: each message read is handed on
(L{jsonproto.client.blocking.Client} matches replies to requests).
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any, Callable

from jsonproto.client.common import ProtocolError, readMessage
from jsonproto.wire import framing

_READ = 65536


class MessageSocket:
    """
    A connected socket (TCP, Unix or TLS), framed.

    @param sock: The socket, connected.
    @param decoder: What cuts the bytes read into frames, and
        C{frame}, what frames a message to send: the server's framing
        (L{jsonproto.client.common.decoderFor}).
    @param timeout: Seconds a write may take; L{None} for no limit.
    @param received: Called with each message read, in order.
    """

    def __init__(
        self,
        sock: socket.socket,
        decoder: framing.Decoder,
        frame: Callable[[bytes], bytes],
        timeout: float | None,
        received: Callable[[Any], None],
    ) -> None:
        self._decoder = decoder
        self.frame = frame
        self._socket = sock
        self._timeout = timeout
        self._handOn = received
        # Why the connection cannot go on, once it cannot.
        self.broken: Exception | None = None

    def fileno(self) -> int:
        return self._socket.fileno()

    def setblocking(self, blocking: bool) -> None:
        self._socket.setblocking(blocking)

    def close(self) -> None:
        """
        Close the socket: every call that needs it raises
        C{ConnectionError} from now on.
        """
        if self.broken is None:
            self.broken = ConnectionError("the client was closed")
        self._socket.close()

    def fail(self, error: Exception) -> None:
        """
        The connection cannot go on: close it, and raise C{error} from
        every call that would need it.
        """
        if self.broken is None:
            self.broken = error
            self._socket.close()

    def raiseIfBroken(self) -> None:
        if self.broken is not None:
            raise self.broken.with_traceback(None)

    # Sending

    def write(self, payload: bytes) -> None:
        """
        Send one message whole, within the timeout.

        @raise TimeoutError: It could not be sent whole in time (the
            server is not reading); the connection is closed.
        @raise ConnectionError: The connection failed.
        """
        sock = self._socket
        sock.settimeout(self._timeout)
        try:
            sock.sendall(self.frame(payload))
        except TimeoutError:
            self.fail(ConnectionError("a request could not be sent whole in time, so the connection was closed"))
            raise TimeoutError(f"could not send the request within {self._timeout:g} seconds (the server is not reading)") from None
        except OSError as e:
            self.fail(ConnectionError(f"the connection failed: {e.strerror or e}"))
            self.raiseIfBroken()

    def sendSome(self, data: memoryview) -> int:
        """
        Send what the socket takes now, without waiting.

        @return: How many bytes of C{data} were sent.
        """
        try:
            return self._socket.send(data[:_READ])
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except OSError as e:
            self.fail(ConnectionError(f"the connection failed: {e.strerror or e}"))
            return 0

    # Receiving

    def readOnce(self, deadline: float | None, timedOut: str) -> None:
        """
        Wait for bytes from the server until C{deadline} (L{None}: for as
        long as it takes), and take them.

        @raise TimeoutError: None came in time, saying C{timedOut}.
        """
        self.raiseIfBroken()
        sock = self._socket
        if deadline is None:
            sock.settimeout(None)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(timedOut)
            sock.settimeout(remaining)
        try:
            data = self._recv()
        except TimeoutError:
            raise TimeoutError(timedOut) from None
        except OSError as e:
            self.fail(ConnectionError(f"the connection failed: {e.strerror or e}"))
            return
        self._take(data)

    def receiveSome(self) -> None:
        """
        Take what has arrived, on a socket that does not block.
        """
        try:
            data = self._recv()
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as e:
            self.fail(ConnectionError(f"the connection failed: {e.strerror or e}"))
            return
        self._take(data)

    def _recv(self) -> bytes:
        """
        One read, and over TLS whatever else the TLS layer has already
        decrypted (which no selector can see).
        """
        sock = self._socket
        data = sock.recv(_READ)
        if data and isinstance(sock, ssl.SSLSocket):
            while more := sock.pending():
                data += sock.recv(more)
        return data

    def _take(self, data: bytes) -> None:
        if not data:
            self.fail(ConnectionError("the server closed the connection"))
            return
        self._decoder.feed(data)
        while self.broken is None and (frame := self._decoder.nextFrame()) is not None:
            try:
                message = readMessage(frame, self._decoder)
            except ProtocolError as e:
                self.fail(e)
                return
            self._handOn(message)
