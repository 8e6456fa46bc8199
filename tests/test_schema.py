"""
C{jsonproto schema}: the AsyncAPI document of a service, checked against the
official meta-schemas, and its schemas against the messages the service
really takes and sends.

The AsyncAPI 3.0.0 meta-schema is the AsyncAPI project's own, from its npm
package C{@asyncapi/specs} (no PyPI package ships it): the test installs
that package with C{npm install --prefix} into a temporary directory, once
per run.  The JSON Schema 2020-12 meta-schema is the one
C{jsonschema-specifications} ships, installed from PyPI with C{jsonschema}
(the C{test} extra).
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Iterator

import jsonschema
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from jsonproto.daemon.handlers import loadDispatcher
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.tools import cli
from jsonproto.tools.schema import SCHEMA_FORMAT, describe

ASYNCAPI_SPECS = "@asyncapi/specs@6.11.1"


@functools.cache
def asyncapiMetaSchema() -> dict[str, Any]:
    """
    The official AsyncAPI 3.0.0 JSON Schema, from C{@asyncapi/specs}.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise SkipTest("npm is not installed: it brings the AsyncAPI meta-schema (@asyncapi/specs)")
    directory = tempfile.mkdtemp(prefix="jsonproto-asyncapi-specs-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    subprocess.run(
        [npm, "install", "--prefix", directory, "--no-audit", "--no-fund", "--silent", ASYNCAPI_SPECS],
        check=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    path = os.path.join(directory, "node_modules", "@asyncapi", "specs", "schemas", "3.0.0.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def checkDocument(document: dict[str, Any]) -> None:
    """
    Raise if C{document} is not a valid AsyncAPI 3.0.0 document, or holds
    a payload schema that is not valid JSON Schema 2020-12.
    """
    meta = asyncapiMetaSchema()
    jsonschema.validators.validator_for(meta)(meta).validate(document)
    for schema in payloadSchemas(document):
        jsonschema.Draft202012Validator.check_schema(schema)


def payloadSchemas(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for message in document["components"]["messages"].values():
        assert message["payload"]["schemaFormat"] == SCHEMA_FORMAT
        yield message["payload"]["schema"]


def validator(document: dict[str, Any], key: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(document["components"]["messages"][key]["payload"]["schema"])


def pointers(value: Any) -> Iterator[str]:
    """
    Every C{$ref} into the document itself (those inside a payload schema
    point into that schema, whose C{$id} is its own).
    """
    if isinstance(value, dict):
        if "schemaFormat" in value:
            return
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for child in value.values():
            yield from pointers(child)
    elif isinstance(value, list):
        for child in value:
            yield from pointers(child)


def resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class SchemaDocumentTests(SynchronousTestCase):
    def test_seedValid(self) -> None:
        """
        The seed's document is valid AsyncAPI 3.0.0, every payload valid
        JSON Schema 2020-12, and every reference in it leads somewhere.
        """
        document = describe(defaultDispatcher())
        checkDocument(document)
        self.assertEqual(document["asyncapi"], "3.0.0")
        for pointer in pointers(document):
            resolve(document, pointer)
        self.assertEqual(set(document["operations"]), {"GREETING", "SUM", "refusals"})

    def test_checksCanFail(self) -> None:
        """
        The meta-schemas do find mistakes: an operation without an action,
        a payload schema with a bad keyword value.
        """
        document = describe(defaultDispatcher())
        del document["operations"]["SUM"]["action"]
        self.assertRaises(jsonschema.ValidationError, checkDocument, document)
        document = describe(defaultDispatcher())
        document["components"]["messages"]["SUM.request"]["payload"]["schema"]["required"] = "a"
        self.assertRaises(jsonschema.SchemaError, checkDocument, document)

    def test_seedSchemasFitTheService(self) -> None:
        """
        What the seed really answers fits its reply schemas, and the
        requests it refuses do not fit its request schemas: true is no
        number there either.
        """
        document = describe(defaultDispatcher())
        dispatcher = defaultDispatcher()
        good = [{"type": "SUM", "a": 10, "b": 20, "id": 1}, {"type": "SUM", "a": 0.5, "b": 10**30}]
        bad = [{"type": "SUM", "a": True, "b": 1}, {"type": "SUM", "a": 1}, {"type": "SUM", "a": "1", "b": 2}]
        for message in good:
            self.assertTrue(validator(document, "SUM.request").is_valid(message), message)
            validator(document, "SUM.reply").validate(dispatcher.dispatch(message, None))
        for message in bad:
            self.assertFalse(validator(document, "SUM.request").is_valid(message), message)
            reply = dispatcher.dispatch(message, None)
            self.assertEqual(reply["code"], "invalid_field")
            validator(document, "error").validate(reply)
            self.assertFalse(validator(document, "SUM.reply").is_valid(reply))
        validator(document, "GREETING.request").validate({"type": "GREETING", "name": "Zoë"})
        validator(document, "GREETING.reply").validate(dispatcher.dispatch({"type": "GREETING", "name": "Zoë"}, None))
        for reply in [dispatcher.dispatch({"type": "NOPE"}, None), dispatcher.dispatch([], None)]:
            validator(document, "error").validate(reply)

    def test_errorCodes(self) -> None:
        """
        The error reply lists jsonproto's codes with their messages, and
        leaves room for a handler's own codes, but not for a known code
        with another message.
        """
        document = describe(defaultDispatcher())
        error = validator(document, "error")
        error.validate({"status": "ERROR", "message": "Out of stock", "code": "out_of_stock", "detail": "none left"})
        self.assertFalse(error.is_valid({"status": "ERROR", "message": "Oops", "code": "invalid_json"}))
        self.assertFalse(error.is_valid({"status": "OK", "message": "Invalid JSON", "code": "invalid_json"}))
        codes = json.dumps(document["components"]["messages"]["error"])
        for code in ("invalid_field", "unknown_type", "server_busy", "number_out_of_range"):
            self.assertIn(f'"{code}"', codes)

    def test_everyKind(self) -> None:
        """
        Typed and untyped types, one-way types and declared pushes are each
        described as what they are, in a valid document.
        """
        document = describe(loadDispatcher(["tests.typedhandlers"]))
        checkDocument(document)
        operations = document["operations"]
        self.assertEqual(operations["READING"]["action"], "receive")
        self.assertEqual(len(operations["READING"]["reply"]["messages"]), 2)
        self.assertNotIn("reply", operations["LOG"])
        self.assertIs(operations["LOG"]["x-jsonproto-one-way"], True)
        self.assertEqual(operations["SAID.push"]["action"], "send")
        self.assertIn("chat_say", operations)
        reading = validator(document, "READING.request")
        message = {
            "type": "READING", "device": "p-7", "at": 1767225600.5, "celsius": 21.5, "humidity": 0.5,
            "tags": {"site": "Zürich", "floor": 3}, "unit": "F",
        }
        reading.validate(message)
        for change in [{"unit": "K"}, {"tags": {"site": "x", "floor": -1}}, {"celsius": True}, {"device": ""}, {"humidity": 2}]:
            self.assertFalse(reading.is_valid({**message, **change}), change)
        validator(document, "READING.reply").validate({"status": "OK", "device": "p-7", "stored": 1, "id": "r"})
        echo = validator(document, "ECHO.request")
        echo.validate({"type": "ECHO", "anything": [1]})
        self.assertFalse(echo.is_valid({"type": "SUM"}))
        validator(document, "SAID.push").validate({"type": "SAID", "room": "r", "text": "hi", "sender": "bob"})
        self.assertFalse(validator(document, "SAID.push").is_valid({"type": "SAID", "room": "r"}))
        validator(document, "BYE.push").validate({"type": "BYE"})
        validator(document, "chat_say.request").validate({"type": "chat:say", "room": "r", "text": "hi"})


class SchemaCommandTests(SynchronousTestCase):
    def command(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(list(argv), out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    def test_standardOutput(self) -> None:
        """
        jsonproto schema prints the document: the seed's types, and those of
        each --handlers module.
        """
        status, out, err = self.command("schema", "--handlers", "tests.typedhandlers", "--title", "Devices", "--version", "2.1")
        self.assertEqual((status, err), (0, ""))
        document = json.loads(out)
        self.assertEqual(document["info"]["title"], "Devices")
        self.assertEqual(document["info"]["version"], "2.1")
        self.assertIn("READING", document["operations"])
        self.assertIn("SUM", document["operations"])
        checkDocument(document)

    def test_output(self) -> None:
        """
        -o writes the file and says what it wrote.
        """
        path = self.mktemp()
        status, out, err = self.command("schema", "-o", path)
        self.assertEqual((status, out), (0, ""))
        self.assertEqual(err, f"wrote the AsyncAPI 3.0.0 document of 2 message types and 0 pushes to {path}\n")
        with open(path, encoding="utf-8") as f:
            self.assertEqual(json.load(f), describe(defaultDispatcher()))

    def test_badModules(self) -> None:
        """
        A module that cannot be imported, has no register() or whose
        register() fails is one line and status 2, as twistd would say.
        """
        for module, said in [
            ("no.such.module", "--handlers 'no.such.module' cannot be imported: ModuleNotFoundError"),
            ("tests.e2e", "--handlers 'tests.e2e' has no register(dispatcher) function to call"),
            ("tests.clashinghandlers", "--handlers 'tests.clashinghandlers': register(dispatcher) failed: ValueError"),
        ]:
            status, out, err = self.command("schema", "--handlers", module)
            self.assertEqual((status, out), (2, ""))
            self.assertTrue(err.startswith(f"jsonproto: {said}"), err)
            self.assertEqual(err.count("\n"), 1, err)

    def test_channels(self) -> None:
        """
        With --channels, a module that uses dispatcher.channels can be
        described, and the document has the channels' requests and what
        subscribers are sent; --no-seed-types leaves out GREETING and SUM.
        """
        status, out, err = self.command("schema", "--handlers", "tests.privatehandlers")
        self.assertEqual(status, 2)
        self.assertEqual(err, "jsonproto: --handlers 'tests.privatehandlers' uses dispatcher.channels.authorize, which needs --channels\n")
        status, out, err = self.command("schema", "--channels", "--no-seed-types", "--handlers", "tests.privatehandlers")
        self.assertEqual((status, err), (0, ""))
        document = json.loads(out)
        checkDocument(document)
        messages = document["components"]["messages"]
        for name in ("SUBSCRIBE.request", "PUBLISH.reply", "PUBLICATION.push", "RESYNC.push", "MISSED.push", "LEAVE.push"):
            self.assertIn(name, messages)
        self.assertNotIn("SUM", document["operations"])
        publication = messages["PUBLICATION.push"]["payload"]["schema"]
        self.assertEqual(set(publication["required"]), {"type", "channel", "data", "offset", "epoch"})

    def test_emptyDispatcher(self) -> None:
        """
        A dispatcher with no types is still a valid document.
        """
        checkDocument(describe(Dispatcher()))
