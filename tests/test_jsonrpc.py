"""
JSON-RPC 2.0 (C{--envelope jsonrpc}): the specification's own examples,
batches and notifications on both framings, the same limits as jsonproto's
envelope, and a maintained client library that no one here wrote, over a
real socket.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import msgspec
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jsonproto.core.pipeline import ENVELOPES, Pipeline
from jsonproto.core.rpcpipeline import RPCPipeline
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.protocol import PIPELINES
from tests import rpchandlers
from tests.e2e import startDaemon
from tests.support import connect, readInt32, readLines

# The examples of https://www.jsonrpc.org/specification, section 7, that
# use params by name, with the responses it gives (a response's "data"
# member, which the specification leaves to the server, is compared only
# where given here).
SPECIFICATION = [
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
    ),
    ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ('{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"},
    ),
    (
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    (
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    ),
    (
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method"]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    ("[]", {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}),
    ("[1]", [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}]),
    (
        "[1,2,3]",
        [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}] * 3,
    ),
    (
        '[{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": "2"},'
        ' {"jsonrpc": "2.0", "method": "notify_hello", "params": {"n": 7}},'
        ' {"foo": "boo"},'
        ' {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        ' {"jsonrpc": "2.0", "method": "get_data", "id": "9"}]',
        [
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
        ],
    ),
    (
        '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]}, {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
        None,
    ),
]


def _withoutData(value: Any) -> Any:
    if isinstance(value, list):
        return [_withoutData(v) for v in value]
    if isinstance(value, dict) and "error" in value:
        return {**value, "error": {k: v for k, v in value["error"].items() if k != "data"}}
    return value


class Reading(msgspec.Struct):
    celsius: float


class _RPC:
    framing: str
    read: Any
    assertEqual: Any
    assertTrue: Any

    def setUp(self) -> None:
        self.clock = Clock()
        self.dispatcher = defaultDispatcher()
        rpchandlers.register(self.dispatcher)
        self.factory = JSONServerFactory(
            self.dispatcher, framing=self.framing, envelope="jsonrpc", limits=Limits(maxMessageSize=4000), clock=self.clock
        )
        self.proto, self.transport = connect(self.factory)

    def frame(self, text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(4, "big") + data if self.framing == "int32" else data + b"\n"

    def exchange(self, text: str) -> list[Any]:
        self.proto.dataReceived(self.frame(text))
        replies = self.read(self.transport.value())
        self.transport.clear()
        return replies

    def test_specification(self) -> None:
        """
        Every example of the specification that names its params gets the
        response the specification gives, and notifications none.
        """
        for request, expected in SPECIFICATION:
            replies = self.exchange(request)
            self.assertEqual(_withoutData(replies), [] if expected is None else [expected], request)

    def test_dataCarriesTheCode(self) -> None:
        """
        An error's data gives jsonproto's stable code and the detail.
        """
        [reply] = self.exchange('{"jsonrpc":"2.0","method":"SUM","params":{"a":"x","b":1},"id":7}')
        self.assertEqual(
            reply["error"],
            {"code": -32602, "message": "Invalid params", "data": {"code": "invalid_field", "detail": "$.a: expected a number, got a string"}},
        )

    def test_seedTypes(self) -> None:
        """
        The seed's types answer by method: SUM's only field is its result.
        """
        replies = self.exchange(
            '[{"jsonrpc":"2.0","method":"SUM","params":{"a":10,"b":20},"id":1},'
            '{"jsonrpc":"2.0","method":"GREETING","params":{"name":"Alice"},"id":2}]'
        )
        self.assertEqual(
            replies,
            [[{"jsonrpc": "2.0", "result": 30, "id": 1}, {"jsonrpc": "2.0", "result": {"reply": "Hello, Alice!"}, "id": 2}]],
        )

    def test_oneWayCalled(self) -> None:
        """
        A one-way method called with an id gets an empty result once its
        handler has taken the message, and the error when it is refused;
        called as a notification, nothing either way.
        """
        taken: list[Any] = []

        def record(message: Reading, context: Any) -> None:
            taken.append(message.celsius)

        self.dispatcher.register("record", record, oneWay=True)
        replies = self.exchange(
            '[{"jsonrpc":"2.0","method":"record","params":{"celsius":21.5},"id":1},'
            '{"jsonrpc":"2.0","method":"record","params":{"celsius":true},"id":2},'
            '{"jsonrpc":"2.0","method":"record","params":{"celsius":true}}]'
        )
        [[ok, refused]] = replies
        self.assertEqual(ok, {"jsonrpc": "2.0", "result": {}, "id": 1})
        self.assertEqual((refused["error"]["code"], refused["error"]["data"]["code"], refused["id"]), (-32602, "invalid_field", 2))
        [single] = self.exchange('{"jsonrpc":"2.0","method":"record","params":{},"id":"x"}')
        self.assertEqual((single["error"]["code"], single["id"]), (-32602, "x"))
        self.assertEqual(taken, [21.5])

    def test_positionalParams(self) -> None:
        """
        Params by position are refused: a message's fields have names.
        """
        [reply] = self.exchange('{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}')
        self.assertEqual((reply["error"]["code"], reply["id"]), (-32602, 1))

    def test_batchWaitsForItsSlowest(self) -> None:
        """
        A batch with a request still being answered is answered as one
        array, in order, once every reply is in; a request after the batch
        waits behind it.
        """
        slow: list[Deferred[dict[str, Any]]] = []
        self.dispatcher.register("SLOW", lambda m, c: slow.append(Deferred()) or slow[-1])
        self.proto.dataReceived(
            self.frame('[{"jsonrpc":"2.0","method":"SLOW","id":1},{"jsonrpc":"2.0","method":"SUM","params":{"a":1,"b":1},"id":2},{"jsonrpc":"2.0","method":"SLOW","id":3}]')
            + self.frame('{"jsonrpc":"2.0","method":"SUM","params":{"a":2,"b":2},"id":4}')
        )
        self.assertEqual(self.transport.value(), b"")
        slow[1].callback({"n": 3})
        self.assertEqual(self.transport.value(), b"")
        slow[0].callback({"n": 1})
        self.assertEqual(
            self.read(self.transport.value()),
            [
                [
                    {"jsonrpc": "2.0", "result": {"n": 1}, "id": 1},
                    {"jsonrpc": "2.0", "result": 2, "id": 2},
                    {"jsonrpc": "2.0", "result": {"n": 3}, "id": 3},
                ],
                {"jsonrpc": "2.0", "result": 4, "id": 4},
            ],
        )

    def test_sameLimits(self) -> None:
        """
        The listener's limits hold as they do for jsonproto messages: a
        message too long, and the error budget.
        """
        [reply] = self.exchange('{"jsonrpc":"2.0","method":"GREETING","params":{"name":"' + "x" * 5000 + '"},"id":1}')
        self.assertEqual(reply["error"]["code"], -32004)
        self.assertEqual(reply["error"]["data"]["code"], "message_too_long")


class LineRPCTests(_RPC, SynchronousTestCase):
    framing = "line"
    read = staticmethod(readLines)


class Int32RPCTests(_RPC, SynchronousTestCase):
    framing = "int32"
    read = staticmethod(readInt32)


class PipelineChoiceTests(SynchronousTestCase):
    """
    Each envelope a factory accepts gets its own pipeline.
    """

    def test_everyEnvelope(self) -> None:
        """
        Every envelope C{--envelope} accepts has a pipeline: one missing
        would let the daemon start, and then fail every connection.
        """
        self.assertEqual(sorted(PIPELINES), sorted(ENVELOPES))

    def test_jsonrpcConnection(self) -> None:
        """
        A connection to a JSON-RPC listener is answered by L{RPCPipeline},
        one to a jsonproto listener by the plain L{Pipeline}.
        """
        for envelope, expected in [("jsonrpc", RPCPipeline), ("jsonproto", Pipeline)]:
            proto, _ = connect(JSONServerFactory(defaultDispatcher(), envelope=envelope, clock=Clock()))
            self.assertIs(type(proto.pipeline), expected, envelope)


class ClientLibraryTests(TestCase):
    """
    jsonrpcclient (PyPI), a maintained JSON-RPC 2.0 client that no one here
    wrote, builds the requests and reads the responses of a real daemon.
    """

    timeout = 60

    @inlineCallbacks
    def test_jsonrpcclient(self) -> None:
        from jsonrpcclient import Error, Ok, notification, parse, request

        _, [port] = yield startDaemon(
            self, "--port", "tcp:0:interface=127.0.0.1", "--envelope", "jsonrpc", "--handlers", "tests.rpchandlers"
        )

        def client() -> list[Any]:
            calls = [
                request("subtract", params={"minuend": 42, "subtrahend": 23}),
                notification("update", params={"x": 1}),
                request("SUM", params={"a": 10, "b": 20}),
                request("nope"),
            ]
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"".join(json.dumps(c).encode() + b"\n" for c in calls))
                s.sendall(json.dumps([request("get_data"), request("subtract", params={"minuend": 1, "subtrahend": 2})]).encode() + b"\n")
                s.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := s.recv(65536):
                    received += chunk
            return [parse(json.loads(l)) for l in received.splitlines()]

        replies = yield deferToThread(client)
        single, batch = replies[:3], replies[3]
        self.assertEqual([type(r) for r in single], [Ok, Ok, Error])
        self.assertEqual([r.result for r in single[:2]], [19, 30])
        self.assertEqual(single[2].code, -32601)
        self.assertEqual([r.result for r in batch], [["hello", 5], -1])
