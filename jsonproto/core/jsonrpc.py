"""
The JSON-RPC 2.0 envelope (U{https://www.jsonrpc.org/specification}), for
listeners started with C{--envelope jsonrpc}.

A request's C{method} names the message type and its C{params} (an object)
are the message's fields; the same handlers answer it, under the same
limits, as a jsonproto message.  The handler's reply fields are the
C{result} object, except that a reply whose only field is C{result} (the
seed's SUM: C{{"result": 30}}) has that value as its C{result} (C{30}).  This module only translates: a request
into the jsonproto message its handler sees (L{request}), and the jsonproto
reply into a JSON-RPC response (L{response}).  The pipeline
(L{jsonproto.core.rpcpipeline}) does the rest: batches, notifications, order.

Error codes: the specification's own where it has one, else one of its
implementation-defined server codes (-32000 to -32099), with jsonproto's
stable code and detail in C{data}:

    {"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params",
     "data":{"code":"invalid_field","detail":"$.a: expected a number, got a string"}},"id":1}
"""

from __future__ import annotations

from typing import Any

from jsonproto.core.envelope import _validId
from jsonproto.errors import INVALID_FIELD, ErrorCode

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
"""
The code of an error a handler raised with a code of its own.
"""

RPC_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_json": (PARSE_ERROR, "Parse error"),
    "nesting_too_deep": (PARSE_ERROR, "Parse error"),
    "not_an_object": (INVALID_REQUEST, "Invalid Request"),
    "invalid_type": (INVALID_REQUEST, "Invalid Request"),
    "invalid_id": (INVALID_REQUEST, "Invalid Request"),
    "invalid_request": (INVALID_REQUEST, "Invalid Request"),
    "unknown_type": (METHOD_NOT_FOUND, "Method not found"),
    "invalid_field": (INVALID_PARAMS, "Invalid params"),
    "internal_error": (INTERNAL_ERROR, "Internal error"),
    "server_busy": (-32001, "Server busy"),
    "shutting_down": (-32002, "Shutting down"),
    "request_timed_out": (-32003, "Request timed out"),
    "message_too_long": (-32004, "Message too long"),
    "too_many_errors": (-32005, "Too many errors"),
}
"""
The JSON-RPC code and message of each of jsonproto's error codes.  Any
other (a number out of range, a handler's code of its own) is a server
error, L{SERVER_ERROR}, with jsonproto's message.
"""

INVALID_RPC = ErrorCode("invalid_request", "Invalid Request")
"""
A JSON-RPC request that breaks the specification's envelope rules.
"""


def request(value: Any) -> tuple[Any, Any, bool]:
    """
    The jsonproto message a JSON-RPC request stands for.

    @return: C{(message, id, notification)}: the message (C{{"type":
        method, **params}}, with the request's C{id} if it has one) or, if
        the request is not one, the jsonproto error reply to send instead;
        the id to answer with (L{None} when there is none to echo); and
        whether it is a notification, which gets no response at all.
    """
    if type(value) is not dict:
        return INVALID_RPC.reply("a request is an object"), None, False
    hasId = "id" in value
    rpcId = value.get("id")
    if hasId and not _validId(rpcId):
        return INVALID_RPC.reply("the id must be a string, a number or null"), None, False
    if value.get("jsonrpc") != "2.0":
        return INVALID_RPC.reply('"jsonrpc" must be "2.0"'), rpcId, False
    method = value.get("method")
    if type(method) is not str:
        return INVALID_RPC.reply('"method" must be a string'), rpcId, False
    params = value.get("params", None)
    if params is None:
        message: dict[str, Any] = {}
    elif type(params) is dict:
        if "type" in params or "id" in params:
            return INVALID_FIELD.reply('"type" and "id" are not params: the method and the id say them'), rpcId, not hasId
        message = dict(params)
    else:
        return INVALID_FIELD.reply("params must be an object, by name"), rpcId, not hasId
    message["type"] = method
    if hasId:
        message["id"] = rpcId
    return message, rpcId, not hasId


def response(reply: dict[str, Any], rpcId: Any) -> dict[str, Any]:
    """
    The JSON-RPC response for a jsonproto reply: its fields (without
    C{status} and C{id}) as the C{result}, or its error as an C{error}.
    """
    if reply.get("status") != "ERROR":
        result: Any = {key: value for key, value in reply.items() if key != "status" and key != "id"}
        if len(result) == 1 and "result" in result:
            # {"result": 30} is the result 30, as JSON-RPC services write it.
            result = result["result"]
        return {"jsonrpc": "2.0", "result": result, "id": rpcId}
    code = reply.get("code")
    known = RPC_ERRORS.get(code) if type(code) is str else None
    if known is None:
        rpcCode, rpcMessage = SERVER_ERROR, reply.get("message", "Server error")
    else:
        rpcCode, rpcMessage = known
    data: dict[str, Any] = {"code": code}
    if "detail" in reply:
        data["detail"] = reply["detail"]
    return {"jsonrpc": "2.0", "error": {"code": rpcCode, "message": rpcMessage, "data": data}, "id": rpcId}
