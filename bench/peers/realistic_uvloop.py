"""
The realistic service of bench/realistic.py (READING_CHECKED, PUSH_READING one-way, LATEST) as a
lean asyncio Protocol on uvloop with orjson, what a Python developer might write instead of using
a framework: one write per read carrying every reply of it, the fields checked by hand with the
same rules and the same error replies as the jsonproto handler.  No limits, no timeouts: a peer to
beat, not a model.

    python realistic_uvloop.py PORT   (binds 127.0.0.1; 0 picks a free port; prints "listening on PORT";
                                       needs uvloop and orjson)
"""

import asyncio
import sys

import orjson
import uvloop

MAX_DEVICES = 10_000
latest = {}

INVALID_JSON = b'{"status":"ERROR","message":"Invalid JSON","code":"invalid_json"}'
NOT_AN_OBJECT = b'{"status":"ERROR","message":"Message must be a JSON object","code":"not_an_object"}'
INVALID_ID = b'{"status":"ERROR","message":"The id must be a string, a number or null","code":"invalid_id"}'
BLANK = b" \t\r\x0b\x0c"


class FieldError(Exception):
    pass


def isNumber(value):
    kind = type(value)
    return kind is float or kind is int


def isDevice(device):
    return type(device) is str and 1 <= len(device) <= 64


def checkReading(m):
    if not isDevice(m.get("device")):
        raise FieldError("device must be a string of 1 to 64 characters")
    for name in ("at", "celsius"):
        if not isNumber(m.get(name)):
            raise FieldError(f"{name} must be a number")
    humidity = m.get("humidity")
    if not isNumber(humidity) or not 0 <= humidity <= 1:
        raise FieldError("humidity must be a number from 0 to 1")
    tags = m.get("tags")
    if type(tags) is not dict or type(tags.get("site")) is not str:
        raise FieldError("tags must be an object with a string site")
    floor = tags.get("floor", 0)
    if not isNumber(floor) or floor % 1 != 0 or not 0 <= floor <= 200:
        raise FieldError("tags.floor must be a whole number from 0 to 200")
    line = tags.get("line")
    if line is not None and type(line) is not str:
        raise FieldError("tags.line must be a string or null")
    samples = m.get("samples", [])
    if type(samples) is not list or len(samples) > 64 or not all(isNumber(s) for s in samples):
        raise FieldError("samples must be a list of at most 64 numbers")
    if m.get("unit", "C") not in ("C", "F"):
        raise FieldError("unit must be C or F")
    if type(m.get("note", "")) is not str:
        raise FieldError("note must be a string")
    return samples


def readingChecked(m):
    samples = checkReading(m)
    return {"device": m["device"], "count": len(samples), "mean": sum(samples) / len(samples) if samples else None}


def latestReading(m):
    device = m.get("device")
    if not isDevice(device):
        raise FieldError("device must be a string of 1 to 64 characters")
    return {"device": device, **latest.get(device, {"readings": 0})}


def pushReading(m):
    checkReading(m)
    device = m["device"]
    known = latest.get(device)
    if known is None:
        if len(latest) >= MAX_DEVICES:
            raise FieldError(f"device: more than {MAX_DEVICES} devices")
        known = latest[device] = {"readings": 0}
    known["readings"] += 1
    known["at"] = m["at"]
    known["celsius"] = m["celsius"]


# READING is the typed READING of jsonproto's side: the same checks, by hand.
HANDLERS = {"READING_CHECKED": readingChecked, "READING": readingChecked, "LATEST": latestReading}
ONE_WAY = {"PUSH_READING": pushReading}


def withId(reply, req):
    if "id" in req:
        reply["id"] = req["id"]
    return orjson.dumps(reply)


def answer(line):
    """
    The reply to one line, without its newline; None for a blank line or a one-way message.
    """
    if not line.strip(BLANK):
        return None
    try:
        req = orjson.loads(line)
    except orjson.JSONDecodeError:
        return INVALID_JSON
    if type(req) is not dict:
        return NOT_AN_OBJECT
    messageId = req.get("id")
    if messageId is not None and type(messageId) not in (str, int, float):
        return INVALID_ID
    kind = req.get("type")
    if type(kind) is not str:
        return withId({"status": "ERROR", "message": "Message needs a string type", "code": "invalid_type"}, req)
    push = ONE_WAY.get(kind)
    if push is not None:
        try:
            push(req)
        except FieldError:
            pass
        return None
    handler = HANDLERS.get(kind)
    if handler is None:
        return withId({"status": "ERROR", "message": "Unknown type", "code": "unknown_type"}, req)
    try:
        result = handler(req)
    except FieldError as e:
        return withId({"status": "ERROR", "message": "Invalid field", "code": "invalid_field", "detail": str(e)}, req)
    reply = {"status": "OK"}
    reply.update(result)
    return withId(reply, req)


class Lines(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        *lines, self.pending = (self.pending + data).split(b"\n")
        replies = [reply for reply in map(answer, lines) if reply is not None]
        if replies:
            replies.append(b"")
            self.transport.write(b"\n".join(replies))


async def main(port):
    server = await asyncio.get_running_loop().create_server(Lines, "127.0.0.1", port, backlog=4096)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


uvloop.run(main(int(sys.argv[1])))
