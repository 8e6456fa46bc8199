"""
A machine-readable description of a jsonproto service: an AsyncAPI 3.0
document with a JSON Schema (draft 2020-12) for every message it takes and
sends, made from what a L{Dispatcher} knows of its types.

    jsonproto schema --handlers myapp.handlers > asyncapi.json

Every registered type has a request and, unless it is one-way, a reply and
the error reply; typed handlers (L{jsonproto.dispatch.typed}) are described
by their fields, untyped ones as what they are, an object with that
C{type}; pushes declared with L{Dispatcher.declarePush} are messages the
service sends.

Each schema is whole in itself (its own C{$id}, nested types under its
C{$defs}), so a tool can take any one out of the document and validate
messages with it.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Iterable

import msgspec

import jsonproto
from jsonproto import errors
from jsonproto.dispatch.dispatcher import Declaration, Dispatcher, PushType

ASYNCAPI_VERSION = "3.0.0"
JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
"""
The AsyncAPI name of the schemas' language: JSON Schema 2020-12, rather
than AsyncAPI's own dialect of draft 07.
"""

CHANNEL = "connection"

ID = {
    "description": "Chosen by the client; the reply carries it back unchanged. A string, a number or null.",
    "type": ["string", "number", "null"],
}

CHANNEL_DESCRIPTION = (
    "One TCP or TLS connection. Each message is one JSON object, framed by a newline or by a "
    "4-byte big-endian length, as the listener is configured. Replies come in the order of the "
    "requests; a message from the server is a reply if and only if it has a status."
)


def errorCodes() -> list[errors.ErrorCode]:
    """
    The error codes jsonproto itself sends, in the order they are defined.
    """
    return [value for value in vars(errors).values() if isinstance(value, errors.ErrorCode)]


def _schemaOf(declared: type, ident: str) -> dict[str, Any]:
    """
    C{declared}'s JSON Schema, its own type at the top and the types it
    uses under C{$defs}.
    """
    generated = msgspec.json.schema(declared)
    definitions = generated.get("$defs", {})
    top = generated["$ref"].rsplit("/", 1)[-1]
    schema = copy.deepcopy(definitions[top])
    # Kept under $defs as well only if something refers back to it.
    others = {name: value for name, value in definitions.items() if name != top}
    if f'"#/$defs/{top}"' in json.dumps(others) or f'"#/$defs/{top}"' in json.dumps(schema):
        others[top] = definitions[top]
    result: dict[str, Any] = {"$schema": JSON_SCHEMA, "$id": ident}
    result.update(schema)
    if others:
        result["$defs"] = others
    return result


def _object(ident: str, title: str, properties: dict[str, Any], required: list[str], description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA, "$id": ident, "title": title, "type": "object"}
    if description:
        schema["description"] = description
    schema["properties"] = properties
    schema["required"] = required
    return schema


def _withMembers(schema: dict[str, Any], first: dict[str, Any], last: dict[str, Any], required: list[str], title: str) -> dict[str, Any]:
    """
    A type's schema with the members the protocol adds: C{first} before its
    fields, C{last} after them.
    """
    schema["title"] = title
    schema["properties"] = {**first, **schema.get("properties", {}), **last}
    schema["required"] = [*required, *schema.get("required", [])]
    return schema


def requestSchema(declaration: Declaration, key: str) -> dict[str, Any]:
    """
    The schema of C{declaration}'s requests: C{type}, C{id}, and its fields
    if it is typed.
    """
    messageType = declaration.messageType
    envelope = {"type": {"const": messageType}}
    ident = f"urn:jsonproto:{key}"
    if declaration.request is None:
        return _object(
            ident, f"{messageType} request", {**envelope, "id": ID}, ["type"],
            "Its handler declares no fields: any object with this type reaches it.",
        )
    return _withMembers(_schemaOf(declaration.request, ident), envelope, {"id": ID}, ["type"], f"{messageType} request")


def replySchema(declaration: Declaration, key: str) -> dict[str, Any]:
    """
    The schema of C{declaration}'s OK replies: C{status}, its fields if
    declared, and the request's C{id} if it had one.
    """
    messageType = declaration.messageType
    status = {"status": {"const": "OK"}}
    ident = f"urn:jsonproto:{key}"
    if declaration.reply is None:
        return _object(ident, f"{messageType} reply", {**status, "id": ID}, ["status"], "Its handler declares no reply fields.")
    return _withMembers(_schemaOf(declaration.reply, ident), status, {"id": ID}, ["status"], f"{messageType} reply")


def errorSchema() -> dict[str, Any]:
    """
    The error reply: one of jsonproto's own codes, each with its message,
    or a code a handler made (L{jsonproto.errors.ErrorCode}).
    """
    codes = errorCodes()
    schema = _object(
        "urn:jsonproto:error",
        "Error reply",
        {
            "status": {"const": "ERROR"},
            "message": {"type": "string", "description": "The same for every error of a code."},
            "code": {"type": "string", "description": "Stable: programs match on it."},
            "detail": {"type": "string", "description": "What exactly was wrong, for a person."},
            "id": ID,
        },
        ["status", "message", "code"],
        "Any request may be answered so; invalid_field is the answer to a message whose fields do not fit its type.",
    )
    schema["anyOf"] = [
        {"properties": {"code": {"const": code.code}, "message": {"const": code.message}}} for code in codes
    ] + [
        {
            "description": "A code of a handler's own.",
            "properties": {"code": {"not": {"enum": [code.code for code in codes]}}},
        }
    ]
    return schema


def pushSchema(push: PushType[Any], key: str) -> dict[str, Any]:
    """
    The schema of a declared push: C{type}, then its fields if declared.
    """
    envelope = {"type": {"const": push.name}}
    ident = f"urn:jsonproto:{key}"
    title = f"{push.name} push"
    if push.fields is None:
        return _object(ident, title, envelope, ["type"], "Its fields are not declared.")
    return _withMembers(_schemaOf(push.fields, ident), envelope, {}, ["type"], title)


_KEY = re.compile(r"[^A-Za-z0-9._-]")


class _Keys:
    """
    AsyncAPI's names for components (letters, digits, C{.}, C{-} and
    C{_}), made from message types, which may hold any character; unique.
    """

    def __init__(self, *reserved: str) -> None:
        self._taken: set[str] = set(reserved)

    def __call__(self, name: str, suffix: str = "") -> str:
        base = _KEY.sub("_", name) + (f".{suffix}" if suffix else "")
        key, n = base, 1
        while key in self._taken:
            n += 1
            key = f"{base}{n}"
        self._taken.add(key)
        return key


def _message(name: str, title: str, schema: dict[str, Any], summary: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": schema},
    }


def describe(dispatcher: Dispatcher, title: str = "jsonproto service", version: str = "1.0.0") -> dict[str, Any]:
    """
    The AsyncAPI 3.0 document describing the messages C{dispatcher}
    takes and sends.

    @param title: The service's name, for C{info.title}.
    @param version: The service's version, for C{info.version}.
    """
    errorKey = "error"
    keys = _Keys(errorKey)
    operationKeys = _Keys("refusals")
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    channel = {"$ref": f"#/channels/{CHANNEL}"}

    def ref(key: str) -> dict[str, str]:
        return {"$ref": f"#/channels/{CHANNEL}/messages/{key}"}

    messages[errorKey] = _message("ERROR", "Error reply", errorSchema(), "The reply to a request that failed.")
    for declaration in dispatcher.declarations:
        messageType = declaration.messageType
        requestKey = keys(messageType, "request")
        messages[requestKey] = _message(
            messageType, f"{messageType} request", requestSchema(declaration, requestKey),
            f"A {messageType} message, one-way: no reply is sent for it." if declaration.oneWay else f"A {messageType} request.",
        )
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": channel,
            "title": f"{messageType} ({'one-way' if declaration.oneWay else 'request and reply'})",
            "messages": [ref(requestKey)],
        }
        if declaration.oneWay:
            operation["description"] = (
                "One-way: the server sends no reply, not even an error; its errors are logged and "
                "counted on the server."
            )
            operation["x-jsonproto-one-way"] = True
        else:
            replyKey = keys(messageType, "reply")
            messages[replyKey] = _message(
                messageType, f"{messageType} reply", replySchema(declaration, replyKey), f"The reply to {messageType}."
            )
            operation["reply"] = {"channel": channel, "messages": [ref(replyKey), ref(errorKey)]}
        operations[operationKeys(messageType)] = operation
    for push in dispatcher.pushes:
        pushKey = keys(push.name, "push")
        messages[pushKey] = _message(push.name, f"{push.name} push", pushSchema(push, pushKey), f"Pushed by the server: {push.name}.")
        operations[operationKeys(push.name, "push")] = {
            "action": "send",
            "channel": channel,
            "title": f"{push.name} (pushed)",
            "description": "Sent by the server of its own accord, outside request and reply: it has no status.",
            "messages": [ref(pushKey)],
        }
    operations["refusals"] = {
        "action": "send",
        "channel": channel,
        "title": "Errors that answer no request",
        "description": (
            "server_busy or too_many_connections on connecting, too_many_errors when the error "
            "budget is spent, message_too_long on the int32 framing: the server closes the "
            "connection after each."
        ),
        "messages": [ref(errorKey)],
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": f"Made by jsonproto {jsonproto.__version__} from the handlers the service registers.",
        },
        "defaultContentType": "application/json",
        "channels": {
            CHANNEL: {
                "title": "A jsonproto connection",
                "description": CHANNEL_DESCRIPTION,
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": operations,
        "components": {"messages": messages},
    }


def write(document: dict[str, Any]) -> str:
    """
    The document as JSON text, indented, non-ASCII as it is, ending in a
    newline.
    """
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
