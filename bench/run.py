"""
jsonproto's benchmark: scenarios run against a freshly started daemon,
each reporting figures measured in the same run.

    make bench            # or: .venv/bin/python bench/run.py [--quick]

Writes a Markdown table to bench/results.md and prints it.  Every loop is
bounded in count and time, and all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenarios, for a smoke test")
    parser.add_argument("--output", default=os.path.join(HERE, "results.md"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    seconds = ["--duration", "1" if args.quick else "4", "--warmup", "0.5" if args.quick else "1"]
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
            throughput("2,000 connections", [], ["--conns", "200" if args.quick else "2000", "--pipeline", "1", *seconds]),
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
    for scenario in (
        lambda: slowReaders(10 if args.quick else 100, 1 << 20 if args.quick else 8 << 20, 10 if args.quick else 30),
        lambda: soak(500 if args.quick else 10_000),
    ):
        rows.extend(scenario())
    header = [
        "# jsonproto benchmark results",
        "",
        f"CPU: {cpuName()} ({os.cpu_count()} cores); Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Server on CPU 0, `jsonproto bench` on CPU 1; "
        "figures from one run move 5-25% on a shared machine: compare ratios from the same run.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    text = "\n".join(header + [f"| {k} | {v} |" for k, v in rows]) + "\n"
    print(text)
    with open(args.output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
