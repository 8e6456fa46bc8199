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

from jsonproto import cli
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
