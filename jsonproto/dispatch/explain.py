"""
What went wrong with a typed message, said for a person: msgspec's
validation error rephrased as the JSON path of the member, then what was
expected there (the C{detail} of an C{invalid_field} reply).

Plain Python, never compiled: it runs only for a message that does not fit
its type, and it reads msgspec's wording, which is better kept where it can
be read and changed at once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from msgspec import ValidationError
from msgspec import inspect as msgspecInspect

_AT = re.compile(r"^(.*) - at `(\$[^`]*)`$", re.S)
_EXPECTED_GOT = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`$")
_BOUND = re.compile(r"^Expected `([^`]+)` (>=|<=|>|<) (\S+)$")
_LENGTH = re.compile(r"^Expected `([^`]+)` of length (>=|<=) (\d+)$")
_EXACT_LENGTH = re.compile(r"^Expected `array` of length (\d+), got (\d+)$")
_MULTIPLE = re.compile(r"^Expected `([^`]+)` that's a multiple of (\S+)$")
_PATTERN = re.compile(r"^Expected `str` matching regex (.*)$", re.S)
_MISSING = re.compile(r"^Object missing required field `([^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]+)`$")
_ENUM = re.compile(r"^Invalid enum value ")

_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "null": "null",
    "object": "an object",
    "array": "an array",
    "bytes": "a base64 string",
    "datetime": "an RFC 3339 date and time",
    "date": "an RFC 3339 date",
    "time": "an RFC 3339 time",
    "uuid": "a UUID",
    "decimal": "a decimal number",
}
_GOT = {
    "int": "an integer",
    "float": "a number with a fraction or exponent",
    "str": "a string",
    "bool": "a boolean",
    "null": "null",
    "object": "an object",
    "array": "an array",
}
_UNITS = {"str": "characters", "array": "items", "object": "members", "bytes": "bytes"}
_BOUNDS = {">=": "at least", "<=": "at most"}


def _expected(names: str) -> str:
    """
    msgspec's C{int | float | null} as C{a number or null}.
    """
    parts = [part.strip() for part in names.split("|")]
    if "int" in parts and "float" in parts:
        parts.remove("int")
    said = []
    for part in parts:
        text = _NAMES.get(part, f"`{part}`")
        if text not in said:
            said.append(text)
    return " or ".join(said)


def _got(name: str, expected: str) -> str:
    if name == "float" and "float" not in expected:
        return _GOT["float"]
    return _GOT.get(name, f"`{name}`").replace(" with a fraction or exponent", "")


def explain(error: ValidationError, declared: Any) -> str:
    """
    What a message that does not fit C{declared} got wrong, for a person:
    the JSON path of the member, then what was expected there.

        $.a: expected a number, got a boolean
        $.tags.site: required, but not given
        $.samples: expected an array of at most 64 items
        $.unit: expected one of "C", "F"

    msgspec's own wording is kept, after the path, for what is not
    rephrased here.
    """
    text = str(error)
    match = _AT.match(text)
    path, reason = (match.group(2), match.group(1)) if match else ("$", text)
    if (m := _MISSING.match(reason)) is not None:
        return f"{_join(path, m.group(1))}: required, but not given"
    if (m := _UNKNOWN.match(reason)) is not None:
        return f"{_join(path, m.group(1))}: not a field of this message"
    if (m := _EXPECTED_GOT.match(reason)) is not None:
        return f"{path}: expected {_expected(m.group(1))}, got {_got(m.group(2), m.group(1))}"
    if (m := _EXACT_LENGTH.match(reason)) is not None:
        return f"{path}: expected an array of {m.group(1)} items, got {m.group(2)}"
    if (m := _LENGTH.match(reason)) is not None:
        kind, bound, size = m.groups()
        unit = _UNITS.get(kind, "items")
        if size == "1":
            unit = unit[:-1]
        return f"{path}: expected {_expected(kind)} of {_BOUNDS[bound]} {size} {unit}"
    if (m := _BOUND.match(reason)) is not None:
        kind, bound, limit = m.groups()
        return f"{path}: expected {_expected(kind)} {bound} {limit}"
    if (m := _MULTIPLE.match(reason)) is not None:
        return f"{path}: expected {_expected(m.group(1))} that is a multiple of {m.group(2)}"
    if (m := _PATTERN.match(reason)) is not None:
        return f"{path}: expected a string matching {m.group(1)}"
    if _ENUM.match(reason):
        allowed = _allowedValues(declared, path)
        if allowed is not None:
            return f"{path}: expected one of {', '.join(json.dumps(v, ensure_ascii=False) for v in allowed)}"
        return f"{path}: not one of the values allowed there"
    return f"{path}: {reason.replace('`', '')}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"{path}[{json.dumps(name)}]"


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def _allowedValues(declared: Any, path: str) -> list[Any] | None:
    """
    The values an enum or a literal at C{path} of C{declared} allows, or
    L{None} if the path cannot be followed.
    """
    try:
        info: Any = msgspecInspect.type_info(declared)
        for step in _STEP.finditer(path[1:]):
            info = _child(info, step.group(1), step.group(2))
            if info is None:
                return None
        info = _unwrap(info, ("EnumType", "LiteralType"))
    except Exception:
        return None
    name = type(info).__name__
    if name == "EnumType":
        return [member.value for member in info.cls]
    if name == "LiteralType":
        return list(info.values)
    return None


def _unwrap(info: Any, wanted: tuple[str, ...]) -> Any:
    """
    Look through metadata and unions for a type of one of the C{wanted} kinds.
    """
    while type(info).__name__ == "Metadata":
        info = info.type
    if type(info).__name__ == "UnionType":
        for member in info.types:
            found = _unwrap(member, wanted)
            if type(found).__name__ in wanted:
                return found
    return info


def _child(info: Any, field: str | None, index: str | None) -> Any:
    if field is not None:
        info = _unwrap(info, ("StructType", "DataclassType", "TypedDictType"))
        for candidate in getattr(info, "fields", ()):
            if candidate.encode_name == field:
                return candidate.type
        return None
    info = _unwrap(info, ("ListType", "SetType", "FrozenSetType", "VarTupleType", "TupleType", "DictType"))
    kind = type(info).__name__
    if kind == "DictType":
        return info.value_type
    if kind == "TupleType":
        return info.item_types[int(index)] if index and index.isdigit() else None
    return getattr(info, "item_type", None)
