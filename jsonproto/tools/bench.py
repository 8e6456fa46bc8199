"""
C{jsonproto bench}: a load generator for jsonproto servers, as
redis-benchmark is for Redis.

One process, non-blocking sockets and epoll: each connection keeps
C{--pipeline} requests in flight, sending a new one for each reply.
Requests are encoded once; replies are counted by their frames, and only
one in C{--check-every} is decoded and checked, so that the client does
less work per message than the server.  It reports requests per second,
latency percentiles, and whether it used more CPU than the server (which
would make the figure the client's limit, not the server's).

Error replies are counted, every one, from the bytes (jsonproto writes
C{{"status":"ERROR"} at the start of each), and so are connections the
server closes (after C{--max-errors} bad requests, say, with the
C{too_many_errors} message that answers no request); the run goes on with
the connections left.  Both are counted over the whole run, warmup
included.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import ssl
import struct
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from jsonproto.limits import Limits
from jsonproto.wire.framing import encodeInt32, encodeLine

ERROR_REPLY = b'{"status":"ERROR"'
"""
How every error reply from a jsonproto server begins.
"""


class ReplyTooLarge(Exception):
    """
    A reply was longer than C{Settings.maxReplySize}.
    """


@dataclass
class Settings:
    host: str
    port: int
    tls: bool = False
    ca: str | None = None
    conns: int = 50
    pipeline: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    framing: str = "line"
    message: bytes = b'{"type":"SUM","a":10,"b":20}'
    checkEvery: int = 1000
    serverPid: int | None = None
    maxReplySize: int = Limits.maxMessageSize


@dataclass
class _Connection:
    sock: Any
    buffer: bytes = b""
    sent: deque = field(default_factory=deque)  # send times of requests in flight
    needed: int = 0  # int32: bytes still missing from the current frame, or -1 for a header
    open: bool = True


def _cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ownCpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _connect(settings: Settings) -> Any:
    sock = socket.create_connection((settings.host, settings.port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if settings.tls:
        context = ssl.create_default_context(cafile=settings.ca)
        sock = context.wrap_socket(sock, server_hostname=settings.host)
    sock.setblocking(False)
    return sock


class Benchmark:
    """
    One run against one server.
    """

    def __init__(self, settings: Settings) -> None:
        if settings.framing not in ("line", "int32"):
            raise ValueError("framing must be line or int32")
        self.settings = settings
        frame = encodeLine if settings.framing == "line" else encodeInt32
        self.request = frame(settings.message)
        # Pre-encoded runs of requests, so a batch of replies is answered by
        # one send of one ready-made buffer.
        self._runs = [b""] + [self.request * n for n in range(1, settings.pipeline + 1)]
        self.latencies = array("d")
        self.replies = 0
        self.errors = 0
        self.closed = 0
        self.openConnections = 0
        self.checked = 0

    def run(self) -> dict[str, Any]:
        s = self.settings
        poller = select.epoll()
        connections: dict[int, _Connection] = {}
        started = time.monotonic()
        for _ in range(s.conns):
            conn = _Connection(_connect(s), needed=-1)
            connections[conn.sock.fileno()] = conn
            poller.register(conn.sock.fileno(), select.EPOLLIN)
        connectSeconds = time.monotonic() - started
        now = time.monotonic()
        self.openConnections = len(connections)
        for conn in connections.values():
            try:
                conn.sock.sendall(self._runs[s.pipeline])
            except OSError:
                self._closed(conn, poller)
                continue
            conn.sent.extend([now] * s.pipeline)
        measureFrom = now + s.warmup
        end = measureFrom + s.duration
        measuring = False
        cpu0 = serverCpu0 = 0.0
        while self.openConnections:
            now = time.monotonic()
            if not measuring and now >= measureFrom:
                measuring = True
                self.replies = 0
                self.latencies = array("d")
                cpu0 = _ownCpu()
                serverCpu0 = _cpuSeconds(s.serverPid) if s.serverPid else 0.0
            if now >= end:
                break
            for fd, _ in poller.poll(min(0.1, max(0.0, end - now))):
                conn = connections[fd]
                try:
                    data = conn.sock.recv(262144)
                except (BlockingIOError, ssl.SSLWantReadError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._closed(conn, poller)
                    continue
                count = self._frames(conn, data)
                sent = conn.sent
                # Frames beyond the requests in flight answer none: the
                # server's last word before it closes.
                count = min(count, len(sent))
                if not count:
                    continue
                received = time.monotonic()
                for _ in range(count):
                    self.latencies.append(received - sent.popleft())
                self.replies += count
                try:
                    conn.sock.sendall(self._runs[count])
                except OSError:
                    self._closed(conn, poller)
                    continue
                sent.extend([received] * count)
        finished = time.monotonic()
        elapsed = max(0.0, finished - measureFrom) if measuring else 0.0
        ownCpu = _ownCpu() - cpu0 if measuring else 0.0
        serverCpu = (_cpuSeconds(s.serverPid) - serverCpu0 if measuring else 0.0) if s.serverPid else None
        for conn in connections.values():
            conn.sock.close()
        poller.close()
        return self._summary(elapsed, connectSeconds, ownCpu, serverCpu)

    def _closed(self, conn: _Connection, poller: Any) -> None:
        """
        The server closed C{conn}: count it, and go on without it.
        """
        if conn.open:
            conn.open = False
            self.closed += 1
            self.openConnections -= 1
            poller.unregister(conn.sock.fileno())
            conn.sent.clear()

    def _frames(self, conn: _Connection, data: bytes) -> int:
        """
        Count the complete replies in C{data}; decode and check a sample.
        """
        buffer = conn.buffer + data if conn.buffer else data
        limit = self.settings.maxReplySize
        if self.settings.framing == "line":
            count = buffer.count(b"\n")
            if count:
                cut = buffer.rindex(b"\n")
                # Only a run of complete lines longer than the limit can
                # hold a line that is.
                if cut > limit and max(map(len, buffer[:cut].split(b"\n"))) > limit:
                    raise ReplyTooLarge(f"the server sent a reply longer than {limit:,} bytes")
                self.errors += buffer.count(ERROR_REPLY, 0, cut)
                if self._due(count):
                    self._check(buffer[buffer.rfind(b"\n", 0, cut) + 1 : cut])
                conn.buffer = buffer[cut + 1 :]
            else:
                conn.buffer = buffer
            if len(conn.buffer) > limit:
                raise ReplyTooLarge(f"the server sent a reply longer than {limit:,} bytes")
            return count
        count, offset, last = 0, 0, b""
        while len(buffer) - offset >= 4:
            (length,) = struct.unpack_from("!I", buffer, offset)
            if length > limit:
                raise ReplyTooLarge(f"the server sent a reply of {length:,} bytes, longer than {limit:,}")
            if len(buffer) - offset < 4 + length:
                break
            last = buffer[offset + 4 : offset + 4 + length]
            if last.startswith(ERROR_REPLY):
                self.errors += 1
            offset += 4 + length
            count += 1
        conn.buffer = buffer[offset:]
        if count and self._due(count):
            self._check(last)
        return count

    def _due(self, count: int) -> bool:
        # The first reply, then one in every checkEvery.
        every = self.settings.checkEvery
        return not self.checked or self.replies // every != (self.replies + count) // every

    def _check(self, payload: bytes) -> None:
        # Error replies are counted from the bytes; this catches what is
        # not a reply at all.
        self.checked += 1
        try:
            reply = json.loads(payload)
        except ValueError:
            self.errors += 1
            return
        if not isinstance(reply, dict) or reply.get("status") not in ("OK", "ERROR"):
            self.errors += 1

    def _summary(self, elapsed: float, connectSeconds: float, ownCpu: float, serverCpu: float | None) -> dict[str, Any]:
        latencies = sorted(self.latencies)

        def percentile(p: float) -> float:
            if not latencies:
                return 0.0
            return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6

        s = self.settings
        summary: dict[str, Any] = {
            "rps": round(self.replies / elapsed, 1) if elapsed > 0 else 0.0,
            "p50_us": round(percentile(50), 1),
            "p99_us": round(percentile(99), 1),
            "p999_us": round(percentile(99.9), 1),
            "replies": self.replies,
            "checked": self.checked,
            "errors": self.errors,
            "closed": self.closed,
            "conns": s.conns,
            "pipeline": s.pipeline,
            "framing": s.framing,
            "tls": s.tls,
            "message_bytes": len(s.message),
            "duration_s": round(elapsed, 3),
            "connect_s": round(connectSeconds, 3),
            "client_cpu_s": round(ownCpu, 3),
        }
        if serverCpu is not None:
            summary["server_cpu_s"] = round(serverCpu, 3)
            summary["client_bound"] = ownCpu > serverCpu
        return summary


def describe(summary: dict[str, Any]) -> str:
    """
    The summary for a person.
    """
    lines = [
        f"{summary['rps']:,.0f} requests/s over {summary['conns']} connections, "
        f"{summary['pipeline']} in flight each ({summary['framing']}{', TLS' if summary['tls'] else ''}, "
        f"{summary['message_bytes']}-byte requests)",
        f"latency p50 {summary['p50_us']:,.0f} us, p99 {summary['p99_us']:,.0f} us, p99.9 {summary['p999_us']:,.0f} us",
        f"{summary['replies']:,} replies in {summary['duration_s']} s; {summary['checked']} decoded and checked",
    ]
    if summary["errors"] or summary["closed"]:
        lines.append(
            f"{summary['errors']:,} error replies and {summary['closed']} of {summary['conns']} connections "
            "closed by the server (over the whole run, warmup included)"
        )
    if "server_cpu_s" in summary:
        lines.append(f"CPU: this client {summary['client_cpu_s']} s, the server {summary['server_cpu_s']} s")
        if summary["client_bound"]:
            lines.append("warning: this client used more CPU than the server: the figure is the client's limit")
    else:
        lines.append(f"CPU: this client {summary['client_cpu_s']} s (give --server-pid to compare with the server)")
    return "\n".join(lines)
