"""
jsonproto's benchmark: scenarios run against a freshly started daemon,
each reporting figures measured in the same run.

    make bench            # or: .venv/bin/python bench/run.py [--quick]
    .venv/bin/python bench/run.py --only fairness --only unfinished

Writes a Markdown table to bench/results.md and prints it (with C{--only},
prints it and writes it only to an explicit C{--output}).  Every loop is
bounded in count and time, and all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import multiprocessing
import os
import platform
import re
import resource
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def cpuName() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rssKiB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


def cpuTicks(pid: int) -> int:
    """
    User plus system CPU time of a whole process (all its threads), in
    clock ticks (C{os.sysconf("SC_CLK_TCK")} a second).
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def waitingSeconds(pid: int) -> float:
    """
    How long the main thread of C{pid} has been ready to run but waiting for
    a CPU (other processes had it): on a shared machine, this tells a server
    short of CPU from a server with nothing to do.
    """
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def cpuPercent(ticks: int, seconds: float) -> float:
    return 100 * ticks / os.sysconf("SC_CLK_TCK") / seconds if seconds > 0 else 0.0


def unreadBytes(port: int) -> int:
    """
    Bytes that have reached the server's sockets on C{port} but that the
    server has not read yet: the kernel's receive queues, from
    /proc/net/tcp.  Zero means the server has taken everything sent to it.
    """
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.rsplit(":", 1)[1], 16) == port and state != "0A":  # 0A: listening
                total += int(queues.split(":")[1], 16)
    return total


def percentile(ordered: list[float], p: float) -> float:
    """
    The C{p}th percentile of sorted samples, by the rule C{jsonproto bench}
    uses (so that figures from both compare).
    """
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def openSockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


class Daemon:
    """
    A twistd jsonproto started for one scenario, on a free port.
    """

    def __init__(self, *options: str, pattern: bytes = rb"JSONServerFactory starting on (\d+)") -> None:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self._start([twistd, "--pidfile=", "-n", "jsonproto", *(options if "--port" in options else ("--port", "tcp:0:interface=127.0.0.1", *options))])
        self.port = int(self.waitFor(pattern).group(1))

    def _start(self, argv: list[str]) -> None:
        # A file, not a pipe: a pipe nobody reads would stop the server.
        log = tempfile.NamedTemporaryFile(prefix="jsonproto-bench-", suffix=".log", delete=False)
        self.logPath = log.name
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()

    def waitFor(self, pattern: bytes, seconds: float = 30) -> re.Match[bytes]:
        end = time.monotonic() + seconds
        while True:
            with open(self.logPath, "rb") as f:
                log = f.read()
            match = re.search(pattern, log)
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the daemon did not log {pattern!r}:\n{log.decode(errors='replace')[-2000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.unlink(self.logPath)


def _pin(pid: int, cpu: int) -> None:
    # Server and load generator on different cores, where there are two.
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


@contextlib.contextmanager
def _loadOnCpu1() -> Iterator[None]:
    """
    Run this process (the load of scenarios that generate it themselves, and
    every process it forks) on CPU 1 for a while, as C{jsonproto bench} runs.
    """
    if (os.cpu_count() or 1) < 2:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def _freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def throughput(
    name: str, daemonOptions: list[str], clientOptions: list[str], tls: str | None = None, pin: bool = True
) -> dict[str, Any]:
    """
    One jsonproto bench run against a fresh daemon, server on CPU 0 and the
    client on CPU 1 (unless C{pin} is false: then both float over every core).
    """
    if tls:
        port = ["--port", f"jsonproto-tls:0:interface=127.0.0.1:privateKey={tls}"]
    elif "--workers" in daemonOptions:
        # Workers share one port, which must be fixed in advance.
        port = ["--port", f"tcp:{_freePort()}:interface=127.0.0.1"]
    else:
        port = []
    # All the load comes from 127.0.0.1: the per-address bound is off.
    daemon = Daemon("--max-connections", "0", "--max-connections-per-ip", "0", *port, *daemonOptions, pattern=rb"starting on (\d+)" if not tls else rb"\(TLS\) starting on (\d+)")
    try:
        if pin:
            _pin(daemon.pid, 0)
        endpoint = f"tls:localhost:{daemon.port}" if tls else f"127.0.0.1:{daemon.port}"
        command = [os.path.join(os.path.dirname(sys.executable), "jsonproto"), "bench", endpoint, "--json", *clientOptions]
        if "--workers" not in daemonOptions:
            # With workers the daemon's own process only supervises.
            command += ["--server-pid", str(daemon.pid)]
        if tls:
            command += ["--ca", tls]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=300, preexec_fn=(lambda: _pin(0, 1)) if pin else None
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name}: jsonproto bench failed: {result.stderr.strip()}")
        summary = json.loads(result.stdout)
        summary["name"] = name
        return summary
    finally:
        daemon.stop()


def slowReaders(clients: int, perClientBytes: int, seconds: float) -> list[tuple[str, str]]:
    """
    Many clients pipeline requests and never read.  The server should stop
    reading from each once its replies back up, so its memory stays flat.
    """
    daemon = Daemon("--max-connections", "0", "--max-connections-per-ip", "0", "--idle-timeout", "0", "--send-timeout", "0")
    try:
        before = rssKiB(daemon.pid)
        request = b'{"type":"SUM","a":1,"b":2}\n' * 2048
        sockets = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", daemon.port))
            s.setblocking(False)
            sockets.append([s, 0])
        peak = before
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            progress = False
            for entry in sockets:
                s, sent = entry
                if sent >= perClientBytes:
                    continue
                try:
                    n = s.send(request)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        continue
                    raise
                entry[1] += n
                progress = True
            peak = max(peak, rssKiB(daemon.pid))
            if not progress:
                # Every client is blocked: the server has stopped reading.
                time.sleep(0.2)
                if all(select.select([], [e[0]], [], 0)[1] == [] for e in sockets[:5]):
                    break
        sent = sum(e[1] for e in sockets)
        peak = max(peak, rssKiB(daemon.pid))
        for s, _ in sockets:
            s.close()
        return [
            ("slow readers: clients", str(clients)),
            ("slow readers: requests sent, not read (MiB)", f"{sent / 2**20:.1f}"),
            ("slow readers: server RSS before (MiB)", f"{before / 1024:.1f}"),
            ("slow readers: server peak RSS (MiB)", f"{peak / 1024:.1f}"),
            ("slow readers: peak growth per client (KiB)", f"{(peak - before) / clients:.0f}"),
        ]
    finally:
        daemon.stop()


def soak(cycles: int) -> list[tuple[str, str]]:
    """
    Connect, request, close, many times over: nothing may leak.
    """
    daemon = Daemon()
    try:
        request = b'{"type":"SUM","a":10,"b":20}\n'

        def cycle() -> None:
            with socket.create_connection(("127.0.0.1", daemon.port)) as s:
                s.sendall(request)
                reply = s.makefile("rb").readline()
                assert json.loads(reply)["result"] == 30, reply

        for _ in range(200):  # warm up allocators and caches
            cycle()
        before = rssKiB(daemon.pid)
        started = time.monotonic()
        for _ in range(cycles):
            cycle()
        elapsed = time.monotonic() - started
        # The server closes its side once it sees ours close; give the last
        # few closes a moment, boundedly.
        for _ in range(50):
            if openSockets(daemon.pid) <= 1:
                break
            time.sleep(0.1)
        after = rssKiB(daemon.pid)
        return [
            ("soak: connect/request/close cycles", str(cycles)),
            ("soak: cycles per second", f"{cycles / elapsed:.0f}"),
            ("soak: server RSS before / after (MiB)", f"{before / 1024:.1f} / {after / 1024:.1f}"),
            ("soak: open connections afterwards", str(openSockets(daemon.pid) - 1)),
        ]
    finally:
        daemon.stop()


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


class NodeServer(Daemon):
    """
    bench/node_fanout.js on a free port, for the fan-out beside jsonproto.
    """

    def __init__(self) -> None:
        self.port = _freePort()
        self._start(["node", os.path.join(HERE, "node_fanout.js"), str(self.port)])
        self.waitFor(rb"listening")


def _processTree(pid: int) -> list[int]:
    """
    C{pid} and its children (a supervisor's workers), for their CPU time.
    """
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    return pids


def _treeSum(pid: int, measure: Any) -> Any:
    """
    C{measure(p)} summed over a process and its children (a figure of a
    process that went away meanwhile counts nothing).
    """
    total = 0
    for p in _processTree(pid):
        with contextlib.suppress(OSError):
            total += measure(p)
    return total


def _channelMetrics(port: int) -> dict[str, float]:
    """
    A daemon's channel metrics (and its closes by reason), scraped once.
    """
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith(("jsonproto_channels_", "jsonproto_server_closes_total")):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _fanoutLoad(
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
        with _loadOnCpu1() if pin else contextlib.nullcontext():
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
                    ticks[mark] = _treeSum(server.pid, cpuTicks)
                    waited[mark] = _treeSum(server.pid, waitingSeconds)
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


def _jsonprotoChannels(*options: str) -> Daemon:
    return Daemon("--channels", "--max-connections", "0", "--max-connections-per-ip", "0", *options)


def _redisServer() -> tuple[subprocess.Popen[bytes], int] | str:
    """
    A redis-server of this run's own on a free port, or why there is none.
    """
    import shutil

    if shutil.which("redis-server") is None:
        return "no redis-server on PATH"
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    usage = subprocess.run([twistd, "jsonproto", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    if "--redis" not in usage:
        return "this jsonproto has no --redis option"
    port = _freePort()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith(b"+PONG"):
                return process, port
        time.sleep(0.05)
    process.kill()
    process.wait()
    return "redis-server did not answer"


class _Workers:
    """
    twistd jsonproto --channels --workers 2 --redis, once every worker
    listens.
    """

    def __init__(self, redisPort: int) -> None:
        port = _freePort()
        self.daemon = _jsonprotoChannels(
            "--workers", "2", "--redis", f"tcp:127.0.0.1:{redisPort}", "--port", f"tcp:{port}:interface=127.0.0.1",
        )
        self.port = port
        end = time.monotonic() + 30
        while open(self.daemon.logPath, "rb").read().count(b"starting on") < 2:
            if self.daemon.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the workers did not start listening")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def stop(self) -> None:
        self.daemon.stop()


def _label(sample: str) -> str:
    """
    The value of the one label of a sample's name: C{x{reason="idle"}}, C{idle}.
    """
    return sample.split('"')[1] if '"' in sample else sample


def _fanoutRow(name: str, run: dict[str, Any]) -> list[tuple[str, str]]:
    times = run["latencies"]
    latency = (
        f"{percentile(times, 50) * 1e3:,.1f} / {percentile(times, 99) * 1e3:,.1f}" if times else "-"
    ) + (f" ({run['undelivered']} of {run['steady']} not delivered to all)" if run["undelivered"] else "")
    bound = " (load-bound)" if run["server_cpu"] < 85 and run["load_cpu"] > 90 else ""
    return [
        (f"{name}: deliveries/s{bound}", f"{run['deliveries_per_s']:,.0f}"),
        (f"{name}: publications/s / server CPU, server waiting for a CPU, load CPU (%) / subscribers closed",
         f"{run['publications_per_s']:,.0f} / {run['server_cpu']:.0f}, {run['server_waiting']:.0f}, {run['load_cpu']:.0f} / {run['closed']}"),
        (f"{name}: publish-to-last-delivery p50 / p99 (ms) at {run['rate']:g} publications/s", latency),
    ]


def fanout(quick: bool, rounds: int = 2) -> list[tuple[str, str]]:
    """
    One publisher fanning out to 1,000 and to 10,000 subscribers of one
    channel: jsonproto (every limit on but the connection counts) beside
    bench/node_fanout.js, interleaved, C{rounds} times; then jsonproto with
    C{--workers 2} and Redis, when a redis-server is at hand and jsonproto
    has C{--redis}.

    Deliveries per second are measured with the publisher keeping 16
    publications in flight (as fast as the server answers); latency at a
    steady rate that either server keeps up with (100,000 deliveries/s).
    """
    rows: list[tuple[str, str]] = []
    seconds = 2.0 if quick else 4.0
    sizes = (1_000, 2_000) if quick else (1_000, 10_000)
    for subscribers in sizes:
        rate = 100_000 / subscribers
        figures: dict[str, list[float]] = {"jsonproto": [], "node": []}
        for round_ in range(1, rounds + 1):
            for kind in ("jsonproto", "node"):
                server = _jsonprotoChannels() if kind == "jsonproto" else NodeServer()
                try:
                    _pin(server.pid, 0)
                    run = _fanoutLoad(server, subscribers, rate=rate, steady=seconds, window=16, saturate=seconds)
                finally:
                    server.stop()
                run["rate"] = rate
                figures[kind].append(run["deliveries_per_s"])
                label = "jsonproto --channels" if kind == "jsonproto" else "node_fanout.js"
                rows += _fanoutRow(f"fan-out to {subscribers:,}, {label}, round {round_}", run)
            rows.append((
                f"fan-out to {subscribers:,}, round {round_}: jsonproto / node deliveries/s",
                f"{figures['jsonproto'][-1] / figures['node'][-1]:.2f}x" if figures["node"][-1] else "-",
            ))
    redis = _redisServer()
    if isinstance(redis, str):
        rows.append(("fan-out, --workers 2 with Redis", f"not run: {redis}"))
        return rows
    process, redisPort = redis
    try:
        for subscribers in sizes:
            rate = 100_000 / subscribers
            server = _Workers(redisPort)
            try:
                run = _fanoutLoad(server, subscribers, rate=rate, steady=seconds, window=16, saturate=seconds, pin=False)
            finally:
                server.stop()
            run["rate"] = rate
            rows += _fanoutRow(f"fan-out to {subscribers:,}, jsonproto --workers 2 --redis, unpinned", run)
    finally:
        process.terminate()
        process.wait()
    return rows


def _slowSubscribersRun(subscribers: int, stalled: int, policy: str, queued: int, seconds: float) -> dict[str, Any]:
    """
    One run of L{slowSubscribers}: the load's figures, the daemon's RSS and
    its channel metrics, scraped two seconds before the publisher stops.
    """
    metricsPort = _freePort()
    daemon = _jsonprotoChannels(
        "--max-queued-bytes", str(queued), "--slow-subscriber", policy, "--metrics", f"tcp:{metricsPort}:interface=127.0.0.1",
    )
    rss: dict[str, int] = {}
    scraped: dict[str, dict[str, float]] = {}

    def watch(elapsed: float) -> None:
        now = rssKiB(daemon.pid)
        rss.setdefault("before", now)
        rss["peak"] = max(rss.get("peak", 0), now)
        if elapsed < seconds:
            rss["during"] = now
        if elapsed >= seconds - 2 and "during" not in scraped:
            scraped["during"] = _channelMetrics(metricsPort)

    try:
        _pin(daemon.pid, 0)
        run = _fanoutLoad(daemon, subscribers, stalled=stalled, rate=10, steady=seconds, pad=4000, watch=watch)
        # The disconnected ones are let go after the close grace period (5 s).
        time.sleep(6)
        rss["after"] = rssKiB(daemon.pid)
        scraped["after"] = _channelMetrics(metricsPort)
    finally:
        daemon.stop()
    return {**run, "rss": rss, "metrics": scraped}


def slowSubscribers(quick: bool) -> list[tuple[str, str]]:
    """
    10,000 subscribers of one channel, 10 of which never read, while a
    publisher publishes 10 publications of 4 KB a second: the 9,990 must
    keep receiving every publication at that rate, and the daemon's memory
    must stay within what the bounds allow, under each slow-subscriber
    policy.  A run with no stalled subscriber gives the growth of the
    daemon's memory that is not theirs (the channel's history, the
    allocator).

    The expected bound on the rest: for each stalled subscriber, its
    outbox (C{--max-queued-bytes}; the frames are shared with every other
    subscriber's, so this counts them more than once) and its transport's
    buffer (64 KiB before it pauses the outbox, plus the one write that
    took it past that: one turn's publications, a publication or two here).
    The kernel's socket buffers are not the daemon's RSS.
    """
    subscribers, stalled = (2_000, 4) if quick else (10_000, 10)
    queued = 256 * 1024
    seconds = 12 if quick else 30
    control = _slowSubscribersRun(subscribers, 0, "disconnect", queued, seconds)
    baseline = (control["rss"]["peak"] - control["rss"]["before"]) * 1024
    bound = stalled * (queued + 64 * 1024 + 2 * 4096)
    readers = subscribers - stalled
    rows: list[tuple[str, str]] = [(
        f"slow subscribers: none of {subscribers:,} stalled (the control): daemon RSS before / peak / after (MiB)",
        f"{control['rss']['before'] / 1024:.1f} / {control['rss']['peak'] / 1024:.1f} / {control['rss']['after'] / 1024:.1f}",
    )]
    for policy in ("disconnect", "drop"):
        run = _slowSubscribersRun(subscribers, stalled, policy, queued, seconds)
        rss, during, after = run["rss"], run["metrics"]["during"], run["metrics"]["after"]
        steadySeconds = run["per_second"][1:]  # the first second starts part-way
        growth = (rss["peak"] - rss["before"]) * 1024 - baseline
        name = f"slow subscribers ({stalled} of {subscribers:,} never read, --slow-subscriber {policy}, --max-queued-bytes {queued:,})"
        closes = ", ".join(
            f"{_label(k)} {v:.0f}" for k, v in sorted(after.items()) if k.startswith("jsonproto_server_closes_total")
        )
        rows += [
            (f"{name}: readers' deliveries/s, expected / lowest second / highest second",
             f"{readers * 10:,.0f} / {min(steadySeconds):,} / {max(steadySeconds):,}"),
            (f"{name}: publications not delivered to every reader / readers closed", f"{run['undelivered']} of {run['steady']} / {run['closed']}"),
            (f"{name}: publish-to-last-delivery p50 / p99 (ms) at 10 publications/s",
             f"{percentile(run['latencies'], 50) * 1e3:,.1f} / {percentile(run['latencies'], 99) * 1e3:,.1f}" if run["latencies"] else "-"),
            (f"{name}: near the end: slow subscribers / queued bytes / dropped so far / disconnected so far",
             f"{during.get('jsonproto_channels_slow_subscribers', 0):.0f} / {during.get('jsonproto_channels_queued_bytes', 0):,.0f} / "
             f"{during.get('jsonproto_channels_dropped_total', 0):,.0f} / {during.get('jsonproto_channels_slow_disconnects_total', 0):.0f}"),
            (f"{name}: closes by reason, by the end", closes or "none"),
            (f"{name}: daemon RSS before / during / peak / after (MiB)",
             f"{rss['before'] / 1024:.1f} / {rss['during'] / 1024:.1f} / {rss['peak'] / 1024:.1f} / {rss['after'] / 1024:.1f}"),
            (f"{name}: peak growth less the control's / expected bound (MiB)",
             f"{growth / 2**20:.1f} / {bound / 2**20:.1f}: {'within' if growth <= bound else 'EXCEEDED'}"),
        ]
    return rows


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


def _serve(s: socket.socket, events: int, outgoing: memoryview) -> tuple[bytes, int, bool]:
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


def _flood(port: int, count: int, request: bytes, control: Connection) -> None:
    """
    The flooders, in a process of their own: C{count} connections, each
    keeping its send buffer full of C{request}s and reading and discarding
    every reply (so the server is never paused by backpressure).  Over
    C{control} they say C{"connected"}, wait for C{"go"}, flood until told
    C{"stop"} (or for a minute at most), then report what they saw.
    """
    chunk = memoryview(request * max(1, 65536 // len(request)))  # whole requests only
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        sockets.append(s)
    control.send("connected")
    if control.recv() != "go":
        return
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    offsets = {}
    for s in sockets:
        selector.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        offsets[s] = 0
    replies = closed = 0
    started = time.monotonic()
    running = True
    while running and time.monotonic() < started + 60:
        for key, events in selector.select(1):
            if key.fileobj is control:
                running = False
                break
            s = key.fileobj
            data, sent, over = _serve(s, events, chunk[offsets[s]:])
            offsets[s] = (offsets[s] + sent) % len(chunk)
            replies += data.count(b"\n")
            if over:  # the server closed it
                closed += 1
                selector.unregister(s)
                s.close()
    seconds = time.monotonic() - started
    for s in sockets:
        s.close()
    control.send({"replies": replies, "closed": closed, "seconds": seconds})


def _fairnessRun(request: bytes, flooders: int, seconds: float, warmup: float, probeTimeout: float) -> dict[str, Any]:
    """
    One probe measured against a fresh daemon while C{flooders} connections
    flood it with C{request}s.
    """
    daemon = Daemon(
        "--max-connections", "0",
        "--max-connections-per-ip", str(flooders + 1),
        "--max-errors", "0",
        "--send-timeout", "0",
    )
    load = None
    stopped = False
    try:
        _pin(daemon.pid, 0)
        listening = openSockets(daemon.pid)
        if flooders:
            control, theirs = multiprocessing.get_context("fork").Pipe()
            load = multiprocessing.get_context("fork").Process(
                target=_flood, args=(daemon.port, flooders, request, theirs), daemon=True
            )
            load.start()
            if not control.poll(30) or control.recv() != "connected":
                raise RuntimeError(f"{flooders} flooders did not connect")
        probe = Probe(daemon.port, probeTimeout)
        if probe.roundTrip() is None:
            raise RuntimeError(f"the probe got no first reply: {probe.failure}")
        for _ in range(200):
            if openSockets(daemon.pid) >= listening + flooders + 1:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the daemon did not accept all {flooders} flooders")
        if load:
            control.send("go")
            time.sleep(warmup)
        samples: list[float] = []
        peak = rssKiB(daemon.pid)
        daemonTicks, daemonWaiting = cpuTicks(daemon.pid), waitingSeconds(daemon.pid)
        loadTicks = cpuTicks(load.pid) if load else 0
        started = lastLook = time.monotonic()
        # The request in flight when the period ends is still waited for.
        while len(samples) < 100_000:
            elapsed = probe.roundTrip()
            if elapsed is None:
                break
            samples.append(elapsed)
            now = time.monotonic()
            if now - lastLook > 0.05:
                peak, lastLook = max(peak, rssKiB(daemon.pid)), now
            if now >= started + seconds:
                break
        elapsed = time.monotonic() - started
        run: dict[str, Any] = {
            "samples": sorted(samples),
            "failure": probe.failure,
            "daemon_cpu": cpuPercent(cpuTicks(daemon.pid) - daemonTicks, elapsed),
            "daemon_waiting": 100 * (waitingSeconds(daemon.pid) - daemonWaiting) / elapsed,
            "load_cpu": cpuPercent(cpuTicks(load.pid) - loadTicks, elapsed) if load else 0.0,
            "peak_rss_mib": max(peak, rssKiB(daemon.pid)) / 1024,
            "flood": {"replies": 0, "closed": 0, "seconds": 1.0},
        }
        probe.close()
        if load:
            control.send("stop")
            stopped = True
            if control.poll(30):
                run["flood"] = control.recv()
        return run
    finally:
        if load:
            if not stopped:
                with contextlib.suppress(OSError):
                    control.send("stop")
            load.join(10)
            if load.is_alive():
                load.kill()
                load.join()
        daemon.stop()


def fairness(seconds: float, warmup: float, probeTimeout: float = 5.0) -> list[tuple[str, str]]:
    """
    A probe's reply times while 0, 8, 32 and 128 connections flood the
    daemon as fast as it reads, with valid requests and with cheap invalid
    ones.  Fair turns keep the probe's times near the baseline's.
    """
    rows = []
    with _loadOnCpu1():
        for variant, request in (("valid SUM", PROBE_REQUEST), ("invalid `x`", b"x\n")):
            for flooders in (0, 8, 32, 128):
                run = _fairnessRun(request, flooders, seconds, warmup, probeTimeout)
                name = f"fairness, {variant} floods, {flooders} flooders" + (" (baseline)" if not flooders else "")
                samples = run["samples"]
                times = f"{percentile(samples, 50) * 1e3:,.1f} / {percentile(samples, 99) * 1e3:,.1f}" if samples else "-"
                if run["failure"]:
                    times = f"probe failed: {run['failure']} (replies before it: {times})"
                bound = " (load-bound)" if run["load_cpu"] > run["daemon_cpu"] else ""
                flood = run["flood"]
                rows.append((f"{name}: probe p50 / p99 reply time (ms)", times))
                rows.append((
                    f"{name}: probe replies / flood replies per s / flooders closed / "
                    f"daemon CPU, daemon waiting for a CPU, flooders CPU (%){bound} / daemon peak RSS (MiB)",
                    f"{len(samples):,} / {flood['replies'] / flood['seconds']:,.0f} / {flood['closed']} / "
                    f"{run['daemon_cpu']:.0f}, {run['daemon_waiting']:.0f}, {run['load_cpu']:.0f} / {run['peak_rss_mib']:.0f}",
                ))
    return rows


def unfinishedMessages(clients: int, size: int = 1 << 20, seconds: float = 60) -> list[tuple[str, str]]:
    """
    Many connections each send most of a long message, never finish it, and
    stay open.  The daemon should refuse those past its budget for
    unfinished messages, keep its memory bounded, and go on answering
    others.
    """
    daemon = Daemon(
        "--max-connections", "0",
        "--max-connections-per-ip", str(clients + 2),
        "--max-message-size", str(2 * size),
        "--message-timeout", "0",
        "--idle-timeout", "0",
    )
    sockets: list[socket.socket] = []
    try:
        with _loadOnCpu1():
            _pin(daemon.pid, 0)
            probe = Probe(daemon.port, 10)
            if probe.roundTrip() is None:
                raise RuntimeError(f"the probe got no first reply: {probe.failure}")
            before = peak = rssKiB(daemon.pid)
            prefix = b'{"type":"GREETING","name":"'
            line = memoryview(prefix + b"x" * (size - len(prefix)))  # a JSON string, no newline
            selector = selectors.DefaultSelector()
            sent: dict[socket.socket, int] = {}
            outcome: dict[socket.socket, str] = {}  # "error reply", "other reply" or "closed"
            for _ in range(clients):
                s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
                s.setblocking(False)
                sockets.append(s)
                selector.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
                sent[s] = 0
            started = time.monotonic()
            sendSeconds = None
            unread, unreadSince = -1, started
            while time.monotonic() < started + seconds:
                if sendSeconds is None and all(n == size or s in outcome for s, n in sent.items()):
                    sendSeconds = time.monotonic() - started
                if sendSeconds is not None:
                    # Wait until the server has read it all, or has stopped
                    # reading (for two seconds) what it left.
                    now, left = time.monotonic(), unreadBytes(daemon.port)
                    if left != unread:
                        unread, unreadSince = left, now
                    if left == 0 or now > unreadSince + 2:
                        break
                for key, events in selector.select(0.1):
                    s = key.fileobj  # type: ignore[assignment]
                    data, n, over = _serve(s, events, line[sent[s]:])
                    sent[s] += n
                    if data:
                        outcome.setdefault(s, "error reply" if b'"ERROR"' in data else "other reply")
                    if over:
                        outcome.setdefault(s, "closed")
                        selector.unregister(s)
                    elif n and sent[s] == size:
                        selector.modify(s, selectors.EVENT_READ)
                peak = max(peak, rssKiB(daemon.pid))
            unread = unreadBytes(daemon.port)
            after = rssKiB(daemon.pid)
            answered = probe.roundTrip()
            newcomer = Probe(daemon.port, 10)
            newAnswered = newcomer.roundTrip()
            newcomer.close()
            probe.close()
    finally:
        for s in sockets:
            s.close()
        daemon.stop()
    refusals = list(outcome.values())

    def reply(elapsed: float | None, p: Probe) -> str:
        return f"yes, {elapsed * 1e3:,.1f}" if elapsed is not None else f"no: {p.failure}"

    return [
        ("unfinished messages: connections x unfinished line (MiB)", f"{clients} x {size / 2**20:g}"),
        ("unfinished messages: seconds to send them all", f"{sendSeconds:.1f}" if sendSeconds is not None else f"not all sent in {seconds:g}"),
        (
            "unfinished messages: refused with an error reply / closed without one / answered otherwise / held",
            f"{refusals.count('error reply')} / {refusals.count('closed')} / {refusals.count('other reply')} / {clients - len(refusals)}",
        ),
        ("unfinished messages: sent, not yet read by the server when measured (MiB)", f"{unread / 2**20:.1f}"),
        ("unfinished messages: server RSS before / after / peak (MiB)", f"{before / 1024:.1f} / {after / 1024:.1f} / {peak / 1024:.1f}"),
        ("unfinished messages: server RSS growth (MiB)", f"{(after - before) / 1024:.1f}"),
        ("unfinished messages: probe connected before answered, reply time (ms)", reply(answered, probe)),
        ("unfinished messages: new connection answered, reply time (ms)", reply(newAnswered, newcomer)),
    ]


def realistic(quick: bool, rounds: int = 2) -> list[tuple[str, str]]:
    """
    The reading of L{bench.realistic} (about 200 bytes: floats, a nested
    object, a list, non-ASCII text), answered by a typed handler and by the
    same handler untyped, in ping-pong and pipelined, interleaved
    C{rounds} times; what the checks cost a message is the difference of
    the server's CPU per reply between the two.
    """
    seconds = ["--duration", "1" if quick else "4", "--warmup", "0.5" if quick else "1"]
    sys.path.insert(0, REPO)
    from bench.realistic import MESSAGES

    rows: list[tuple[str, str]] = []
    perReply: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(1, rounds + 1):
            for mode, pipeline in (("ping-pong, 50 connections", "1"), ("pipelined, 50 x 64", "64")):
                for kind, message in MESSAGES.items():
                    path = os.path.join(work, f"{kind}.json")
                    with open(path, "wb") as f:
                        f.write(message)
                    name = f"realistic {kind}, {mode}, round {round_}"
                    run = throughput(
                        name, ["--handlers", "bench.realistic"], ["--conns", "50", "--pipeline", pipeline, "--message-file", path, *seconds]
                    )
                    bound = " (client-bound)" if run.get("client_bound") else ""
                    rows.append((f"{name}: requests/s{bound}", f"{run['rps']:,.0f}"))
                    rows.append((f"{name}: p50 / p99 latency (us)", f"{run['p50_us']:,.0f} / {run['p99_us']:,.0f}"))
                    if run.get("server_cpu_s") and run.get("replies"):
                        perReply.setdefault((mode, kind), []).append(1e6 * run["server_cpu_s"] / run["replies"])
    for mode in ("ping-pong, 50 connections", "pipelined, 50 x 64"):
        typed, untyped = perReply.get((mode, "typed")), perReply.get((mode, "untyped"))
        if typed and untyped:
            rows.append((
                f"realistic, {mode}: server CPU per reply, typed / untyped (us); the checks' cost",
                f"{min(typed):.2f} / {min(untyped):.2f}; {min(typed) - min(untyped):.2f} us a message",
            ))
    return rows


def throughputScenarios(quick: bool) -> list[tuple[str, str]]:
    """
    The standard C{jsonproto bench} runs, and the ratios between them.
    """
    seconds = ["--duration", "1" if quick else "4", "--warmup", "0.5" if quick else "1"]
    with tempfile.TemporaryDirectory() as work:
        big = os.path.join(work, "big.json")
        with open(big, "w") as f:
            json.dump({"type": "GREETING", "name": "x" * 204800}, f)
        key = os.path.join(work, "key.pem")
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "jsonproto"), "cert", "localhost", "127.0.0.1", "-o", key], check=True, capture_output=True)
        runs = [
            throughput("ping-pong, 50 connections", [], ["--conns", "50", "--pipeline", "1", *seconds]),
            throughput("pipelined, 50 x 64", [], ["--conns", "50", "--pipeline", "64", *seconds]),
            throughput("int32 pipelined, 50 x 64", ["--framing", "int32"], ["--conns", "50", "--pipeline", "64", "--framing", "int32", *seconds]),
            throughput("2,000 connections", [], ["--conns", "200" if quick else "2000", "--pipeline", "1", *seconds]),
            throughput("200 KiB messages, 10 connections", [], ["--conns", "10", "--pipeline", "1", "--message-file", big, *seconds]),
            throughput("TLS pipelined, 50 x 64", [], ["--conns", "50", "--pipeline", "64", *seconds], tls=key),
            throughput("pipelined, --workers 1, unpinned", [], ["--conns", "50", "--pipeline", "64", *seconds], pin=False),
            throughput("pipelined, --workers 2, unpinned", ["--workers", "2"], ["--conns", "50", "--pipeline", "64", *seconds], pin=False),
        ]
    rows: list[tuple[str, str]] = []
    for run in runs:
        bound = " (client-bound)" if run.get("client_bound") else ""
        rows.append((f"{run['name']}: requests/s{bound}", f"{run['rps']:,.0f}"))
        rows.append((f"{run['name']}: p50 / p99 / p99.9 latency (us)", f"{run['p50_us']:,.0f} / {run['p99_us']:,.0f} / {run['p999_us']:,.0f}"))
    rows.append(("TLS pipelined / plain pipelined", f"{runs[5]['rps'] / runs[1]['rps']:.2f}x"))
    rows.append((
        "--workers 2 / --workers 1 (2 cores, the load generator on them too)",
        f"{runs[7]['rps'] / runs[6]['rps']:.2f}x",
    ))
    return rows


SCENARIOS = ("throughput", "realistic", "slow-readers", "soak", "fairness", "unfinished", "fanout", "slow-subscribers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenarios, for a smoke test")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, metavar="SCENARIO",
        help=f"run only this scenario (may be given more than once): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--output", help="where to write the table [default: bench/results.md, unless --only]")
    args = parser.parse_args()
    output = args.output or (None if args.only else os.path.join(HERE, "results.md"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    scenarios = {
        "throughput": lambda: throughputScenarios(args.quick),
        "slow-readers": lambda: slowReaders(10 if args.quick else 100, 1 << 20 if args.quick else 8 << 20, 10 if args.quick else 30),
        "soak": lambda: soak(500 if args.quick else 10_000),
        "fairness": lambda: fairness(seconds=1 if args.quick else 3, warmup=0.5),
        "unfinished": lambda: unfinishedMessages(50 if args.quick else 300),
        "fanout": lambda: fanout(args.quick),
        "realistic": lambda: realistic(args.quick),
        "slow-subscribers": lambda: slowSubscribers(args.quick),
    }
    rows: list[tuple[str, str]] = []
    for name in SCENARIOS:
        if not args.only or name in args.only:
            rows.extend(scenarios[name]())
    header = [
        "# jsonproto benchmark results",
        "",
        f"CPU: {cpuName()} ({os.cpu_count()} cores); Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Server on CPU 0, the load (`jsonproto bench`, "
        "or this script's own clients) on CPU 1; "
        "figures from one run move 5-25% on a shared machine: compare ratios from the same run.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    text = "\n".join(header + [f"| {k} | {v} |" for k, v in rows]) + "\n"
    print(text)
    if output:
        with open(output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
