"""
The documentation's console examples, run against a live daemon: what a
page shows a command printing is what it prints.
"""

from __future__ import annotations

import codecs
import glob
import io
import json
import os
import re
import shlex
import socket
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from jsonproto.tools import cli
from jsonproto.tools.certs import writeCertificate
from tests.e2e import REPO, startDaemon

PAGES = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]


def examples() -> list[tuple[str, str, list[str]]]:
    """
    Every C{$ command} in a console block, with the lines it shows after.
    """
    found = []
    for page in PAGES:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for block in re.findall(r"```console\n(.*?)```", text, re.S):
            command, output = None, []
            for line in block.splitlines():
                if line.startswith("$ "):
                    if command:
                        found.append((os.path.basename(page), command, output))
                    command, output = line[2:], []
                elif command:
                    output.append(line)
            if command:
                found.append((os.path.basename(page), command, output))
    return found


def _netcat(command: str, port: int) -> list[str]:
    printf, nc = command.split(" | ")
    data = codecs.escape_decode(shlex.split(printf)[1].encode())[0]
    assert shlex.split(nc)[:2] == ["nc", "-N"], nc
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    return received.decode().splitlines()


def _send(command: str, port: int) -> list[str]:
    argv = shlex.split(command)
    assert argv[0].endswith("jsonproto") and argv[1] == "send", command
    argv[2] = f"127.0.0.1:{port}"
    out = io.StringIO()
    cli.main(argv[1:], out=out, err=io.StringIO())
    return out.getvalue().splitlines()


def _shape(line: str) -> Any:
    # Figures that change from run to run (uptime, counters) are compared by
    # the keys they sit under.
    value = json.loads(line)
    if isinstance(value, dict) and "uptime" in value:
        return sorted(value)
    return value


class DocumentationExamplesTests(TestCase):
    @inlineCallbacks
    def test_examples(self) -> None:
        """
        Each console example prints what its page says.
        """
        found = examples()
        self.assertGreaterEqual(len(found), 5)
        _, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--enable-stats")
        for page, command, expected in found:
            if "| nc " in command:
                got = yield deferToThread(_netcat, command, port)
            else:
                got = yield deferToThread(_send, command, port)
            self.assertEqual([_shape(l) for l in got], [_shape(l) for l in expected], f"{page}: {command}")


COMMAND = re.compile(r"^(?:ExecStart=)?\S*(?:twistd|jsonproto) .*$")


def commandLines() -> list[tuple[str, list[str]]]:
    """
    Every twistd and jsonproto command in the pages' code blocks, split as
    a shell would (comments dropped).
    """
    found = []
    for page in PAGES:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for block in re.findall(r"```(?:sh|ini)\n(.*?)```", text, re.S):
            for line in block.splitlines():
                if COMMAND.match(line.strip()):
                    argv = shlex.split(line.strip().removeprefix("ExecStart="), comments=True)
                    found.append((os.path.basename(page), argv))
    return found


def _handlersModule(directory: str) -> None:
    """
    Write the handlers module the pages show, as myapp.handlers.
    """
    with open(os.path.join(REPO, "docs", "handlers.md"), encoding="utf-8") as f:
        code = re.search(r"```python\n# myapp/handlers.py\n(.*?)```", f.read(), re.S).group(1)  # type: ignore[union-attr]
    os.makedirs(os.path.join(directory, "myapp"))
    open(os.path.join(directory, "myapp", "__init__.py"), "w").close()
    with open(os.path.join(directory, "myapp", "handlers.py"), "w") as f:
        f.write(code)


class DocumentationCommandTests(TestCase):
    def test_commands(self) -> None:
        """
        Every jsonproto cert command in the pages runs, and every twistd
        jsonproto command line parses (its options, endpoint strings and
        files), in a directory holding the files the pages make.  Paths
        under /etc and /opt stand for files made the same way.
        """
        from jsonproto.daemon.tap import Options

        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        _handlersModule(work)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(work)
        import sys

        sys.path.insert(0, work)
        self.addCleanup(sys.path.remove, work)
        self.addCleanup(sys.modules.pop, "myapp.handlers", None)
        self.addCleanup(sys.modules.pop, "myapp", None)
        commands = commandLines()
        certs = [argv for _, argv in commands if argv[0].endswith("jsonproto") and argv[1] == "cert"]
        twistds = [(page, argv) for page, argv in commands if argv[0].endswith("twistd") and "jsonproto" in argv]
        self.assertGreaterEqual(len(certs), 4)
        self.assertGreaterEqual(len(twistds), 10)
        for argv in certs:
            self.assertEqual(cli.main(argv[1:], err=io.StringIO()), 0, argv)
        if not os.path.exists("key.pem"):  # the README's key and certificate in one file
            writeCertificate("key.pem", ["localhost"])
        for name in ("server.pem", "clients-ca.pem"):  # each beside its .key
            if not os.path.exists(name):
                cli.main(["cert", "localhost", "-o", name], err=io.StringIO())
        for page, argv in twistds:
            options = argv[argv.index("jsonproto") + 1 :]
            options = [re.sub(r"/(?:etc|opt)/jsonproto/", "", o) for o in options]
            if any(o.startswith("systemd:") for o in options):
                continue  # needs systemd's sockets: test_twistd starts it so
            Options().parseOptions(options)


class DocumentationSessionTests(TestCase):
    @inlineCallbacks
    def test_sessions(self) -> None:
        """
        A code block that starts a daemon and then sends to it works as
        shown: its certificates are made, the daemon starts with its
        options (on a free port), and each jsonproto send succeeds.
        """
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(work)
        sessions = 0
        for page in PAGES:
            with open(page, encoding="utf-8") as f:
                blocks = re.findall(r"```sh\n(.*?)```", f.read(), re.S)
            for block in blocks:
                argvs = [shlex.split(l, comments=True) for l in block.splitlines() if COMMAND.match(l.strip())]
                daemons = [a for a in argvs if a[0].endswith("twistd")]
                sends = [a for a in argvs if a[0].endswith("jsonproto") and a[1] == "send"]
                if len(daemons) != 1 or not sends:
                    continue
                sessions += 1
                for argv in argvs:
                    if argv[0].endswith("jsonproto") and argv[1] == "cert":
                        self.assertEqual(cli.main(argv[1:], err=io.StringIO()), 0, argv)
                options = daemons[0][daemons[0].index("jsonproto") + 1 :]
                options = [re.sub(r"^(ssl|tcp|jsonproto-tls):\d+", r"\1:0:interface=127.0.0.1", o) for o in options]
                _, [port] = yield startDaemon(self, *options)
                for argv in sends:
                    argv = [re.sub(r"^(tcp|tls):([^:]+):\d+$", rf"\1:\2:{port}", a) for a in argv]
                    out, err = io.StringIO(), io.StringIO()
                    status = yield deferToThread(cli.main, argv[1:], out=out, err=err)
                    self.assertEqual((status, err.getvalue()), (0, ""), f"{os.path.basename(page)}: {argv}")
                    self.assertEqual(json.loads(out.getvalue())["status"], "OK")
        self.assertGreaterEqual(sessions, 2)


class ClientsPageTests(TestCase):
    @inlineCallbacks
    def test_sendExamples(self) -> None:
        """
        The jsonproto send examples of the clients page, each run against a
        daemon like the one it names: newline JSON on "3001", int32 on
        "3002", mutual TLS for "db.example" (reached at 127.0.0.1, checked
        under its name).  Every one exits 0.
        """
        with open(os.path.join(REPO, "docs", "clients.md"), encoding="utf-8") as f:
            block = re.search(r"## From the command line.*?```sh\n(.*?)```", f.read(), re.S).group(1)  # type: ignore[union-attr]
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(work)
        for argv in (["cert", "test CA", "--make-ca", "-o", "ca.pem"], ["cert", "db.example", "--ca", "ca.pem", "-o", "db.pem"], ["cert", "me", "--ca", "ca.pem", "--usage", "client", "-o", "me.pem"]):
            cli.main(argv, err=io.StringIO())
        _, [line] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1")
        _, [int32] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--framing", "int32")
        _, [tls] = yield startDaemon(
            self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:privateKey={work}/db.key:certKey={work}/db.pem:clientCA={work}/ca.pem"
        )
        ports = {"3001": line, "3002": int32, "3443": tls}
        ran = 0
        for text in block.splitlines():
            stdin: io.StringIO = io.StringIO("")
            if " | " in text:
                printf, text = text.split(" | ")
                format, value = shlex.split(printf)[1:]
                stdin = io.StringIO(codecs.decode(format, "unicode_escape") % value)
            argv = shlex.split(text, comments=True)
            if "# at a terminal" in text:
                stdin = FakeTerminalInput('{"type":"SUM","a":1,"b":2}\n')
            endpoint = argv[2]
            kind, host, port = (["tcp"] + endpoint.split(":"))[-3:]
            argv[2] = f"{kind}:127.0.0.1:{ports[port]}"
            if host != "localhost":
                argv += ["--server-name", host]
            out, err = io.StringIO(), io.StringIO()
            status = yield deferToThread(cli.main, argv[1:], stdin=stdin, out=out, err=err)
            self.assertEqual((status, err.getvalue().count("jsonproto:")), (0, 0), f"{text}: {err.getvalue()}")
            self.assertTrue(out.getvalue())
            ran += 1
        self.assertEqual(ran, 5)


class FakeTerminalInput(io.StringIO):
    def isatty(self) -> bool:
        return True


class DocstringRenderingTests(TestCase):
    def test_epytext(self) -> None:
        """
        The API page renders the docstrings' epytext: inline markup (braces
        inside it balanced, running over line breaks) and @-fields.
        """
        import importlib.util

        spec = importlib.util.spec_from_file_location("docsconf", os.path.join(REPO, "docs", "conf.py"))
        assert spec is not None and spec.loader is not None
        conf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(conf)
        self.assertEqual(
            conf.epytextToRest(
                [
                    'C{{"type":"SUM"}} gives L{Reply}, I{not} B{None}; C{"Internal',
                    'error"}.',
                    "",
                    "@param message: The message.",
                    "@return: The reply.",
                    "@raise RequestError: For a bad one.",
                ]
            ),
            [
                '``{"type":"SUM"}`` gives :py:obj:`Reply`, *not* **None**; ``"Internal',
                'error"``.',
                "",
                ":param message: The message.",
                ":returns: The reply.",
                ":raises RequestError: For a bad one.",
            ],
        )
