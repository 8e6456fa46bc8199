"""
The realistic service of the benchmark (L{bench.realistic}) and its peers
(C{bench/peers/}: Node, and asyncio on uvloop) give the same replies to the
same messages, good and bad, so that the benchmark compares servers doing
the same work.  Each server is a real process on 127.0.0.1, on a port the
kernel picks.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from bench.daemon import Daemon, PeerServer, missingPeer
from bench.realistic import CHECKED, PUSHED


def _reading(**changes: Any) -> bytes:
    """
    The hand-checked reading with some fields changed (a value of
    L{None}: the field left out), as one line.
    """
    message = json.loads(CHECKED)
    tags = changes.pop("tags_", {})
    for name, value in changes.items():
        if value is None:
            del message[name]
        else:
            message[name] = value
    for name, value in tags.items():
        if value is None:
            del message["tags"][name]
        else:
            message["tags"][name] = value
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _error(detail: str, withId: bool = True) -> dict[str, Any]:
    reply = {"status": "ERROR", "message": "Invalid field", "code": "invalid_field", "detail": detail}
    return {**reply, "id": 4711} if withId else reply


def _push(device: str, at: float, **changes: Any) -> bytes:
    return _reading(type="PUSH_READING", device=device, at=at, **changes)


EXCHANGE: list[tuple[bytes, Any]] = [
    # What is sent, and the reply expected (None: no reply).
    (CHECKED + b"\n", {"status": "OK", "device": "pompe-7", "count": 4, "mean": 0.46875, "id": 4711}),
    (_reading(id=None), {"status": "OK", "device": "pompe-7", "count": 4, "mean": 0.46875}),
    (_reading(samples=[]), {"status": "OK", "device": "pompe-7", "count": 0, "mean": None, "id": 4711}),
    (_reading(samples=None, id="a"), {"status": "OK", "device": "pompe-7", "count": 0, "mean": None, "id": "a"}),
    (_reading(samples=[1, 2], tags_={"floor": 3.0, "line": None}), {"status": "OK", "device": "pompe-7", "count": 2, "mean": 1.5, "id": 4711}),
    (_reading(device="\U0001f321" * 64, unit="F", note=None, tags_={"floor": None}), {"status": "OK", "device": "\U0001f321" * 64, "count": 4, "mean": 0.46875, "id": 4711}),
    (_reading(device=7), _error("device must be a string of 1 to 64 characters")),
    (_reading(device=""), _error("device must be a string of 1 to 64 characters")),
    (_reading(device="x" * 65), _error("device must be a string of 1 to 64 characters")),
    (_reading(at="noon"), _error("at must be a number")),
    (_reading(celsius=None), _error("celsius must be a number")),
    (_reading(celsius=True), _error("celsius must be a number")),
    (_reading(humidity=1.5), _error("humidity must be a number from 0 to 1")),
    (_reading(tags=[]), _error("tags must be an object with a string site")),
    (_reading(tags={"floor": 1}), _error("tags must be an object with a string site")),
    (_reading(tags_={"floor": 201}), _error("tags.floor must be a whole number from 0 to 200")),
    (_reading(tags_={"floor": 2.5}), _error("tags.floor must be a whole number from 0 to 200")),
    (_reading(tags_={"floor": "3"}), _error("tags.floor must be a whole number from 0 to 200")),
    (_reading(tags_={"line": 5}), _error("tags.line must be a string or null")),
    (_reading(samples="many"), _error("samples must be a list of at most 64 numbers")),
    (_reading(samples=[0.5] * 65), _error("samples must be a list of at most 64 numbers")),
    (_reading(samples=[1, "2"]), _error("samples must be a list of at most 64 numbers")),
    (_reading(unit="K"), _error("unit must be C or F")),
    (_reading(note=5), _error("note must be a string")),
    # The envelope's errors.
    (b"not json\n", {"status": "ERROR", "message": "Invalid JSON", "code": "invalid_json"}),
    (b"[1,2]\n", {"status": "ERROR", "message": "Message must be a JSON object", "code": "not_an_object"}),
    (b'{"id":5}\n', {"status": "ERROR", "message": "Message needs a string type", "code": "invalid_type", "id": 5}),
    (b'{"type":"NOPE","id":"x"}\n', {"status": "ERROR", "message": "Unknown type", "code": "unknown_type", "id": "x"}),
    (_reading(id=True), {"status": "ERROR", "message": "The id must be a string, a number or null", "code": "invalid_id"}),
    (b" \t\r\n\n", None),
    # One-way: no reply, good or bad; LATEST tells what was kept.
    (_push("d-1", 1.5), None),
    (_push("d-1", 2.5, id=9), None),
    (_push("d-1", 3.5, humidity=2), None),
    (b'{"type":"LATEST","device":"d-1"}\r\n', {"status": "OK", "device": "d-1", "readings": 2, "at": 2.5, "celsius": 21.75}),
    (b'{"type":"LATEST","device":"d-2","id":1}\n', {"status": "OK", "device": "d-2", "readings": 0, "id": 1}),
    (b'{"type":"LATEST","device":5}\n', _error("device must be a string of 1 to 64 characters", withId=False)),
]


def _exchange(port: int, data: bytes, count: int, seconds: float = 10) -> list[bytes]:
    """
    Send C{data} on a new connection and read C{count} reply lines, then
    make sure no more come (each within C{seconds}).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.sendall(data + b'{"type":"LATEST","device":"end"}\n')
        buffer = b""
        deadline = time.monotonic() + seconds
        while buffer.count(b"\n") < count + 1 and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buffer += chunk
    replies = buffer.split(b"\n")[:-1]
    # The last is the reply to the LATEST sent after everything: no other came between.
    assert replies and json.loads(replies[-1]).get("device") == "end", replies[-3:]
    return replies[:-1]


class _SameReplies:
    """
    One server of the benchmark's realistic service answers L{EXCHANGE} as
    the contract says.
    """

    assertEqual: Any
    addCleanup: Any

    def start(self) -> Daemon:
        raise NotImplementedError()

    def test_replies(self) -> None:
        """
        Good readings get the device, count and mean; each broken rule its
        own field error; one-way readings no reply, and the latest of them
        is kept.  A server that checked less, or answered otherwise, would
        be measured doing less than jsonproto's handler does.
        """
        server = self.start()
        self.addCleanup(server.stop)
        expected = [reply for _, reply in EXCHANGE if reply is not None]
        replies = _exchange(server.port, b"".join(data for data, _ in EXCHANGE), len(expected))
        self.assertEqual([json.loads(r) for r in replies], expected)
        # Byte for byte, where JSON gives the choice: no spaces, UTF-8.
        self.assertEqual(replies[0], b'{"status":"OK","device":"pompe-7","count":4,"mean":0.46875,"id":4711}')
        self.assertEqual(replies[5], '{"status":"OK","device":"%s","count":4,"mean":0.46875,"id":4711}'.encode() % ("\U0001f321" * 64).encode())

    def test_pushedReadingFirst(self) -> None:
        """
        The benchmark's one-way message, as the stream client sends it, is
        kept: a LATEST after a thousand of them counts a thousand.
        """
        server = self.start()
        self.addCleanup(server.stop)
        [reply] = _exchange(server.port, (PUSHED + b"\n") * 1000 + b'{"type":"LATEST","device":"pompe-7"}\n', 1)
        self.assertEqual(json.loads(reply), {"status": "OK", "device": "pompe-7", "readings": 1000, "at": 1767225600.125, "celsius": 21.75})


class JsonprotoTests(_SameReplies, SynchronousTestCase):
    def start(self) -> Daemon:
        return Daemon("--handlers", "bench.realistic")


class _PeerTests(_SameReplies):
    peer: str

    def start(self) -> Daemon:
        missing = missingPeer(self.peer)
        if missing:
            raise SkipTest(missing)
        return PeerServer(self.peer)


class NodePeerTests(_PeerTests, SynchronousTestCase):
    peer = "node"


class UvloopPeerTests(_PeerTests, SynchronousTestCase):
    peer = "uvloop"
