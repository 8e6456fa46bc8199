"""
What the Redis engine keeps in Redis, and the Lua scripts that keep it.

What is kept where, for a channel C{room:1} under the default prefix
C{jsonproto:}:

    - C{jsonproto:channel:{room:1}}, a hash: the channel's C{epoch}, the
      C{offset} of its last publication, and the C{bytes} its history
      holds.  Made on the channel's first use (with a new epoch); it
      expires when the channel has gone unused for a day, or for the
      history's age limit if that is longer (none if the history has no
      age limit).
    - C{jsonproto:history:{room:1}}, a stream: the last publications, each
      its offset (C{o}) and its encoded C{PUBLICATION} message (C{p});
      its entry ids are Redis's clock, so a publication's age is the same
      seen from every machine.  Bounded by C{--channel-history} entries,
      C{--channel-history-seconds}, and a total in bytes.
    - Redis pub/sub channel C{jsonproto:publications:room:1}: each
      publication's encoded C{PUBLICATION} message, as every subscriber
      receives it; no process encodes it again.

(The braces are Redis Cluster hash tags: both keys of a channel are in one
slot, so the scripts that touch both run there.)

One Lua script numbers a publication, keeps it, trims the history and
publishes it, atomically: offsets agree across every process.  A channel
whose keys were lost (Redis restarted without them, or they expired) is
made again under a new epoch.  The publishing script completes the
C{PUBLICATION} message a process encoded (L{publicationHead}) with its
offset and epoch, which every process reads back (L{position}) without
decoding the rest.
"""

from __future__ import annotations

from typing import Any

from jsonproto.wire.codec import encode

DEFAULT_PREFIX = "jsonproto:"
"""
What every key and pub/sub channel name begins with, unless told.
"""

# What both scripts begin with: the channel's epoch, made (with an empty
# history) from the ARGV given if the channel is new or its keys were lost.
_CHANNEL = b"""
local channel, history = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', channel, 'epoch')
if not epoch then
  epoch = ARGV[%s]
  redis.call('DEL', history)
  redis.call('HSET', channel, 'epoch', epoch, 'offset', 0, 'bytes', 0)
end
"""

# KEYS: the channel's hash, its history.  ARGV: the PUBLICATION message
# up to its offset, a new epoch (used if the channel is new), the history's
# bound in entries, in milliseconds (0: none) and in bytes (0: none), the
# channel's time to live in milliseconds (0: none), the pub/sub channel.
# Returns the offset, the epoch, and the history entry's id ("0-0" when no
# history is kept).
PUBLISH_SCRIPT = _CHANNEL % b"2" + b"""
local offset = redis.call('HINCRBY', channel, 'offset', 1)
local payload = ARGV[1] .. string.format('%d', offset) .. ',"epoch":"' .. epoch .. '"}'
local size, age, maxBytes, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local id = '0-0'
if size > 0 then
  if redis.call('EXISTS', history) == 0 then
    redis.call('HSET', channel, 'bytes', 0)
  end
  id = redis.call('XADD', history, '*', 'o', offset, 'p', payload)
  local kept = redis.call('XLEN', history)
  local bytes = redis.call('HINCRBY', channel, 'bytes', #payload)
  local now = tonumber(string.match(id, '^%d+'))
  while kept > 0 do
    local oldest = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)[1]
    local at = tonumber(string.match(oldest[1], '^%d+'))
    if kept > size or (maxBytes > 0 and bytes > maxBytes) or (age > 0 and at < now - age) then
      redis.call('XDEL', history, oldest[1])
      kept = kept - 1
      bytes = bytes - #oldest[2][4]
    else
      break
    end
  end
  redis.call('HSET', channel, 'bytes', bytes)
  if age > 0 then
    redis.call('PEXPIRE', history, age)
  end
end
if ttl > 0 then
  redis.call('PEXPIRE', channel, ttl)
end
redis.call('PUBLISH', ARGV[7], payload)
return {offset, epoch, id}
"""

# KEYS: the channel's hash, its history.  ARGV: a new epoch (used if the
# channel is new), the history's age bound in milliseconds (0: none), the
# channel's time to live in milliseconds (0: none).  Returns the epoch, the
# offset, and the history's entries younger than the bound.
HISTORY_SCRIPT = _CHANNEL % b"1" + b"""
local offset = tonumber(redis.call('HGET', channel, 'offset'))
local age, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local from = '-'
if age > 0 then
  local now = redis.call('TIME')
  from = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age)
end
if ttl > 0 then
  redis.call('PEXPIRE', channel, ttl)
end
return {epoch, offset, redis.call('XRANGE', history, from, '+')}
"""

# KEYS: the channel's hash, its history.  ARGV: the epoch it was seen
# under, a new one.  A channel whose offsets went back (Redis restarted
# from an older copy of its data) starts the new epoch, unless another
# process has already renewed it.
RENEW_SCRIPT = b"""
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'offset', 0, 'bytes', 0)
  return 1
end
return 0
"""


def publicationHead(channel: str, data: Any) -> bytes:
    """
    The encoded C{PUBLICATION} message up to its offset, which the
    publishing script completes: with the offset and epoch, it is exactly
    L{jsonproto.channels.engine.publicationPayload}.

    @raise RequestError: If JSON cannot carry C{data}.
    """
    return encode({"type": "PUBLICATION", "channel": channel, "data": data})[:-1] + b',"offset":'


def completePayload(head: bytes, offset: int, epoch: bytes) -> bytes:
    """
    What the publishing script makes of L{publicationHead}.
    """
    return b'%s%d,"epoch":"%s"}' % (head, offset, epoch)


def position(payload: bytes) -> tuple[int, str] | None:
    """
    The offset and epoch a C{PUBLICATION} message made by the publishing
    script ends with (its last two members), without decoding the rest;
    L{None} if it does not end so.
    """
    _, found, tail = payload.rpartition(b',"offset":')
    number, found2, rest = tail.partition(b',"epoch":"')
    if not (found and found2 and number.isdigit() and rest.endswith(b'"}')):
        return None
    return int(number), rest[:-2].decode("ascii", "replace")



def entrySeconds(entry: bytes) -> float:
    """
    A history entry's time, in seconds: its id is Redis's clock, in
    milliseconds, then a sequence number.
    """
    return int(entry.partition(b"-")[0]) / 1000


def channelKeys(prefix: str, channel: str) -> list[bytes]:
    """
    The channel's hash and history keys, as the scripts take them.
    """
    return [f"{prefix}channel:{{{channel}}}".encode(), f"{prefix}history:{{{channel}}}".encode()]


def pubsubName(prefix: str, channel: str) -> bytes:
    """
    The Redis pub/sub channel the channel's publications go through.
    """
    return f"{prefix}publications:{channel}".encode()
