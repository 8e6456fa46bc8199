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
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

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

    def __init__(self, *options: str) -> None:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        # A file, not a pipe: a pipe nobody reads would stop the daemon.
        log = tempfile.NamedTemporaryFile(prefix="jsonproto-bench-", suffix=".log", delete=False)
        self.logPath = log.name
        self.process = subprocess.Popen(
            [twistd, "--pidfile=", "-n", "jsonproto", "--port", "tcp:0:interface=127.0.0.1", *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        self.port = int(self.waitFor(rb"JSONServerFactory starting on (\d+)").group(1))

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
    scenarios: list[Callable[[], list[tuple[str, str]]]] = [
        lambda: slowReaders(10 if args.quick else 100, 1 << 20 if args.quick else 8 << 20, 10 if args.quick else 30),
        lambda: soak(500 if args.quick else 10_000),
    ]
    rows: list[tuple[str, str]] = []
    for scenario in scenarios:
        rows.extend(scenario())
    header = [
        "# jsonproto benchmark results",
        "",
        f"CPU: {cpuName()} ({os.cpu_count()} cores); Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
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
