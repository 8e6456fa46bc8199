"""
The jsonproto command: what it prints and its exit status, against a real
daemon.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.tools import cli
from tests.e2e import startDaemon

LOCAL = "tcp:0:interface=127.0.0.1"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*argv: str, stdin: io.StringIO | None = None) -> Any:
    """
    Run the command in a thread (it blocks; the daemon runs on this
    thread's reactor); fires with (status, stdout, stderr).
    """

    def call() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(list(argv), stdin=stdin or io.StringIO(""), out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    return deferToThread(call)


class SendTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> None:
        _, [self.port] = yield startDaemon(self, "--port", LOCAL, "--handlers", "tests.slowhandlers")
        _, [self.int32Port] = yield startDaemon(self, "--port", LOCAL, "--framing", "int32")

    @inlineCallbacks
    def test_ok(self) -> None:
        """
        Each reply is printed as one JSON line; all OK is status 0.
        """
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", '{"type":"SUM","a":1,"b":2}', '{"type":"GREETING","name":"Zoë"}')
        self.assertEqual((status, out, err), (0, '{"status":"OK","result":3}\n{"status":"OK","reply":"Hello, Zoë!"}\n', ""))

    @inlineCallbacks
    def test_errorReply(self) -> None:
        """
        Any error reply makes the status 1; every reply is still printed.
        """
        status, out, _ = yield run("send", f"tcp:127.0.0.1:{self.port}", '{"type":"NOPE"}', '{"type":"SUM","a":1,"b":2}')
        self.assertEqual(status, 1)
        self.assertEqual([json.loads(l)["status"] for l in out.splitlines()], ["ERROR", "OK"])

    @inlineCallbacks
    def test_stdin(self) -> None:
        """
        Without requests on the command line, JSON lines come from standard
        input (blank lines skipped); int32 framing on request.
        """
        lines = io.StringIO('{"type":"SUM","a":1,"b":2}\n\n{"type":"SUM","a":2,"b":2}\n')
        status, out, _ = yield run("send", f"127.0.0.1:{self.int32Port}", "--framing", "int32", stdin=lines)
        self.assertEqual((status, [json.loads(l)["result"] for l in out.splitlines()]), (0, [3, 4]))

    @inlineCallbacks
    def test_badJSON(self) -> None:
        """
        A request that is not JSON is named in one line, status 2, and
        nothing is sent.
        """
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", '{"type":"SUM"}', '{"type":')
        self.assertEqual((status, out), (2, ""))
        self.assertTrue(err.startswith("jsonproto: argument 2 is not JSON:"), err)
        self.assertEqual(err.count("\n"), 1)

    @inlineCallbacks
    def test_timeout(self) -> None:
        """
        No reply within --timeout: one line, status 2.
        """
        status, _, err = yield run("send", f"127.0.0.1:{self.port}", "--timeout", "0.2", '{"type":"SLOW","seconds":2}')
        self.assertEqual((status, err), (2, "jsonproto: no reply within 0.2 seconds\n"))

    @inlineCallbacks
    def test_interactive(self) -> None:
        """
        At a terminal, each line typed is sent and its reply printed; a
        line that is not JSON is reported and the session goes on.
        """
        terminal = FakeTerminal('{"type":"SUM","a":1,"b":2}\nnope\n{"type":"NOPE"}\n')
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", stdin=terminal)
        self.assertEqual(status, 1)
        self.assertEqual([json.loads(l).get("code") for l in out.splitlines()], [None, "unknown_type"])
        self.assertIn("jsonproto: that is not JSON", err)


class FailureTests(TestCase):
    @inlineCallbacks
    def test_refused(self) -> None:
        """
        Nothing listening: one line saying so, status 2.
        """
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        status, _, err = yield run("send", f"127.0.0.1:{port}", '{"type":"SUM"}')
        self.assertEqual((status, err), (2, f"jsonproto: cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)\n"))

    @inlineCallbacks
    def test_tlsVerification(self) -> None:
        """
        A server certificate that does not verify: one line naming the
        host, status 2.
        """
        cert = os.path.abspath(self.mktemp()) + ".pem"
        cli.main(["cert", "localhost", "127.0.0.1", "-o", cert], err=io.StringIO())
        _, [port] = yield startDaemon(self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:privateKey={cert[:-4]}.key:certKey={cert}")
        status, _, err = yield run("send", f"tls:localhost:{port}", '{"type":"SUM","a":1,"b":2}')
        self.assertEqual(status, 2)
        self.assertTrue(err.startswith("jsonproto: TLS verification of localhost failed:"), err)
        status, out, _ = yield run("send", f"tls:localhost:{port}", "--ca", cert, '{"type":"SUM","a":1,"b":2}')
        self.assertEqual((status, out), (0, '{"status":"OK","result":3}\n'))

    def test_badEndpoint(self) -> None:
        err = io.StringIO()
        self.assertEqual(cli.main(["send", "nowhere", '{"type":"X"}'], err=err), 2)
        self.assertIn("is not an endpoint", err.getvalue())


class ConsoleScriptTests(SynchronousTestCase):
    def test_installed(self) -> None:
        """
        The package installs a jsonproto command.
        """
        script = os.path.join(os.path.dirname(sys.executable), "jsonproto")
        result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0)
        self.assertIn("send", result.stdout)
        self.assertIn("cert", result.stdout)


class BenchTests(TestCase):
    @inlineCallbacks
    def test_bench(self) -> None:
        """
        jsonproto bench drives load and reports replies per second and
        latency, checking a sample of replies, on either framing.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL)
        _, [int32Port] = yield startDaemon(self, "--port", LOCAL, "--framing", "int32")
        for framing, p in [("line", port), ("int32", int32Port)]:
            status, out, err = yield run(
                "bench", f"127.0.0.1:{p}", "--framing", framing, "--conns", "4", "--pipeline", "8",
                "--duration", "0.3", "--warmup", "0.1", "--json",
            )
            self.assertEqual((status, err), (0, ""))
            summary = json.loads(out)
            self.assertGreater(summary["replies"], 0)
            self.assertGreater(summary["checked"], 0)
            self.assertEqual((summary["errors"], summary["framing"]), (0, framing))
            self.assertLessEqual(summary["p50_us"], summary["p99_us"])

    @inlineCallbacks
    def test_benchCountsErrors(self) -> None:
        """
        Replies that are not OK are counted, and make the status 1.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL, "--max-errors", "0")
        status, out, _ = yield run(
            "bench", f"127.0.0.1:{port}", "--message", '{"type":"NOPE"}', "--conns", "2",
            "--duration", "0.3", "--warmup", "0.1", "--json",
        )
        self.assertEqual(status, 1)
        self.assertGreater(json.loads(out)["errors"], 0)
