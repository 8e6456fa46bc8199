"""
The seed's own Node.js clients, unchanged, against the daemon: they must
see the replies the seed's servers give them.
"""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from tests.e2e import REPO, startDaemon

SEED = os.path.join(os.path.dirname(REPO), "shared", "seed")
REDIRECT = os.path.join(REPO, "tests", "redirect-ports.js")


class SeedClientTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.node = shutil.which("node")
        if self.node is None:
            raise SkipTest("node is not installed")
        if not os.path.isdir(SEED):
            raise SkipTest(f"the seed's clients are not at {SEED}")

    @inlineCallbacks
    def runClient(self, script: str, portMap: dict[int, int]) -> tuple[str, str]:
        out, err, code = yield getProcessOutputAndValue(
            self.node,
            ["-r", REDIRECT, os.path.join(SEED, script)],
            env={"PATH": os.environ.get("PATH", ""), "JSONPROTO_PORT_MAP": json.dumps(portMap)},
            reactor=reactor,
        )
        self.assertEqual(code, 0, err)
        return out.decode(), err.decode()

    @inlineCallbacks
    def test_jsonClient(self) -> None:
        """
        json_client.js sends GREETING and SUM and prints the seed's replies.
        """
        _, [port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1")
        output, errors = yield self.runClient("json_client.js", {3001: port})
        self.assertEqual(errors, "")
        self.assertEqual(
            output.splitlines(),
            [
                "Connected to JSON TCP server",
                "Received JSON response: { status: 'OK', reply: 'Hello, Alice!' }",
                "Received JSON response: { status: 'OK', result: 30 }",
                "Disconnected from JSON server.",
            ],
        )

    @inlineCallbacks
    def test_echoClient(self) -> None:
        """
        client.js gets its words echoed back.  (It answers every echo with
        another write for a second, then half-closes; an echo still in
        flight then makes it print "write after end", against the seed's
        own server too, so that line is allowed.)
        """
        _, [_, port] = yield startDaemon(self, "--port", "tcp:0:interface=127.0.0.1", "--echo", "tcp:0:interface=127.0.0.1")
        output, errors = yield self.runClient("client.js", {3000: port})
        lines = output.splitlines()
        self.assertEqual(lines[:3], ["Connected to TCP server on 127.0.0.1:3000", "Received from server: Hello Server, are you there?", "Received from server: Thanks for echoing!"])
        self.assertIn("Client socket closed.", lines[-1])
        self.assertIn(errors, ["", "Client error: write after end\n"])
