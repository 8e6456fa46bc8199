"""
Many connections each sending most of a long message and never finishing
it.
"""

from __future__ import annotations

import selectors
import socket
import time

from bench.daemon import Daemon, loadOnCpu1, pinToCpu
from bench.measures import rssKiB, unreadBytes
from bench.probe import Probe, serveEvent


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
        with loadOnCpu1():
            pinToCpu(daemon.pid, 0)
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
                    data, n, over = serveEvent(s, events, line[sent[s]:])
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
