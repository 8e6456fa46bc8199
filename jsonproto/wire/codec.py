"""
Strict JSON (RFC 8259) in and out: the one place bytes become objects.

Python's C{json} module is lenient in ways a network service must not be: it
accepts C{NaN} and C{Infinity}, turns C{1e999} into C{inf} (then writes it back
as C{Infinity}, which is not JSON), guesses UTF-16 from a byte string, lets a
lone surrogate escape through to the output, and fails deep nesting with a
C{RecursionError} whose depth depends on the caller's stack.  This module
closes each of those holes and reports every failure as a
L{jsonproto.errors.RequestError}, so callers have one exception to handle.

Every rule here is cheap on ordinary messages: the walk that checks nesting
and surrogates runs only when a quick byte count says a message could fail it.

orjson does the work, about five times faster than the standard library;
the rules stay the same.  orjson would read an integer
past 64 bits as a float and write NaN as null, so a message that may hold
such an integer, or a reply orjson cannot write or writes with a null in
it, goes through the standard library instead, which keeps big integers
exact and refuses NaN.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from orjson import OPT_APPEND_NEWLINE, JSONDecodeError, dumps as _dumps, loads as _loads

from jsonproto.errors import (
    INTERNAL_ERROR,
    INVALID_JSON,
    NESTING_TOO_DEEP,
    NUMBER_OUT_OF_RANGE,
    RequestError,
)

MAX_DEPTH = 1024
"""
How deeply arrays and objects may nest in one message: orjson's own limit,
which the standard library path keeps too.  The walk that checks it is
iterative, so no depth can exhaust the stack.
"""

NULL_SCAN_LIMIT = 4096
"""
Replies up to this long are checked for a C{null} orjson may have written
for NaN by a byte search; longer ones by walking the value, which costs
less there.
"""

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _OutOfRange(ValueError):
    """
    A number the parser met that has no finite IEEE 754 double value.
    """


def _rejectConstant(name: str) -> Any:
    raise _OutOfRange(name)


def _finiteFloat(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(text)
    return value


_decoder = json.JSONDecoder(parse_float=_finiteFloat, parse_constant=_rejectConstant)
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _checkStructure(value: Any) -> None:
    """
    Walk a decoded value iteratively, rejecting nesting deeper than
    L{MAX_DEPTH} and strings holding a lone surrogate (which no UTF-8 output
    could carry).
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise RequestError(NESTING_TOO_DEEP)
            for key, child in item.items():
                _checkString(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise RequestError(NESTING_TOO_DEEP)
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _checkString(item)


def _checkString(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(INVALID_JSON, "a string holds a lone surrogate") from None


def decode(payload: bytes) -> Any:
    """
    Parse one message.

    @param payload: The message's bytes, without framing.
    @return: The decoded JSON value (not necessarily an object).
    @raise RequestError: With L{INVALID_JSON} for anything that is not strict
        UTF-8 JSON text (C{NaN} and C{Infinity} included), with
        L{NUMBER_OUT_OF_RANGE} for a number no double can hold or an integer
        too long to parse, with L{NESTING_TOO_DEEP} past L{MAX_DEPTH}.
    """
    value = decodeOrRefuse(payload)
    if type(value) is RequestError:
        raise value
    return value


def decodeOrRefuse(payload: bytes) -> Any:
    """
    L{decode}, returning the L{RequestError} it would raise instead of
    raising it: a message refused costs its sender no exception (the
    pipeline's way in, where a flood of garbage must not cost much more
    than a flood of requests).  No JSON value is a L{RequestError}.
    """
    if not payload or payload[0] not in _STARTS_A_VALUE:
        # Not JSON text at its first byte: said without asking orjson,
        # whose error costs several times a message.
        return RequestError(INVALID_JSON)
    try:
        value = _loads(payload)
    except JSONDecodeError as e:
        return _refused(payload, str(e))
    if mayHoldBigInteger(payload):
        try:
            return _decodeStrictly(payload)
        except RequestError as e:
            return e
    return value


_STARTS_A_VALUE = frozenset(b' \t\n\r{["-0123456789tfnNI')
"""
The bytes JSON text can start with (RFC 8259: whitespace, then a value),
and the N and I of the C{NaN} and C{Infinity} that earn a precise reply.
"""


def _refused(payload: bytes, reason: str) -> RequestError:
    """
    What to tell a client whose message orjson refused, for C{reason}.

    Refusing must cost little more than reading (a client flooding the
    server with garbage pays its own way), so orjson's own reason decides;
    only text that may hold C{NaN} or C{Infinity}, which orjson reports as
    an unexpected character, goes to the standard library's parser, which
    says so.
    """
    if "infinity" in reason:
        return RequestError(NUMBER_OUT_OF_RANGE)
    if "depth" in reason:
        return RequestError(NESTING_TOO_DEEP)
    if "UTF-8" in reason:
        return RequestError(INVALID_JSON, "not UTF-8")
    if "surrogate" in reason:
        return RequestError(INVALID_JSON, "a string holds a lone surrogate")
    if payload.find(b"NaN") >= 0 or payload.find(b"Infinity") >= 0:
        try:
            _decodeStrictly(payload)
        except RequestError as e:
            return e
    return RequestError(INVALID_JSON)


def mayHoldBigInteger(payload: bytes) -> bool:
    """
    Whether orjson may have read an integer outside 64 bits as a float:
    whether C{payload} holds a run of 19 or more digits (every integer below
    -2**63 has at least 19, every one above 2**64-1 at least 20).

    Any such run covers a multiple of 19, so only those bytes are looked at
    first: a 200 KiB message without long numbers costs 10,000 looks, not
    200,000.
    """
    size = len(payload)
    position = 18
    while position < size:
        if 48 <= payload[position] <= 57:
            start = position
            while start > 0 and 48 <= payload[start - 1] <= 57:
                start -= 1
            end = position + 1
            while end < size and 48 <= payload[end] <= 57:
                end += 1
            if end - start >= 19:
                return True
            position = end + 18
        else:
            position += 19
    return False


def allFinite(value: Any) -> bool:
    """
    Whether no float in C{value} is NaN or infinite.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict:
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
    return True


def _decodeStrictly(payload: bytes) -> Any:
    """
    The standard library's parser, held to the same rules.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(INVALID_JSON, "not UTF-8") from None
    deep = payload.count(b"[") + payload.count(b"{") > MAX_DEPTH // 2
    limit = sys.getrecursionlimit()
    try:
        if deep:
            # The C scanner counts against the recursion limit: make room
            # for MAX_DEPTH levels on top of the caller's stack.
            sys.setrecursionlimit(max(limit, MAX_DEPTH * 2))
        value = _decoder.decode(text)
    except json.JSONDecodeError:
        raise RequestError(INVALID_JSON) from None
    except _OutOfRange as e:
        if str(e) in ("NaN", "Infinity", "-Infinity"):
            raise RequestError(INVALID_JSON, f"{e} is not a JSON number") from None
        raise RequestError(NUMBER_OUT_OF_RANGE) from None
    except ValueError:
        # int() refusing a literal longer than sys.get_int_max_str_digits().
        raise RequestError(NUMBER_OUT_OF_RANGE) from None
    except RecursionError:
        raise RequestError(NESTING_TOO_DEEP) from None
    finally:
        if deep:
            sys.setrecursionlimit(limit)
    if deep or (b"\\u" in payload and _SURROGATE_ESCAPE.search(payload) is not None):
        _checkStructure(value)
    return value


def encode(value: Any, newline: bool = False) -> bytes:
    """
    Serialise one reply as compact strict JSON in UTF-8, the way the seed's
    C{JSON.stringify} writes it.

    @param newline: End it with a newline, the line framing's terminator
        (L{jsonproto.wire.framing.encodeLine}): orjson writes it in the same
        pass, where appending it would copy every reply once more.

    @raise RequestError: With L{NUMBER_OUT_OF_RANGE} for a non-finite float or
        an integer too long to write, with L{INTERNAL_ERROR} for anything
        else JSON cannot represent (a set, a lone surrogate); the caller
        decides what to tell the client.
    """
    try:
        encoded: bytes = _dumps(value, None, OPT_APPEND_NEWLINE) if newline else _dumps(value)
    except TypeError:
        pass
    else:
        if _wroteNoNaN(value, encoded, newline):
            return encoded
    strict = _encodeStrictly(value)
    return strict + b"\n" if newline else strict


def _wroteNoNaN(value: Any, encoded: bytes, newline: bool) -> bool:
    """
    Whether orjson, which writes NaN and Infinity as C{null}, surely wrote
    neither in C{encoded}, the encoding of C{value} (ended by a newline if
    C{newline}, which does not count towards L{NULL_SCAN_LIMIT}: the same
    reply must take the same way either way).

    Most replies are one object of strings and numbers: its members are
    looked at.  Any other is searched for a C{null} (one found means the
    caller must look closer), or walked where it is too long for a search
    to cost less.
    """
    if type(value) is dict:
        flat = True
        for item in value.values():
            kind = type(item)
            if kind is float:
                number: float = item
                if number - number != 0.0:  # NaN or infinite
                    return False
            elif kind is dict or kind is list or kind is tuple:
                flat = False
                break
        if flat:
            return True
    return encoded.find(b"null") < 0 if len(encoded) - newline <= NULL_SCAN_LIMIT else allFinite(value)


def _encodeStrictly(value: Any) -> bytes:
    """
    The standard library's encoder, held to the same rules.
    """
    try:
        return _encoder.encode(value).encode("utf-8")
    except ValueError as e:
        if isinstance(e, UnicodeEncodeError):
            raise RequestError(INTERNAL_ERROR, "the reply holds a lone surrogate") from e
        raise RequestError(NUMBER_OUT_OF_RANGE) from e
    except (TypeError, RecursionError) as e:
        raise RequestError(INTERNAL_ERROR, f"the reply is not JSON: {e}") from e
