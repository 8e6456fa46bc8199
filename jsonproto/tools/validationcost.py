"""
What checking a typed message costs, per message: the figures behind the
choice of C{msgspec.Struct} for typed handlers (C{docs/handlers.md}, "Typed
messages").

    python -m jsonproto.tools.validationcost            (a Markdown table)
    python -m jsonproto.tools.validationcost --json

Two messages: a realistic reading of about 200 bytes (floats, a nested
object, a list, non-ASCII text, an enum and bounds) and the seed's SUM.
Each is declared three ways, as a C{msgspec.Struct}, a dataclass and a
C{TypedDict}, and checked by msgspec (and by pydantic too, where it is
installed, the other library that checks dataclasses and C{TypedDict}s);
beside them, the hand-written C{isinstance} checks a handler makes without
a type, and what decoding alone costs.  The dispatcher gets messages
decoded (their C{type} picks the handler), so a typed message costs the
decode plus the check of the decoded dict; a one-pass decode straight into
the type is shown for comparison.

It runs for a few seconds, in this process, on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import timeit
from typing import Annotated, Any, Callable, Literal, TypedDict

import msgspec
from msgspec import Meta

from jsonproto.dispatch import seed
from jsonproto.wire.codec import decode

READING = (
    '{"type":"READING","id":4711,"device":"pompe-7","at":1767225600.125,'
    '"celsius":21.75,"humidity":0.4375,"unit":"C",'
    '"tags":{"site":"Zürich","floor":3,"line":"B"},'
    '"samples":[0.125,0.25,0.5,1.0],"note":"Druck fällt"}'
).encode("utf-8")
SUM = b'{"type":"SUM","a":10,"b":20}'


class Unit(enum.Enum):
    CELSIUS = "C"
    FAHRENHEIT = "F"


# The reading, as a msgspec.Struct ...


class Tags(msgspec.Struct):
    site: str
    floor: Annotated[int, Meta(ge=0, le=200)] = 0
    line: str | None = None


class Reading(msgspec.Struct):
    device: Annotated[str, Meta(min_length=1, max_length=64)]
    at: float
    celsius: float
    humidity: Annotated[float, Meta(ge=0.0, le=1.0)]
    tags: Tags
    samples: Annotated[list[float], Meta(max_length=64)] = []
    unit: Unit = Unit.CELSIUS
    note: str = ""


# ... as a dataclass ...


@dataclasses.dataclass
class TagsData:
    site: str
    floor: Annotated[int, Meta(ge=0, le=200)] = 0
    line: str | None = None


@dataclasses.dataclass
class ReadingData:
    device: Annotated[str, Meta(min_length=1, max_length=64)]
    at: float
    celsius: float
    humidity: Annotated[float, Meta(ge=0.0, le=1.0)]
    tags: TagsData
    samples: Annotated[list[float], Meta(max_length=64)] = dataclasses.field(default_factory=list)
    unit: Unit = Unit.CELSIUS
    note: str = ""


@dataclasses.dataclass
class SumData:
    a: int | float
    b: int | float


# ... and as a TypedDict (total=False where a field has a default).


class TagsDict(TypedDict, total=False):
    site: str
    floor: Annotated[int, Meta(ge=0, le=200)]
    line: str | None


class ReadingDict(TypedDict, total=False):
    device: Annotated[str, Meta(min_length=1, max_length=64)]
    at: float
    celsius: float
    humidity: Annotated[float, Meta(ge=0.0, le=1.0)]
    tags: TagsDict
    samples: Annotated[list[float], Meta(max_length=64)]
    unit: Literal["C", "F"]
    note: str


class SumDict(TypedDict):
    a: int | float
    b: int | float


def _isNumber(value: Any) -> bool:
    kind = type(value)
    return kind is float or kind is int


def checkReadingByHand(message: dict[str, Any]) -> None:
    """
    What a handler without a type writes to check a reading: the same
    rules, by hand.
    """
    device = message.get("device")
    if type(device) is not str or not 1 <= len(device) <= 64:
        raise ValueError("device")
    for name in ("at", "celsius", "humidity"):
        if not _isNumber(message.get(name)):
            raise ValueError(name)
    if not 0.0 <= message["humidity"] <= 1.0:
        raise ValueError("humidity")
    tags = message.get("tags")
    if type(tags) is not dict or type(tags.get("site")) is not str:
        raise ValueError("tags")
    floor = tags.get("floor", 0)
    if type(floor) is not int or not 0 <= floor <= 200:
        raise ValueError("tags.floor")
    if tags.get("line") is not None and type(tags["line"]) is not str:
        raise ValueError("tags.line")
    samples = message.get("samples", [])
    if type(samples) is not list or len(samples) > 64 or not all(_isNumber(s) for s in samples):
        raise ValueError("samples")
    if message.get("unit", "C") not in ("C", "F"):
        raise ValueError("unit")
    if type(message.get("note", "")) is not str:
        raise ValueError("note")


def checkSumByHand(message: dict[str, Any]) -> None:
    if not (_isNumber(message.get("a")) and _isNumber(message.get("b"))):
        raise ValueError("a or b")


def _strictFromJSON(adapter: Any) -> Callable[[bytes], Any]:
    """
    A pydantic adapter's one-pass check of JSON bytes, in strict mode.
    """
    return lambda data: adapter.validate_json(data, strict=True)


def candidates() -> list[tuple[str, str, Callable[[bytes], Any] | None, Callable[[bytes], Any] | None]]:
    """
    (way, library, reading's decode and check, SUM's decode and check), each
    a function of the message's bytes; L{None} where it does not apply.
    """
    convert = msgspec.convert
    rows: list[tuple[str, str, Callable[[bytes], Any] | None, Callable[[bytes], Any] | None]] = [
        ("decode only (every message pays this)", "orjson", lambda b: decode(b), lambda b: decode(b)),
        ("hand-written isinstance checks", "none", lambda b: checkReadingByHand(decode(b)), lambda b: checkSumByHand(decode(b))),
        ("msgspec.Struct", "msgspec", lambda b: convert(decode(b), Reading), lambda b: convert(decode(b), seed.Sum)),
        ("dataclass", "msgspec", lambda b: convert(decode(b), ReadingData), lambda b: convert(decode(b), SumData)),
        ("TypedDict", "msgspec", lambda b: convert(decode(b), ReadingDict), lambda b: convert(decode(b), SumDict)),
    ]
    try:
        import pydantic
    except ImportError:
        pass
    else:
        for way, reading, sum_ in (("dataclass", ReadingData, SumData), ("TypedDict", ReadingDict, SumDict)):
            try:
                readingAdapter = pydantic.TypeAdapter(reading)
                sumAdapter = pydantic.TypeAdapter(sum_)
            except pydantic.PydanticUserError:
                continue  # a typing.TypedDict, before Python 3.12
            # Strict, from Python objects, takes only instances: from JSON,
            # it decodes too (one pass), like the last row.
            rows.append((way, f"pydantic {pydantic.VERSION}, one pass from bytes",
                         _strictFromJSON(readingAdapter), _strictFromJSON(sumAdapter)))
    readingDecoder = msgspec.json.Decoder(Reading)
    sumDecoder = msgspec.json.Decoder(seed.Sum)
    rows.append(("msgspec.Struct, one pass from bytes", "msgspec", readingDecoder.decode, sumDecoder.decode))
    return rows


def _calls(function: Callable[[bytes], Any], payload: bytes, seconds: float) -> tuple[timeit.Timer, int]:
    function(payload)  # fails here if the message does not fit
    timer = timeit.Timer(lambda: function(payload))
    number, taken = timer.autorange()
    return timer, max(1, int(number * seconds / taken))


def measure(seconds: float = 0.05, rounds: int = 9) -> list[dict[str, Any]]:
    """
    Every candidate's cost per message, in microseconds: the least over
    C{rounds} runs of about C{seconds} each, the candidates taking turns in
    each round, so that a moment of load on a shared machine does not fall
    on one of them alone.
    """
    rows = candidates()
    timers = {}
    for way, library, reading, sum_ in rows:
        for key, function, payload in (("reading", reading, READING), ("sum", sum_, SUM)):
            if function is not None:
                timers[(way, library, key)] = _calls(function, payload, seconds)
    best = {name: float("inf") for name in timers}
    for _ in range(rounds):
        for name, (timer, number) in timers.items():
            best[name] = min(best[name], timer.timeit(number) / number * 1e6)
    return [
        {"way": way, "library": library, "reading": best.get((way, library, "reading")), "sum": best.get((way, library, "sum"))}
        for way, library, _, _ in rows
    ]


def table(results: list[dict[str, Any]]) -> str:
    """
    The results as a Markdown table, with the cost of the check alone (what
    it adds to decoding) beside each total.
    """
    base = results[0]
    lines = [
        f"Per message, µs (the reading is {len(READING)} bytes; SUM is {SUM.decode()}):",
        "",
        "| declared as | checked by | reading | its check alone | SUM | its check alone |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in results:
        first = row is base
        cells = [row["way"], row["library"]]
        for key in ("reading", "sum"):
            cells.append(f"{row[key]:.2f}")
            cells.append("" if first else f"{row[key] - base[key]:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jsonproto.tools.validationcost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--rounds", type=int, default=9, help="runs of each figure, the least kept (default 9)")
    args = parser.parse_args(argv)
    results = measure(rounds=args.rounds)
    print(json.dumps(results) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
