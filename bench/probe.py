"""
A well-behaved client timed while others misbehave, and serving one
selector event of a non-blocking socket.
"""

from __future__ import annotations

import json
import selectors
import socket
import time


PROBE_REQUEST = b'{"type":"SUM","a":1,"b":2}\n'


class Probe:
    """
    A well-behaved client: one small request at a time, each reply timed.
    """

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""
        self.failure = ""

    def roundTrip(self) -> float | None:
        """
        Send a SUM and wait for its reply.

        @return: seconds from sending to the whole reply; C{None} when no
            reply came within the timeout, the server closed, or the reply
            was not the sum (then C{failure} says which, and the probe is
            not to be used again).
        """
        started = time.perf_counter()
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(PROBE_REQUEST)
            while b"\n" not in self.buffer:
                left = started + self.timeout - time.perf_counter()
                if left <= 0:
                    raise socket.timeout()
                self.sock.settimeout(left)
                data = self.sock.recv(65536)
                if not data:
                    self.failure = "closed by the server"
                    return None
                self.buffer += data
        except socket.timeout:
            self.failure = f"no reply within {self.timeout:g} s"
            return None
        except ConnectionError as e:
            self.failure = f"connection failed ({e.strerror})"
            return None
        elapsed = time.perf_counter() - started
        line, self.buffer = self.buffer.split(b"\n", 1)
        if json.loads(line).get("result") != 3:
            self.failure = f"answered {line.decode(errors='replace')}"
            return None
        return elapsed

    def close(self) -> None:
        self.sock.close()


def serveEvent(s: socket.socket, events: int, outgoing: memoryview) -> tuple[bytes, int, bool]:
    """
    Serve one selector event of a non-blocking socket: read what has come
    (when readable), then send what C{outgoing} holds (when writable).

    @return: what was read, how many bytes were sent, and whether the peer
        has closed or reset the connection.
    """
    data = b""
    sent = 0
    if events & selectors.EVENT_READ:
        try:
            data = s.recv(262144)
            if not data:
                return data, sent, True
        except BlockingIOError:
            pass
        except OSError:
            return data, sent, True
    if events & selectors.EVENT_WRITE and outgoing:
        try:
            sent = s.send(outgoing)
        except BlockingIOError:
            pass
        except OSError:
            return data, sent, True
    return data, sent, False
