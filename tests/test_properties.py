"""
Properties that hold for any input: arbitrary byte streams split at
arbitrary points, arbitrary JSON in every field of every message type.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.wire.framing import encodeInt32
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.protocol import _looksLikeClientHello
from tests.support import connect

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

jsonValues = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
ids = st.none() | st.text(max_size=8) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    """
    A request of any type, known or not, with anything in its fields.
    """
    message: dict[str, Any] = {"type": draw(st.sampled_from(["GREETING", "SUM", "NOPE"]) | st.text(max_size=6))}
    for field in draw(st.lists(st.sampled_from(["name", "a", "b", "extra"]), unique=True)):
        message[field] = draw(jsonValues)
    if draw(st.booleans()):
        message["id"] = draw(ids)
    return message


def strictLoads(data: bytes) -> Any:
    """
    Parse as RFC 8259 allows and nothing more.
    """

    def reject(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    value = json.loads(data.decode("utf-8"), parse_constant=reject)
    return value


def splits(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({min(p, len(data)) for p in points})
    pieces, start = [], 0
    for cut in cuts + [len(data)]:
        pieces.append(data[start:cut])
        start = cut
    return pieces


def feed(proto: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        proto.dataReceived(piece)


class LineProperties(SynchronousTestCase):
    def factory(self) -> JSONServerFactory:
        return JSONServerFactory(framing="line", limits=Limits(maxMessageSize=4096, maxErrors=0), clock=Clock())

    @SETTINGS
    @given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
    def test_anyBytes(self, data: bytes, points: list[int]) -> None:
        """
        Any bytes, split anywhere: nothing raises, every reply is strict
        JSON on its own line, and there is one reply per non-blank line.
        """
        # A stream that opens with a TLS ClientHello is closed at once (a
        # TLS client on a plaintext port), without replies.
        assume(not _looksLikeClientHello(splits(data, points)[0]))
        proto, transport = connect(self.factory())
        feed(proto, splits(data, points))
        out = transport.value()
        self.assertTrue(out == b"" or out.endswith(b"\n"))
        replies = [strictLoads(l) for l in out.split(b"\n")[:-1]]
        complete = data.split(b"\n")[:-1]
        expected = [l for l in complete if l.rstrip(b"\r") and not l.rstrip(b"\r").isspace()]
        self.assertEqual(len(replies), len(expected))
        for reply in replies:
            self.assertIn(reply["status"], ("OK", "ERROR"))

    @SETTINGS
    @given(
        st.lists(requests() | st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=12),
        st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
    )
    def test_requestsAmongGarbage(self, items: list[Any], points: list[int]) -> None:
        """
        Requests of every type with any field values, mixed with garbage
        lines and split anywhere: each line gets exactly one reply, in
        order; each request with a valid id gets its id back; no reply
        holds a non-finite number.
        """
        lines = [
            json.dumps(item, separators=(",", ":")).encode() if isinstance(item, dict) else item
            for item in items
        ]
        lines = [l for l in lines if l.rstrip(b"\r") and not l.rstrip(b"\r").isspace()]
        stream = b"".join(l + b"\n" for l in lines)
        assume(not _looksLikeClientHello(splits(stream, points)[0]))
        proto, transport = connect(self.factory())
        feed(proto, splits(stream, points))
        replies = [strictLoads(l) for l in transport.value().split(b"\n")[:-1]]
        self.assertEqual(len(replies), len(lines))
        for line, reply in zip(lines, replies):
            try:
                sent = json.loads(line)
            except ValueError:
                continue
            if isinstance(sent, dict) and "id" in sent and not isinstance(sent["id"], (bool, list, dict)):
                self.assertEqual(reply.get("id"), sent["id"])
            if reply["status"] == "OK" and "result" in reply:
                self.assertTrue(math.isfinite(reply["result"]))


class Int32Properties(SynchronousTestCase):
    @SETTINGS
    @given(
        st.lists(requests().map(lambda m: json.dumps(m).encode()) | st.binary(max_size=60), max_size=12),
        st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
    )
    def test_anyFrames(self, payloads: list[bytes], points: list[int]) -> None:
        """
        Frames holding anything, split anywhere: one strict-JSON reply per
        frame, framed correctly, in order.
        """
        factory = JSONServerFactory(framing="int32", limits=Limits(maxMessageSize=4096, maxErrors=0), clock=Clock())
        proto, transport = connect(factory)
        feed(proto, splits(b"".join(encodeInt32(p) for p in payloads), points))
        out = transport.value()
        replies = []
        while out:
            length = int.from_bytes(out[:4], "big")
            self.assertGreaterEqual(len(out), 4 + length)
            replies.append(strictLoads(out[4 : 4 + length]))
            out = out[4 + length :]
        self.assertEqual(len(replies), len(payloads))
