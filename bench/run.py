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
import os
import platform
import resource
import sys
import time

if __package__ in (None, ""):
    # Run as a script (bench/run.py): the checkout, not bench/, on the path.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.channels import fanout, slowSubscribers
from bench.daemon import HERE
from bench.fairness import fairness
from bench.idle import idleConnections
from bench.measures import cpuName
from bench.memory import slowReaders, soak
from bench.throughput import realistic, throughputScenarios
from bench.tlscost import tlsAgainstPlain
from bench.unfinished import unfinishedMessages
from bench.versus import realisticPeers


SCENARIOS = (
    "throughput", "realistic", "realistic-peers", "idle-connections", "tls",
    "slow-readers", "soak", "fairness", "unfinished", "fanout", "slow-subscribers",
)


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
        "realistic-peers": lambda: realisticPeers(args.quick),
        "idle-connections": lambda: idleConnections(2_000 if args.quick else 10_000),
        "tls": lambda: tlsAgainstPlain(args.quick),
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
