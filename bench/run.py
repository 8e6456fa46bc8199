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
        # A file, not a pipe: a pipe nobody reads would stop the daemon.
        log = tempfile.NamedTemporaryFile(prefix="jsonproto-bench-", suffix=".log", delete=False)
        self.logPath = log.name
        self.process = subprocess.Popen(
            [twistd, "--pidfile=", "-n", "jsonproto", *(options if "--port" in options else ("--port", "tcp:0:interface=127.0.0.1", *options))],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        self.port = int(self.waitFor(pattern).group(1))

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
    daemon = Daemon("--max-connections", "0", *port, *daemonOptions, pattern=rb"starting on (\d+)" if not tls else rb"\(TLS\) starting on (\d+)")
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
    daemon = Daemon("--max-connections", "0", "--idle-timeout", "0", "--send-timeout", "0")
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


SCENARIOS = ("throughput", "slow-readers", "soak", "fairness", "unfinished")


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
