"""
The load of the channel scenarios: subscriber processes (L{bench.subscribers})
and one publisher process, and one measurement run of them against a
started server.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import select
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.daemon import loadOnCpu1, stopLoadProcess
from bench.measures import cpuPercent, cpuTicks, treeSum, waitingSeconds
from bench.subscribers import FANOUT_CHANNEL, subscriberLoad


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
                process = context.Process(target=subscriberLoad, args=(server.port, share - stall, stall, theirs), daemon=True)
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
            stopLoadProcess(process, control)
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
