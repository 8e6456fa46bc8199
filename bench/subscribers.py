"""
The subscriber processes of the channel scenarios: each opens its share of
the subscriptions and notes when every publication reached the last of its
readers.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import struct
import time
from multiprocessing.connection import Connection


# Channels: fan-out, and slow subscribers
#
# The load: subscriber processes (each with its share of the connections, on
# non-blocking sockets and a selector) and one publisher process.  Every
# publication's data carries its sequence number "n" and its publish time
# "t" (the wall clock, one clock for every process of the machine); a
# subscriber process notes, for each n, when the last of its sockets
# received it (the greatest n of each read tells which publications it
# brought, so that no line is parsed; the kernel's receive timestamp tells
# when, however late the process gets round to reading), and the parent
# takes the latest of the processes.

FANOUT_CHANNEL = "fan"
_SUBSCRIBE = b'{"type":"SUBSCRIBE","channel":"%s"}\n' % FANOUT_CHANNEL.encode()
_SEQUENCE = re.compile(rb'"n":(\d+)')


def _openSubscribers(port: int, count: int, smallWindow: bool, seconds: float = 120) -> list[socket.socket]:
    """
    C{count} connections, each subscribed to the channel (its reply read),
    opened a hundred at a time so as not to overflow the accept queue.

    @param smallWindow: Give them an Internet-sized MSS and a small receive
        buffer, so that the server's kernel holds for them what it would
        for a client across a network, not loopback's 64 KiB segments.
    """
    selector = selectors.DefaultSelector()
    opened: list[socket.socket] = []
    waiting: dict[socket.socket, bytes | None] = {}  # None: still connecting
    deadline = time.monotonic() + seconds
    while len(opened) < count or waiting:
        while len(opened) < count and len(waiting) < 100:
            s = socket.socket()
            if smallWindow:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            selector.register(s, selectors.EVENT_WRITE)
            waiting[s] = None
            opened.append(s)
        for key, _ in selector.select(1):
            s = key.fileobj  # type: ignore[assignment]
            if waiting[s] is None:
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise RuntimeError(f"a subscriber could not connect: {os.strerror(error)}")
                s.send(_SUBSCRIBE)
                waiting[s] = b""
                selector.modify(s, selectors.EVENT_READ)
                continue
            data = s.recv(4096)
            if not data:
                raise RuntimeError("the server closed a subscriber before it was subscribed")
            got = waiting[s] + data  # type: ignore[operator]
            if b"\n" in got:
                if b'"OK"' not in got.split(b"\n", 1)[0]:
                    raise RuntimeError(f"a subscription was refused: {got[:200]!r}")
                selector.unregister(s)
                del waiting[s]
            else:
                waiting[s] = got
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(opened) - len(waiting)} of {count} subscribers subscribed in {seconds:g} s")
    selector.close()
    return opened


def _arrivalTime(ancillary: list[tuple[int, int, bytes]]) -> float:
    """
    When the last of the bytes a read returned reached the socket, from the
    kernel's timestamp (C{SO_TIMESTAMPNS}, the wall clock): the time a
    publication arrived, not the time this busy process got round to it.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds * 1e-9
    return time.time()


# Linux's value, which Python's socket module does not name.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(16)


def subscriberLoad(port: int, readers: int, stalled: int, control: Connection) -> None:
    """
    A subscriber process: C{readers} connections that read everything, and
    C{stalled} that never read.  Says C{"subscribed"}, then takes a plan and
    reads until its C{end}, and sends back how many deliveries came in its
    C{window} and in each second from its C{start}, when the last of its
    readers got each of the first C{tracked} publications (by the kernel's
    timestamps), how many of its connections the server closed, and how
    much the stalled ones held.
    """
    try:
        reading = _openSubscribers(port, readers, smallWindow=False)
        idle = _openSubscribers(port, stalled, smallWindow=True)
    except Exception as e:  # told to the parent, which stops the run
        control.send(f"failed: {e}")
        return
    control.send("subscribed")
    plan = control.recv()
    if plan == "stop":
        return
    selector = selectors.DefaultSelector()
    highest: dict[socket.socket, int] = {}
    tails: dict[socket.socket, bytes] = {}
    for s in reading:
        s.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        selector.register(s, selectors.EVENT_READ)
        highest[s], tails[s] = 0, b""
    arrivals: list[float] = [0.0] * 1024
    windowStart, windowEnd = plan["window"]
    start, end, tracked = plan["start"], plan["end"], plan["tracked"]
    perSecond = [0] * (int(end - start) + 2)
    inWindow = closed = 0
    monotonic = time.monotonic
    while True:
        now = monotonic()
        if now >= end:
            break
        for key, _ in selector.select(min(0.5, end - now)):
            s = key.fileobj  # type: ignore[assignment]
            try:
                data, ancillary, _, _ = s.recvmsg(262144, _ANCILLARY)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            now = monotonic()
            if not data:
                closed += 1
                selector.unregister(s)
                continue
            lines = data.count(b"\n")
            if windowStart <= now < windowEnd:
                inWindow += lines
            if now >= start:
                perSecond[int(now - start)] += lines
            if highest[s] >= tracked:
                continue
            # Which publications this read brought: those after the last
            # this connection had, up to the one on its last whole line.
            last = data.rfind(b"\n")
            if last < 0:
                tails[s] += data
                continue
            previous = data.rfind(b"\n", 0, last)
            line = data[previous + 1 : last] if previous >= 0 else tails[s] + data[:last]
            tails[s] = data[last + 1 :]
            match = _SEQUENCE.search(line)
            if match is None:
                continue
            n, seen = min(int(match.group(1)), tracked), highest[s]
            if n > seen:
                at = _arrivalTime(ancillary)
                if n >= len(arrivals):
                    arrivals.extend([0.0] * (n + 1024 - len(arrivals)))
                for k in range(seen + 1, n + 1):
                    if at > arrivals[k]:
                        arrivals[k] = at
                highest[s] = n
    # The stalled connections: what the server left in their buffers, and
    # whether it closed them.
    held = stalledClosed = 0
    for s in idle:
        s.setblocking(False)
        while True:
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                stalledClosed += 1
                break
            held += len(data)
    for s in reading + idle:
        s.close()
    control.send({
        "inWindow": inWindow,
        "perSecond": perSecond,
        "arrivals": arrivals[: max(highest.values(), default=0) + 1],
        "everyReaderUpTo": min(highest.values(), default=0),
        "closed": closed,
        "stalledClosed": stalledClosed,
        "stalledHeld": held,
    })
