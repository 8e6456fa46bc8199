"""
The load of the channel scenarios: subscriber processes and one publisher
process, and one measurement run of them against a started server.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import select
import selectors
import socket
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.daemon import loadOnCpu1
from bench.measures import treeSum, cpuPercent, cpuTicks, waitingSeconds


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


def _subscriberLoad(port: int, readers: int, stalled: int, control: Connection) -> None:
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


def _publication(n: int, stamp: float, pad: str) -> bytes:
    return b'{"type":"PUBLISH","channel":"%s","data":{"n":%d,"t":%.6f,"pad":"%s"}}\n' % (
        FANOUT_CHANNEL.encode(), n, stamp, pad.encode(),
    )


def _publisherLoad(port: int, control: Connection) -> None:
    """
    The publisher process: says C{"connected"}, takes a plan, publishes
    C{steady} publications at a steady C{rate} from C{start}, then keeps C{window}
    publications unanswered until C{end} (as fast as the server takes
    them), and sends back when it sent each publication (its data's C{t},
    by the wall clock) and how many replies were errors.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    control.send("connected")
    plan = control.recv()
    if plan == "stop":
        return
    pad = "p" * plan["pad"]
    # When each was sent, by the wall clock (as the subscribers' kernel
    # timestamps) and by the monotonic clock (as the plan).
    stamps: list[float] = [0.0]
    sent: list[float] = [0.0]
    replies = errors = 0
    buffer = b""

    def read(timeout: float) -> None:
        nonlocal replies, errors, buffer
        ready = select.select([s], [], [], max(0.0, timeout))[0]
        if ready:
            data = s.recv(262144)
            if not data:
                raise RuntimeError("the server closed the publisher")
            buffer += data
            complete, _, buffer = buffer.rpartition(b"\n")
            if complete:
                replies += complete.count(b"\n") + 1
                errors += complete.count(b'"ERROR"')

    monotonic = time.monotonic
    while monotonic() < plan["start"]:
        time.sleep(0.001)
    rate = plan["rate"]
    while len(stamps) <= plan["steady"]:
        due = plan["start"] + (len(stamps) - 1) / rate
        while monotonic() < due:
            read(due - monotonic())
        sent.append(monotonic())
        stamps.append(time.time())
        s.sendall(_publication(len(stamps) - 1, stamps[-1], pad))
    window, end = plan["window"], plan["end"]
    while monotonic() < plan["saturateStart"]:
        read(plan["saturateStart"] - monotonic())
    while monotonic() < end:
        outstanding = len(stamps) - 1 - replies
        if outstanding < window:
            now, wall = monotonic(), time.time()
            batch = []
            for _ in range(window - outstanding):
                sent.append(now)
                stamps.append(wall)
                batch.append(_publication(len(stamps) - 1, wall, pad))
            s.sendall(b"".join(batch))
        read(0.05)
    deadline = monotonic() + 10
    while replies < len(stamps) - 1 and monotonic() < deadline:
        read(deadline - monotonic())
    s.close()
    control.send({"stamps": stamps, "sent": sent, "replies": replies, "errors": errors})


def fanoutLoad(
    server: Any,
    subscribers: int,
    stalled: int = 0,
    processes: int = 4,
    rate: float = 10,
    steady: float = 3,
    window: int = 0,
    saturate: float = 0,
    pad: int = 50,
    watch: Any = None,
    pin: bool = True,
) -> dict[str, Any]:
    """
    One measurement against a started C{server}: C{subscribers} connections
    (C{stalled} of them never reading) in C{processes} load processes on
    CPU 1, one publisher publishing C{rate} a second for C{steady} seconds,
    then (with C{window}) as fast as the server answers, C{window} in
    flight, for C{saturate} seconds.  C{watch(elapsed)} is called every
    0.2 s meanwhile.

    @return: Deliveries per second at saturation, publish-to-last-delivery
        times at the steady rate, CPU of the server and of the load, and
        what the subscriber processes saw.
    """
    context = multiprocessing.get_context("fork")
    loads: list[tuple[Any, Connection]] = []
    publisher = None
    try:
        with loadOnCpu1() if pin else contextlib.nullcontext():
            for i in range(processes):
                mine, theirs = context.Pipe()
                share = subscribers // processes + (1 if i < subscribers % processes else 0)
                stall = stalled // processes + (1 if i < stalled % processes else 0)
                process = context.Process(target=_subscriberLoad, args=(server.port, share - stall, stall, theirs), daemon=True)
                process.start()
                loads.append((process, mine))
            for _, control in loads:
                said = control.recv() if control.poll(180) else "no answer in 180 s"
                if said != "subscribed":
                    raise RuntimeError(f"subscribers: {said}")
            mine, theirs = context.Pipe()
            publisher = (context.Process(target=_publisherLoad, args=(server.port, theirs), daemon=True), mine)
            publisher[0].start()
            if not mine.poll(30) or mine.recv() != "connected":
                raise RuntimeError("the publisher did not connect")
        start = time.monotonic() + 0.5
        steadyEnd = start + steady
        # A second between, for the last steady publications to arrive.
        saturateStart = steadyEnd + 1.0
        end = saturateStart + saturate
        measureFrom = saturateStart + min(1.0, saturate / 3)
        steadyCount = max(1, round(steady * rate))
        publisher[1].send({
            "start": start, "steady": steadyCount, "saturateStart": saturateStart, "end": end,
            "rate": rate, "window": window, "pad": pad,
        })
        for _, control in loads:
            control.send({"start": start, "end": end + 2, "window": (measureFrom, end), "tracked": steadyCount})
        ticks: dict[str, int] = {}
        waited: dict[str, float] = {}
        while time.monotonic() < end + 2:
            now = time.monotonic()
            if watch is not None:
                watch(now - start)
            for mark, at in (("from", measureFrom), ("to", end)):
                if mark not in ticks and now >= at:
                    ticks[mark] = treeSum(server.pid, cpuTicks)
                    waited[mark] = treeSum(server.pid, waitingSeconds)
                    ticks[mark + "Load"] = sum(cpuTicks(p.pid) for p, _ in loads) + cpuTicks(publisher[0].pid)
            time.sleep(0.2)
        results = [control.recv() if control.poll(60) else None for _, control in loads]
        published = publisher[1].recv() if publisher[1].poll(60) else None
        if published is None or None in results:
            raise RuntimeError("a load process did not report")
    finally:
        for process, control in loads + ([publisher] if publisher else []):
            with contextlib.suppress(OSError):
                control.send("stop")
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
    stamps, sent = published["stamps"], published["sent"]
    latencies, undelivered = [], 0
    for n in range(1, steadyCount + 1):
        last = 0.0
        for result in results:
            # Each reader has every publication up to the last it read.
            if result["everyReaderUpTo"] < n:
                last = -1.0
                break
            last = max(last, result["arrivals"][n])
        if last <= 0:
            undelivered += 1
        else:
            latencies.append(last - stamps[n])
    latencies.sort()
    seconds = end - measureFrom
    perSecond = [sum(r["perSecond"][i] for r in results) for i in range(len(results[0]["perSecond"]))]
    return {
        "deliveries_per_s": sum(r["inWindow"] for r in results) / seconds if saturate else 0.0,
        "publications_per_s": sum(1 for t in sent[1:] if measureFrom <= t < end) / seconds if saturate else 0.0,
        "latencies": latencies,
        "undelivered": undelivered,
        "steady": steadyCount,
        "server_cpu": cpuPercent(ticks["to"] - ticks["from"], seconds) if saturate else 0.0,
        "load_cpu": cpuPercent(ticks["toLoad"] - ticks["fromLoad"], seconds) if saturate else 0.0,
        "server_waiting": 100 * (waited["to"] - waited["from"]) / seconds if saturate else 0.0,
        "closed": sum(r["closed"] for r in results),
        "stalled_closed": sum(r["stalledClosed"] for r in results),
        "stalled_held": sum(r["stalledHeld"] for r in results),
        "per_second": perSecond[: int(steady)],
        "errors": published["errors"],
    }
