"""
What the scenarios read of a process and of the kernel (from /proc), and
the percentile rule their figures share.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from typing import Any


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


def processTree(pid: int) -> list[int]:
    """
    C{pid} and its children (a supervisor's workers), for their CPU time.
    """
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    return pids


def treeSum(pid: int, measure: Any) -> Any:
    """
    C{measure(p)} summed over a process and its children (a figure of a
    process that went away meanwhile counts nothing).
    """
    total = 0
    for p in processTree(pid):
        with contextlib.suppress(OSError):
            total += measure(p)
    return total
