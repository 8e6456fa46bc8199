"""
Flat JSON (C{jsonproto/core/_flatjson.c}) reads and writes what orjson does.

The C fast path reads a message made of one object of short ASCII strings,
integers, booleans and nulls itself, and writes such a reply itself, and
leaves everything else to orjson.  These tests hold it to two rules: what it
reads is exactly what C{orjson.loads} gives, and what it writes exactly what
C{orjson.dumps} writes; and it really does take the flat messages, which are
what it is for.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

try:
    from jsonproto.core import _speedups
except ImportError:  # pragma: no cover - test_fastpath says whether it must exist
    _speedups = None  # type: ignore[assignment]

_PLAIN = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')
plainText = st.text(_PLAIN, max_size=40)
"""Strings flat JSON carries: printable ASCII with no escape."""

flatValues = st.one_of(
    plainText,
    st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1),
    st.booleans(),
    st.none(),
)

anyText = st.text(max_size=12)
anyValues = st.recursive(
    st.one_of(
        anyText,
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(anyText, children, max_size=3),
    max_leaves=8,
)


def _items(value: Any) -> Any:
    """
    A value with its types and its members' order spelled out, so that
    C{1 == 1.0 == True} and C{{"a":1,"b":2} == {"b":2,"a":1}} compare unequal.
    """
    if isinstance(value, dict):
        return ("dict", [(_items(k), _items(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_items(v) for v in value])
    return (type(value).__name__, value)


def _orjsonLoads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


@st.composite
def spaced(draw: st.DrawFn, members: dict[str, Any]) -> bytes:
    """
    An object written out with JSON whitespace of any kind around any token.
    """
    space = st.text(" \t\r\n", max_size=2)
    parts = [draw(space), "{"]
    for i, (key, value) in enumerate(members.items()):
        if i:
            parts.append(",")
        parts += [draw(space), json.dumps(key), draw(space), ":", draw(space), json.dumps(value), draw(space)]
    if not members:
        parts.append(draw(space))
    parts += ["}", draw(space)]
    return "".join(parts).encode("ascii")


class _Extension:
    def setUp(self) -> None:
        if _speedups is None:
            raise SkipTest("built without the C extension")


class DecodeFlatTests(_Extension, SynchronousTestCase):
    def assertAsOrjson(self, data: bytes) -> Any:
        """
        C{decodeFlat} either declines C{data} or reads it as orjson does.
        """
        flat = _speedups.decodeFlat(data)
        if flat is None:
            return None
        message, messageType, messageId = flat
        self.assertEqual(_items(message), _items(orjson.loads(data)), data)
        # The envelope, noted on the way: the very objects in the dict.
        self.assertIs(messageType, message.get("type"))
        self.assertIs(messageId, message.get("id"))
        return message

    @settings(max_examples=400, deadline=None)
    @given(members=st.dictionaries(plainText, flatValues, max_size=8), data=st.data())
    def test_flatMessagesRead(self, members: dict[str, Any], data: st.DataObject) -> None:
        """
        Every flat object, however it is spaced, is read, member for member
        and in order, as orjson reads it.
        """
        message = data.draw(spaced(members))
        flat = self.assertAsOrjson(message)
        self.assertIsNot(flat, None, message)

    @settings(max_examples=400, deadline=None)
    @given(value=anyValues)
    def test_anyJSON(self, value: Any) -> None:
        """
        Any JSON at all, inside an object or not, is read as orjson reads it
        or left to orjson.
        """
        for message in (json.dumps(value), json.dumps({"type": "X", "v": value}, ensure_ascii=False)):
            self.assertAsOrjson(message.encode("utf-8"))

    @settings(max_examples=600, deadline=None)
    @given(
        members=st.dictionaries(plainText, flatValues, min_size=1, max_size=4),
        at=st.integers(min_value=0),
        byte=st.binary(min_size=1, max_size=1),
    )
    def test_damagedMessages(self, members: dict[str, Any], at: int, byte: bytes) -> None:
        """
        A flat message with any byte changed is read as orjson reads it, or
        declined: never read where orjson would refuse it.
        """
        message = json.dumps(members, separators=(",", ":")).encode("ascii")
        at %= len(message)
        damaged = message[:at] + byte + message[at + 1 :]
        flat = self.assertAsOrjson(damaged)
        if _orjsonLoads(damaged) is None:
            self.assertIs(flat, None)

    def test_declined(self) -> None:
        """
        What flat JSON leaves to orjson: non-objects, escapes, non-ASCII,
        fractions and exponents, integers past 18 digits, a key twice,
        anything malformed.
        """
        for message in [
            b"[1]",
            b'"s"',
            b"1",
            b'{"a":"\\n"}',
            b'{"a":"\\u0041"}',
            b'{"\xc3\xa9":1}',
            b'{"a":1.0}',
            b'{"a":1e3}',
            b'{"a":1234567890123456789}',
            b'{"a":-1234567890123456789}',
            b'{"a":1,"a":1}',
            b'{"a":[]}',
            b'{"a":{}}',
            b'{"a":01}',
            b'{"a":-}',
            b'{"a":+1}',
            b'{"a":tru}',
            b'{"a":nul}',
            b'{"a":1,}',
            b'{,}',
            b'{"a"}',
            b'{"a":1}}',
            b'{"a":1} x',
            b'{"a\tb":1}',
            b'{"a":"\x7f"}',
            b'{"a":NaN}',
            b"",
            b"{",
        ]:
            self.assertIs(self.assertAsOrjson(message), None, message)

    def test_envelope(self) -> None:
        """
        The message's type and id come with it, whichever members they are.
        """
        for message, envelope in [
            (b'{"type":"SUM","a":1}', ("SUM", None)),
            (b'{"a":1,"id":7,"type":"X"}', ("X", 7)),
            (b'{"id":"abc"}', (None, "abc")),
            (b'{"id":null,"type":true}', (True, None)),
            (b'{"types":"no","ids":1,"typ":2,"i":3}', (None, None)),
        ]:
            decoded = _speedups.decodeFlat(message)
            self.assertEqual(decoded[1:], envelope, message)
            self.assertEqual(decoded[0], orjson.loads(message))

    def test_edges(self) -> None:
        """
        The edges of what flat JSON takes: the longest integers, minus zero,
        the empty object, empty strings, every printable character.
        """
        printable = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
        for message, expected in [
            (b'{"a":999999999999999999,"b":-999999999999999999}', {"a": 10**18 - 1, "b": -(10**18) + 1}),
            (b'{"a":-0}', {"a": 0}),
            (b"{}", {}),
            (b'\r\n\t {"":""} \n', {"": ""}),
            (('{"%s":"%s"}' % (printable, printable)).encode(), {printable: printable}),
        ]:
            self.assertEqual(_items(self.assertAsOrjson(message)), _items(expected))

    def test_manyStrings(self) -> None:
        """
        Short strings come from a cache: thousands of different ones, whose
        places in it collide, each still read as itself.
        """
        for n in range(5000):
            key, value = f"k{n}", f"v{n * 7919}"
            decoded, messageType, _ = _speedups.decodeFlat(f'{{"{key}":"{value}","type":"T{n % 3}"}}'.encode())
            self.assertEqual(list(decoded.items()), [(key, value), ("type", f"T{n % 3}")])
            self.assertEqual(messageType, f"T{n % 3}")


class EncodeFlatTests(_Extension, SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(value=flatValues)
    def test_flatValuesWritten(self, value: Any) -> None:
        """
        Every value flat JSON carries is written byte for byte as orjson
        writes it.
        """
        self.assertEqual(_speedups.encodeFlat(value), orjson.dumps(value))

    @settings(max_examples=400, deadline=None)
    @given(value=anyValues)
    def test_anyValue(self, value: Any) -> None:
        """
        Any other value is written as orjson writes it, or left to orjson.
        """
        written = _speedups.encodeFlat(value)
        if written is not None:
            self.assertEqual(written, orjson.dumps(value))

    def test_declined(self) -> None:
        """
        What is left to orjson and the codec: floats (NaN among them),
        integers past 64 bits, strings needing an escape or not ASCII,
        containers, subclasses of str and int.
        """

        class Text(str):
            pass

        class Number(int):
            pass

        for value in [
            1.5,
            float("nan"),
            2**63,
            -(2**63) - 1,
            'a"b',
            "a\\b",
            "a\nb",
            "\x7f",
            "é",
            [],
            {},
            Text("x"),
            Number(1),
            b"bytes",
        ]:
            self.assertIs(_speedups.encodeFlat(value), None, repr(value))

    def test_edges(self) -> None:
        """
        The largest and smallest 64-bit integers, booleans, null.
        """
        for value in [2**63 - 1, -(2**63), 0, True, False, None, ""]:
            self.assertEqual(_speedups.encodeFlat(value), orjson.dumps(value))
