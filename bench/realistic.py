"""
The realistic workload of C{make bench}: the reading of
L{jsonproto.tools.validationcost} (floats, a nested object, a list,
non-ASCII text, an enum and bounds, about 200 bytes), answered by a typed
handler as a user would write it; beside it the same handler untyped,
checking nothing, which prices the checks; and the same again checked by
hand, as a user who declares no type writes it.  The peers under
C{bench/peers/} (Node, and asyncio on uvloop) check the same rules by
hand, for the typed C{READING} and the hand-checked C{READING_CHECKED}
alike, with the same replies.

A device may also stream its readings one-way (C{PUSH_READING}: typed,
no reply); the server keeps each device's latest,
and C{LATEST} tells it, with how many readings the device has pushed.

    twistd -n jsonproto --handlers bench.realistic
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.errors import INVALID_FIELD, RequestError
from jsonproto.tools.validationcost import READING, Reading

MESSAGES = {
    "typed": READING,
    "untyped": READING.replace(b'"type":"READING"', b'"type":"READING_RAW"', 1),
}
"""
The requests, by handler, of the realistic scenario (typed against
untyped).
"""

CHECKED = READING.replace(b'"type":"READING"', b'"type":"READING_CHECKED"', 1)
"""
The request of the hand-checked handler, the one the peers serve too.
"""

PUSHED = READING.replace(b'"type":"READING"', b'"type":"PUSH_READING"', 1)
"""
The same reading, streamed one-way.
"""

MAX_DEVICES = 10_000
"""
How many devices' latest readings are kept: a device past that is
refused, so that a client inventing names cannot grow the server's memory
without bound.
"""

latest: dict[str, dict[str, Any]] = {}
"""
Each device's latest pushed reading and how many it has pushed, by device.
"""


def _isNumber(value: Any) -> bool:
    kind = type(value)
    return kind is float or kind is int


def checkReading(message: dict[str, Any]) -> None:
    """
    What a handler that declares no type checks of a reading, by hand: the
    rules of L{Reading}, each broken one refused with the field's name.
    (A floor of C{3.0} is the whole number 3, as JSON has it and as
    JavaScript reads it.)

    @raise RequestError: C{invalid_field}, its detail naming the field.
    """
    device = message.get("device")
    if type(device) is not str or not 1 <= len(device) <= 64:
        raise RequestError(INVALID_FIELD, "device must be a string of 1 to 64 characters")
    for name in ("at", "celsius"):
        if not _isNumber(message.get(name)):
            raise RequestError(INVALID_FIELD, f"{name} must be a number")
    humidity = message.get("humidity")
    if not _isNumber(humidity) or not 0 <= humidity <= 1:
        raise RequestError(INVALID_FIELD, "humidity must be a number from 0 to 1")
    tags = message.get("tags")
    if type(tags) is not dict or type(tags.get("site")) is not str:
        raise RequestError(INVALID_FIELD, "tags must be an object with a string site")
    floor = tags.get("floor", 0)
    if not _isNumber(floor) or floor % 1 != 0 or not 0 <= floor <= 200:
        raise RequestError(INVALID_FIELD, "tags.floor must be a whole number from 0 to 200")
    line = tags.get("line")
    if line is not None and type(line) is not str:
        raise RequestError(INVALID_FIELD, "tags.line must be a string or null")
    samples = message.get("samples", [])
    if type(samples) is not list or len(samples) > 64 or not all(_isNumber(s) for s in samples):
        raise RequestError(INVALID_FIELD, "samples must be a list of at most 64 numbers")
    if message.get("unit", "C") not in ("C", "F"):
        raise RequestError(INVALID_FIELD, "unit must be C or F")
    if type(message.get("note", "")) is not str:
        raise RequestError(INVALID_FIELD, "note must be a string")


def reading(message: Reading, context: Any) -> dict[str, Any]:
    samples = message.samples
    return {"device": message.device, "count": len(samples), "mean": sum(samples) / len(samples) if samples else None}


def readingRaw(message: dict[str, Any], context: Any) -> dict[str, Any]:
    samples = message.get("samples", [])
    return {"device": message["device"], "count": len(samples), "mean": sum(samples) / len(samples) if samples else None}


def readingChecked(message: dict[str, Any], context: Any) -> dict[str, Any]:
    checkReading(message)
    return readingRaw(message, context)


def pushReading(message: Reading, context: Any) -> None:
    """
    A reading streamed one-way: checked (it is typed), then kept as its
    device's latest.
    """
    device = message.device
    known = latest.get(device)
    if known is None:
        if len(latest) >= MAX_DEVICES:
            raise RequestError(INVALID_FIELD, f"device: more than {MAX_DEVICES} devices")
        known = latest[device] = {"readings": 0}
    known["readings"] += 1
    known["at"] = message.at
    known["celsius"] = message.celsius


def latestReading(message: dict[str, Any], context: Any) -> dict[str, Any]:
    """
    A device's latest pushed reading, and how many it has pushed (none:
    C{"readings": 0} alone).
    """
    device = message.get("device")
    if type(device) is not str or not 1 <= len(device) <= 64:
        raise RequestError(INVALID_FIELD, "device must be a string of 1 to 64 characters")
    return {"device": device, **latest.get(device, {"readings": 0})}


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("READING", reading)
    dispatcher.register("READING_RAW", readingRaw)
    dispatcher.register("READING_CHECKED", readingChecked)
    dispatcher.register("PUSH_READING", pushReading, oneWay=True)
    dispatcher.register("LATEST", latestReading)
