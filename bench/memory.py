"""
The daemon's memory under clients that never read, and over many
connect/request/close cycles.
"""

from __future__ import annotations

import errno
import json
import select
import socket
import time

from bench.daemon import Daemon
from bench.measures import openSockets, rssKiB


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
