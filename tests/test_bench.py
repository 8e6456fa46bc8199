"""
The benchmark's own machinery (C{bench/}): its command line, its load
client in C for one-way streams and TLS, and the scenarios' figures, each
run small against a real daemon on 127.0.0.1, on a port the kernel picks.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from bench.daemon import Daemon, writeCertificate
from bench.idle import idleConnections
from bench.loadgen import loadClient, missingLoadgen, runLoad
from bench.realistic import PUSHED
from bench.throughput import throughput
from bench.versus import LATEST, _rows, readingsKept
from tests.e2e import REPO


class LayoutTests(SynchronousTestCase):
    def test_smallModules(self) -> None:
        """
        Each module of the benchmark has one job and stays readable: none
        is over 400 lines.
        """
        for path in glob.glob(os.path.join(REPO, "bench", "*.py")):
            with open(path, encoding="utf-8") as f:
                count = len(f.readlines())
            self.assertLessEqual(count, 400, f"{os.path.relpath(path, REPO)} has {count} lines")

    def test_scenarios(self) -> None:
        """
        bench/run.py runs as a script from the checkout and offers every
        scenario, the peers', the idle connections' and TLS's among them;
        an unknown one is a one-line usage error.
        """
        script = os.path.join(REPO, "bench", "run.py")
        result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        help = " ".join(result.stdout.split())
        for name in ("throughput", "realistic,", "realistic-peers", "idle-connections", "tls", "fanout"):
            self.assertIn(name, help)
        result = subprocess.run([sys.executable, script, "--only", "nope"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("invalid choice: 'nope'", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_makeBenchArguments(self) -> None:
        """
        C{make bench ARGS="..."} hands the arguments to bench/run.py.
        """
        if shutil.which("make") is None:
            raise SkipTest("no make on PATH")
        result = subprocess.run(
            ["make", "-n", "-C", REPO, "bench", "ARGS=--only soak --quick"], capture_output=True, text=True, timeout=60
        )
        self.assertIn("bench/run.py --only soak --quick", result.stdout)


class PeerRowsTests(SynchronousTestCase):
    def test_ratioToBestPeer(self) -> None:
        """
        Each mode's rows give every server's mean over the rounds, and
        jsonproto's ratio to the best of the peers, which they name.
        """
        rows = _rows(
            "pipelined", "requests/s",
            {"jsonproto": [90.0, 110.0], "node": [150.0, 250.0], "uvloop": [120.0, 80.0]},
            {"jsonproto": [1.0, 12.4], "node": [0.0, 0.2], "uvloop": [3.0, 2.0]},
            {"jsonproto": [900.0, 1100.0], "node": [1500.0, 2500.0], "uvloop": [2000.0, 2000.0]},
        )
        self.assertEqual(rows, [
            ("realistic, pipelined: requests/s, jsonproto / node / uvloop (mean of 2 rounds)", "100 / 200 / 100"),
            ("realistic, pipelined: jsonproto / best peer (node)", "0.50x"),
            ("realistic, pipelined: p99 latency (us), jsonproto / node / uvloop (mean of 2 rounds)", "1,000 / 2,000 / 2,000"),
            ("realistic, pipelined: each round, jsonproto / node / uvloop; the server waiting for a CPU, highest round (%)",
             "90, 110 / 150, 250 / 120, 80; 12 / 0 / 3"),
        ])

    def test_noPeer(self) -> None:
        """
        With no peer at hand, jsonproto's figure is still given, and no
        ratio is made up; a mode with no replies to time (a one-way
        stream) has no latency row.
        """
        self.assertEqual(
            _rows("ping-pong", "requests/s", {"jsonproto": [10.0, 20.0]}, {"jsonproto": [0.0, 1.0]}, {"jsonproto": []})[:-1],
            [("realistic, ping-pong: requests/s, jsonproto (mean of 2 rounds)", "15")],
        )


class _Files:
    mktemp: Any

    def write(self, data: bytes) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(data)
        return str(path)


class LoadClientTests(_Files, SynchronousTestCase):
    def setUp(self) -> None:
        try:
            self.client = loadClient()
        except RuntimeError as e:
            raise SkipTest(str(e))

    def daemon(self, *options: str, pattern: bytes = rb"starting on (\d+)") -> Daemon:
        daemon = Daemon("--max-connections-per-ip", "0", *options, pattern=pattern)
        self.addCleanup(daemon.stop)
        return daemon

    def test_stream(self) -> None:
        """
        A one-way stream counts the messages every connection sent, and
        ends only once the server has handled them all: the reading count
        the server keeps is every message sent, warm-up included.
        """
        daemon = self.daemon("--handlers", "bench.realistic")
        run = runLoad([self.client, "--port", str(daemon.port), "--conns", "3", "--stream", "500",
                       "--msg-file", self.write(PUSHED), "--final-file", self.write(LATEST)])
        self.assertEqual((run["messages"], run["errors"]), (1500, 0))
        self.assertGreater(run["messages_per_s"], 0)
        self.assertEqual(readingsKept(daemon.port), 3 * (500 // 10 + 1 + 500))

    def test_pipelinedCountsErrors(self) -> None:
        """
        Pipelined, a reply without the expected text is an error, so that
        a server answering only errors is never reported as fast.
        """
        daemon = self.daemon("--max-errors", "0")
        run = runLoad([self.client, "--port", str(daemon.port), "--conns", "2", "--depth", "4", "--duration", "0.3",
                       "--warmup", "0.1", "--msg-file", self.write(b'{"type":"NOPE"}'), "--expect", '"result":30'])
        # Every reply of the window, and those before it.
        self.assertGreater(run["errors"], run["replies"])
        run = runLoad([self.client, "--port", str(daemon.port), "--conns", "2", "--depth", "4", "--duration", "0.3",
                       "--warmup", "0.1", "--msg-file", self.write(b'{"type":"SUM","a":10,"b":20}'), "--expect", '"result":30'])
        self.assertEqual(run["errors"], 0)
        self.assertGreater(run["replies"], 0)

    def test_tls(self) -> None:
        """
        Over TLS (a daemon on C{ssl:}), the client gets its replies as over
        TCP.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        certificate, key = writeCertificate(directory)
        daemon = self.daemon("--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}", pattern=rb"\(TLS\) starting on (\d+)")
        run = runLoad([self.client, "--port", str(daemon.port), "--conns", "2", "--depth", "8", "--duration", "0.3",
                       "--warmup", "0.1", "--msg-file", self.write(b'{"type":"SUM","a":10,"b":20}'), "--expect", '"result":30', "--tls"])
        self.assertEqual(run["errors"], 0)
        self.assertGreater(run["replies"], 0)

    def test_loopbackOnly(self) -> None:
        """
        Load goes only to loopback addresses: another is refused in one
        line.
        """
        result = subprocess.run([self.client, "--host", "10.0.0.1", "--port", "1", "--msg-file", self.write(b"{}"), "--duration", "1"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual((result.returncode, result.stderr), (2, "loadclient: only loopback addresses (127.x.x.x) are accepted\n"))


class ScenarioTests(SynchronousTestCase):
    def test_idleConnections(self) -> None:
        """
        The idle connections' rows give the daemon's RSS before and with
        them, and the difference per connection.
        """
        missing = missingLoadgen()
        if missing:
            raise SkipTest(missing)
        rows = dict(idleConnections(count=50, hold=1))
        before, held = (float(v) for v in rows["50 idle connections: daemon RSS before / with them (MiB)"].split(" / "))
        self.assertGreater(before, 0)
        perConnection = float(rows["50 idle connections: daemon RSS per connection (KiB)"])
        # The MiB are rounded to a tenth each: 0.1 MiB is 2 KiB a connection here.
        self.assertTrue(abs(perConnection - (held - before) * 1024 / 50) <= 2.1, (perConnection, before, held))

    def test_tlsThroughput(self) -> None:
        """
        The throughput scenario's TLS run starts its daemon with the
        certificate and key C{jsonproto cert} writes, and gets replies.
        """
        with tempfile.TemporaryDirectory() as work:
            run = throughput("TLS", [], ["--conns", "2", "--pipeline", "2", "--duration", "0.3", "--warmup", "0.1"],
                             tls=writeCertificate(work), pin=False)
        self.assertGreater(run["rps"], 0)
