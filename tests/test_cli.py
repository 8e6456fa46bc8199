"""
The jsonproto command: what it prints and its exit status, against a real
daemon; C{send} streaming through a real pipe; every option checked.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.tools import cli
from tests.e2e import REPO, startDaemon

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
    def test_oneWay(self) -> None:
        """
        C{--one-way TYPE}: messages of that type are sent without waiting
        for a reply, and the requests around them get theirs.
        """
        from tests import onewayhandlers

        service, [port] = yield startDaemon(self, "--port", LOCAL, "--handlers", "tests.onewayhandlers")
        onewayhandlers.received.append(0)
        reading = '{"type":"READING","value":1.5}'
        status, out, err = yield run(
            "send", f"127.0.0.1:{port}", "--one-way", "READING", "--timeout", "5", reading, reading, '{"type":"SUM","a":1,"b":2}', reading
        )
        self.assertEqual((status, out, err), (0, '{"status":"OK","result":3}\n', ""))
        yield service.connections.whenEmpty()  # the server has read all the client sent
        self.assertEqual(onewayhandlers.received[-1], 3)

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


class PipeConversation:
    """
    C{jsonproto send} in a subprocess, its standard input and output
    pipes, read with a deadline.
    """

    def __init__(self, test: TestCase, *argv: str) -> None:
        script = os.path.join(os.path.dirname(sys.executable), "jsonproto")
        self.process = subprocess.Popen(
            [script, "send", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=REPO),
        )
        test.addCleanup(self.stop)
        self.buffer = b""

    def write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def readLine(self, seconds: float = 10) -> Any:
        """
        The next line of output, as JSON; L{None} if none comes in time.
        """
        assert self.process.stdout is not None
        deadline = time.monotonic() + seconds
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.process.stdout], [], [], remaining)[0]:
                return None
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def finish(self) -> tuple[int, bytes, bytes]:
        """
        Close its standard input; its exit status and what else it wrote.
        """
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, self.buffer + out, err

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


class StreamingTests(TestCase):
    """
    C{jsonproto send} sends each line as it is read and prints each reply
    and push as it arrives.
    """

    @inlineCallbacks
    def setUp(self) -> None:
        _, [self.port] = yield startDaemon(self, "--port", LOCAL, "--handlers", "tests.clienthandlers", "--max-errors", "1")

    @inlineCallbacks
    def test_pipe(self) -> None:
        """
        Through a real pipe: the reply to the first line is printed before
        the second line is written (tail -f | jsonproto send works); a
        push that comes while it waits for input is printed too.
        """

        def converse() -> list[Any]:
            send = PipeConversation(self, f"127.0.0.1:{self.port}")
            send.write('{"type":"SUM","a":1,"b":2}')
            first = send.readLine()
            send.write('{"type":"PUSH_LATER","seconds":0.2}')
            second, pushed = send.readLine(), send.readLine()
            send.write('{"type":"SUM","a":2,"b":2}')
            third = send.readLine()
            return [first, second, pushed, third, send.finish()]

        self.assertEqual(
            (yield deferToThread(converse)),
            [
                {"status": "OK", "result": 3},
                {"status": "OK", "scheduled": 0.2},
                {"type": "STATE", "state": "later"},
                {"status": "OK", "result": 4},
                (0, b"", b""),
            ],
        )

    @inlineCallbacks
    def test_pushesInOrder(self) -> None:
        """
        Pushes are printed where they came, before the reply they
        preceded, from arguments, a pipe and a terminal alike.
        """
        expected = ['{"type":"STATE","state":"playing","n":0}', '{"type":"STATE","state":"playing","n":1}', '{"status":"OK","pushed":2}']
        request = '{"type":"PUSH","count":2}'
        for argv, stdin in [
            ([request], None),
            ([], io.StringIO(request + "\n")),
            ([], FakeTerminal(request + "\n")),
        ]:
            status, out, _ = yield run("send", f"127.0.0.1:{self.port}", *argv, stdin=stdin)
            self.assertEqual((status, out.splitlines()), (0, expected))

    @inlineCallbacks
    def test_badLineGoesOn(self) -> None:
        """
        From a pipe, a line that is not JSON is named on standard error and
        the lines after it are still sent; the status is 2.
        """
        lines = io.StringIO('{"type":"SUM","a":1,"b":1}\nnope\n{"type":"SUM","a":2,"b":2}\n')
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", stdin=lines)
        self.assertEqual((status, [json.loads(l)["result"] for l in out.splitlines()]), (2, [2, 4]))
        self.assertTrue(err.startswith("jsonproto: line 2 is not JSON:"), err)

    @inlineCallbacks
    def test_numbersJSONCannotCarry(self) -> None:
        """
        C{NaN} and C{1e999}, which Python's parser takes and no JSON peer
        may, are named in one line like any line that is not JSON, and the
        lines after them are still sent.
        """
        lines = io.StringIO('{"type":"SUM","a":1e999,"b":1}\n{"type":"SUM","a":NaN,"b":1}\n{"type":"SUM","a":2,"b":2}\n')
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", stdin=lines)
        self.assertEqual((status, [json.loads(l)["result"] for l in out.splitlines()]), (2, [4]))
        self.assertEqual(
            err.splitlines(),
            [
                "jsonproto: line 1 is not JSON as a request must be: Number out of range",
                "jsonproto: line 2 is not JSON as a request must be: Invalid JSON: NaN is not a JSON number",
            ],
        )
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", '{"type":"SUM","a":NaN,"b":1}')
        self.assertEqual((status, out, err.count("\n")), (2, "", 1))

    @inlineCallbacks
    def test_serverCloses(self) -> None:
        """
        The server's "Too many errors" is not printed as the reply to the
        next request: the replies before it are, then one line says why the
        connection ended; status 2.
        """
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", '{"type":"NOPE"}', '{"type":"NOPE"}', '{"type":"SUM","a":1,"b":1}')
        self.assertEqual([json.loads(l)["code"] for l in out.splitlines()], ["unknown_type", "unknown_type"])
        self.assertEqual((status, err), (2, "jsonproto: the server closed the connection: Too many errors (more than 1 bad messages, with 10 forgiven a second)\n"))

    @inlineCallbacks
    def test_maxReplySize(self) -> None:
        """
        A reply over 1 MiB is refused by default, in one line naming
        --max-reply-size, and printed when --max-reply-size allows it.
        """
        big = json.dumps({"type": "BIG", "bytes": 1536 * 1024})
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", big)
        self.assertEqual(
            (status, out, err),
            (2, "", "jsonproto: the server sent a message longer than 1,048,576 bytes; give a larger --max-reply-size to take it\n"),
        )
        status, out, err = yield run("send", f"127.0.0.1:{self.port}", "--max-reply-size", str(2 * 1024 * 1024), big)
        self.assertEqual((status, len(json.loads(out)["data"]), err), (0, 1536 * 1024, ""))


class UsageTests(SynchronousTestCase):
    """
    Every option is checked before anything is sent: a bad one is one line
    on standard error and status 2, never a traceback.
    """

    def usageError(self, *argv: str) -> str:
        err = io.StringIO()
        status = cli.main(list(argv), stdin=io.StringIO(""), out=io.StringIO(), err=err)
        self.assertEqual(status, 2, argv)
        self.assertEqual(err.getvalue().count("\n"), 1, err.getvalue())
        return err.getvalue()

    def test_send(self) -> None:
        """
        send's options: positive finite timeouts and sizes, a port from 1
        to 65535, files that exist, TLS options only for tls:.
        """
        request = '{"type":"SUM","a":1,"b":1}'
        cases = {
            ("--timeout", "-1"): "argument --timeout: '-1' is not a number of seconds greater than 0",
            ("--timeout", "0"): "argument --timeout: '0' is not a number of seconds greater than 0",
            ("--timeout", "nan"): "argument --timeout: 'nan' is not a number of seconds greater than 0",
            ("--max-reply-size", "0"): "argument --max-reply-size: '0' is not a whole number greater than 0",
            ("--framing", "xml"): "argument --framing: invalid choice: 'xml'",
            ("--ca", "/nonexistent/ca.pem"): "argument --ca: cannot read '/nonexistent/ca.pem'",
            ("--ca", __file__): f"--ca applies only to a tls:HOST:PORT endpoint, not '127.0.0.1:3001'",
            ("--bogus",): "unrecognized arguments: --bogus",
        }
        for options, expected in cases.items():
            err = self.usageError("send", "127.0.0.1:3001", *options, request)
            self.assertTrue(err.startswith(f"jsonproto send: error: {expected}"), err)
        for endpoint in ["localhost:106555", "localhost:0", "nowhere", "tcp:localhost:"]:
            err = self.usageError("send", endpoint, request)
            self.assertTrue(err.startswith("jsonproto send: error: argument endpoint:"), err)
        err = self.usageError("send", "tls:localhost:3443", "--key", __file__, request)
        self.assertIn("--key names the key of a --cert; give --cert too", err)

    def test_bench(self) -> None:
        """
        bench's counts and durations must be greater than zero.
        """
        for option in ["--conns", "--pipeline", "--duration", "--warmup"]:
            for value in ["0", "-1"]:
                err = self.usageError("bench", "127.0.0.1:3001", option, value)
                self.assertTrue(err.startswith(f"jsonproto bench: error: argument {option}: '{value}' is not"), err)
        for argv, expected in [
            (["unix:/tmp/x.sock"], "bench measures TCP and TLS endpoints"),
            (["127.0.0.1:3001", "--message", "[1]"], "argument --message: '[1]': it is not a request"),
            (["127.0.0.1:3001", "--message", '{"type":"SUM"}', "--message-file", __file__], "not allowed with argument"),
            (["127.0.0.1:3001", "--server-pid", "0"], "argument --server-pid: '0' is not a whole number"),
        ]:
            self.assertIn(expected, self.usageError("bench", *argv))

    def test_help(self) -> None:
        """
        --help keeps the examples' line breaks, and every option of every
        command says what it does.
        """
        top = cli.parser()
        send = _helpOf("send")
        self.assertIn("\n  tail -f requests.jsonl | jsonproto send localhost:3001\n", send)
        self.assertIn("\n  jsonproto bench localhost:3001\n", _helpOf("bench"))
        for command in ["send", "bench", "cert"]:
            for option, helpText in _options(_helpOf(command)):
                self.assertTrue(helpText, f"{command} {option} has no help text")
        self.assertIn("COMMAND", top.format_help())


def _helpOf(command: str) -> str:
    """
    What C{jsonproto COMMAND --help} prints.
    """
    out = io.StringIO()
    with _stdout(out):
        try:
            cli.main([command, "--help"])
        except SystemExit as e:
            assert e.code == 0
    return out.getvalue()


def _stdout(out: io.StringIO) -> Any:
    import contextlib

    return contextlib.redirect_stdout(out)


def _options(helpText: str) -> list[tuple[str, str]]:
    """
    Each option in a help text, with the help printed for it.
    """
    entries: list[list[str]] = []
    section = helpText.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    for line in section.splitlines():
        if re.match(r"  -", line):
            invocation, _, text = line.strip().partition("  ")
            entries.append([invocation, text.strip()])
        elif entries:
            entries[-1][1] += " " + line.strip()
    return [(invocation, text.strip()) for invocation, text in entries]


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
        """
        An endpoint that is none of the forms: a usage error naming them.
        """
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

    @inlineCallbacks
    def test_benchServerCloses(self) -> None:
        """
        A server that closes connections for too many errors (sending its
        "Too many errors" after the last reply) is counted, not a crash:
        every error reply and every close is reported, status 1.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL, "--max-errors", "1")
        arguments = ["bench", f"127.0.0.1:{port}", "--message", '{"type":"NOPE"}', "--conns", "3", "--pipeline", "2", "--duration", "0.3", "--warmup", "0.1"]
        status, out, err = yield run(*arguments, "--json")
        summary = json.loads(out)
        # Each connection: two error replies, then "Too many errors".
        self.assertEqual((status, err, summary["errors"], summary["closed"]), (1, "", 9, 3))
        status, out, _ = yield run(*arguments)
        self.assertEqual(status, 1)
        self.assertIn("9 error replies and 3 of 3 connections closed by the server", out)

    @inlineCallbacks
    def test_benchMaxReplySize(self) -> None:
        """
        A reply over --max-reply-size ends the run with one line saying so.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL)
        status, _, err = yield run("bench", f"127.0.0.1:{port}", "--max-reply-size", "10", "--conns", "1", "--duration", "0.2", "--warmup", "0.1")
        self.assertEqual((status, err), (2, "jsonproto: the server sent a reply longer than 10 bytes; give a larger --max-reply-size to take it\n"))
