"""
The realistic workload of C{make bench}: the reading of
L{jsonproto.tools.validationcost} (floats, a nested object, a list,
non-ASCII text, an enum and bounds, about 200 bytes), answered by a typed
handler as a user would write it; beside it the same handler untyped,
checking nothing, which prices the checks.

    twistd -n jsonproto --handlers bench.realistic
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.tools.validationcost import READING, Reading

MESSAGES = {
    "typed": READING,
    "untyped": READING.replace(b'"type":"READING"', b'"type":"READING_RAW"', 1),
}
"""
The requests, by handler.
"""


def reading(message: Reading, context: Any) -> dict[str, Any]:
    samples = message.samples
    return {"device": message.device, "count": len(samples), "mean": sum(samples) / len(samples) if samples else None}


def readingRaw(message: dict[str, Any], context: Any) -> dict[str, Any]:
    samples = message.get("samples", [])
    return {"device": message["device"], "count": len(samples), "mean": sum(samples) / len(samples) if samples else None}


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("READING", reading)
    dispatcher.register("READING_RAW", readingRaw)
