"""
The codec: what counts as a message, and what a reply looks like on the wire.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from jsonproto.wire import codec
from jsonproto.errors import (
    INTERNAL_ERROR,
    INVALID_JSON,
    NESTING_TOO_DEEP,
    NUMBER_OUT_OF_RANGE,
    ErrorCode,
    RequestError,
)


class DecodeTests(SynchronousTestCase):
    def assertRejected(self, payload: bytes, error: ErrorCode) -> RequestError:
        e = self.assertRaises(RequestError, codec.decode, payload)
        self.assertIs(e.error, error, f"{payload[:60]!r} gave {e}")
        return e

    def test_object(self) -> None:
        """
        A JSON object decodes to a dict; integers stay integers.
        """
        self.assertEqual(
            codec.decode(b'{"type":"SUM","a":10,"b":2.5,"c":[true,null]}'),
            {"type": "SUM", "a": 10, "b": 2.5, "c": [True, None]},
        )
        self.assertIsInstance(codec.decode(b"10"), int)

    def test_utf8(self) -> None:
        """
        Text is UTF-8, and escaped surrogate pairs become the character.
        """
        self.assertEqual(codec.decode('"Zoë 😀"'.encode()), "Zoë 😀")
        self.assertEqual(codec.decode(b'"\\ud83d\\ude00"'), "😀")

    def test_notJSON(self) -> None:
        """
        Text that is not JSON is "Invalid JSON", the seed's reply.
        """
        for payload in [b"nope", b"{", b'{"a":1,}', b"", b"{'a':1}", b"[1] [2]"]:
            self.assertRejected(payload, INVALID_JSON)

    def test_invalidUTF8(self) -> None:
        """
        Bytes that are not UTF-8 are rejected, not guessed at (Python's json
        would read UTF-16 from a byte string).
        """
        e = self.assertRejected(b'{"name":"\xff"}', INVALID_JSON)
        self.assertEqual(e.detail, "not UTF-8")
        self.assertRejected('{"a":1}'.encode("utf-16"), INVALID_JSON)

    def test_nonFiniteTokens(self) -> None:
        """
        NaN and Infinity are not JSON, though Python's json accepts them.
        """
        for token in [b"NaN", b"Infinity", b"-Infinity"]:
            e = self.assertRejected(b'{"a":' + token + b"}", INVALID_JSON)
            self.assertIn(token.decode(), e.detail)

    def test_floatOverflow(self) -> None:
        """
        A number too large for a double would become Infinity: refused.
        """
        self.assertRejected(b'{"a":1e999}', NUMBER_OUT_OF_RANGE)
        self.assertRejected(b'{"a":-1e999}', NUMBER_OUT_OF_RANGE)
        self.assertEqual(codec.decode(b"1e308"), 1e308)

    def test_integerTooLong(self) -> None:
        """
        An integer literal longer than Python will parse is out of range, not
        an internal error.
        """
        self.assertRejected(b"1" * 5000, NUMBER_OUT_OF_RANGE)

    def test_nesting(self) -> None:
        """
        Nesting is allowed to MAX_DEPTH and refused past it, however deep.
        """
        depth = codec.MAX_DEPTH
        value = codec.decode(b"[" * depth + b"]" * depth)
        for _ in range(depth - 1):
            [value] = value
        self.assertEqual(value, [])
        self.assertRejected(b"[" * (depth + 1) + b"]" * (depth + 1), NESTING_TOO_DEEP)
        self.assertRejected(b'{"a":' * (depth + 1) + b"1" + b"}" * (depth + 1), NESTING_TOO_DEEP)
        self.assertRejected(b"[" * 100_000 + b"]" * 100_000, NESTING_TOO_DEEP)

    def test_bigIntegersExact(self) -> None:
        """
        Integers past 64 bits stay exact integers (a fast parser would make
        them floats).
        """
        self.assertEqual(codec.decode(b'{"a":123456789012345678901234567890}'), {"a": 123456789012345678901234567890})
        self.assertEqual(codec.decode(b"-18446744073709551617"), -18446744073709551617)

    def test_brackets_in_strings(self) -> None:
        """
        Brackets inside strings are not nesting.
        """
        self.assertEqual(codec.decode(b'{"s":"' + b"[" * 1000 + b'"}'), {"s": "[" * 1000})

    def test_loneSurrogate(self) -> None:
        """
        A lone surrogate escape could never be written back as UTF-8: the
        message is refused, in keys too.
        """
        self.assertRejected(b'{"name":"\\ud800"}', INVALID_JSON)
        self.assertRejected(b'{"\\uDFFF":1}', INVALID_JSON)
        self.assertRejected(b'["ok",["\\udbff x"]]', INVALID_JSON)


class EncodeTests(SynchronousTestCase):
    def test_compact(self) -> None:
        """
        Replies are written as the seed's JSON.stringify writes them: no
        spaces, keys in order, non-ASCII as UTF-8.
        """
        self.assertEqual(
            codec.encode({"status": "OK", "reply": "Hello, Zoë!"}),
            '{"status":"OK","reply":"Hello, Zoë!"}'.encode(),
        )

    def test_nonFinite(self) -> None:
        """
        A non-finite number cannot be JSON.
        """
        for value in [float("inf"), float("-inf"), float("nan")]:
            e = self.assertRaises(RequestError, codec.encode, {"result": value})
            self.assertIs(e.error, NUMBER_OUT_OF_RANGE)

    def test_nullAndNaN(self) -> None:
        """
        A null in a reply is written as null; a NaN beside it is refused,
        never written as null.
        """
        self.assertEqual(codec.encode({"a": None, "b": [1.5]}), b'{"a":null,"b":[1.5]}')
        e = self.assertRaises(RequestError, codec.encode, {"a": None, "b": [float("nan")]})
        self.assertIs(e.error, NUMBER_OUT_OF_RANGE)

    def test_longReplyNaN(self) -> None:
        """
        A long reply with a NaN deep inside is refused too.
        """
        e = self.assertRaises(RequestError, codec.encode, {"text": "x" * 10000, "deep": [{"v": [float("inf")]}]})
        self.assertIs(e.error, NUMBER_OUT_OF_RANGE)
        self.assertEqual(len(codec.encode({"text": "x" * 10000, "n": None})), 10000 + len('{"text":"","n":null}'))

    def test_bigIntegers(self) -> None:
        """
        Integers past 64 bits are written exactly.
        """
        self.assertEqual(codec.encode({"n": 2**100}), b'{"n":1267650600228229401496703205376}')

    def test_notJSON(self) -> None:
        """
        Values JSON cannot represent are internal errors.
        """
        for value in [{1, 2}, "\ud800", object()]:
            e = self.assertRaises(RequestError, codec.encode, {"result": value})
            self.assertIs(e.error, INTERNAL_ERROR)


class NewlineEncodeTests(SynchronousTestCase):
    """
    C{encode(value, newline=True)} is the line framing's frame of a reply:
    the same JSON, ended with a newline, however it was written.
    """

    def test_sameJSONWithNewline(self) -> None:
        """
        Every reply is written as without the option, then a newline: those
        orjson writes, and those the standard library must write (a big
        integer, a null beside a float in a list, a long reply).
        """
        for value in [
            {"status": "OK", "reply": "Hello, Zoë!"},
            {"n": 2**100},
            {"a": None, "b": [1.5]},
            {"text": "x" * 10000, "n": None},
            [1, {"a": "b"}],
            # A null in a reply of exactly NULL_SCAN_LIMIT bytes, the
            # newline not counted: the standard library writes it either
            # way (orjson writes it in exactly that many; the standard
            # library writes 1e-07 where orjson writes 1e-7).
            [None, 1e-7, "x" * (codec.NULL_SCAN_LIMIT - len('[null,1e-7,""]'))],
        ]:
            self.assertEqual(codec.encode(value, newline=True), codec.encode(value) + b"\n")

    def test_refusedAlike(self) -> None:
        """
        What cannot be JSON is refused with the newline as without it.
        """
        for value, error in [
            ({"result": float("nan")}, NUMBER_OUT_OF_RANGE),
            ({"a": None, "b": [float("inf")]}, NUMBER_OUT_OF_RANGE),
            ({"result": {1, 2}}, INTERNAL_ERROR),
        ]:
            e = self.assertRaises(RequestError, codec.encode, value, newline=True)
            self.assertIs(e.error, error)


class StandardLibraryDecodeTests(DecodeTests):
    """
    The same rules held by the standard library's parser, which reads
    whatever orjson cannot read exactly.
    """

    def setUp(self) -> None:
        self.patch(codec, "decode", codec._decodeStrictly)


class StandardLibraryEncodeTests(EncodeTests):
    """
    The same rules held by the standard library's encoder, which writes
    whatever orjson cannot.
    """

    def setUp(self) -> None:
        self.patch(codec, "encode", codec._encodeStrictly)
