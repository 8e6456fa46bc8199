"""
What a channel may be called: short, printable, and free of characters that
would need escaping in logs, metrics labels or Redis keys.
"""

from __future__ import annotations

import re

from jsonproto.errors import ErrorCode, RequestError

MAX_NAME_LENGTH = 200

_NAME = re.compile(r"[A-Za-z0-9_.:@/=+-]{1,%d}" % MAX_NAME_LENGTH)

INVALID_CHANNEL = ErrorCode("invalid_channel", "Invalid channel")


def checkName(name: object) -> str:
    """
    C{name}, if it is a channel name: 1 to L{MAX_NAME_LENGTH} characters,
    each a letter, a digit or one of C{_ . : @ / = + -}.

    @raise RequestError: With L{INVALID_CHANNEL}, saying what is wrong.
    """
    if not isinstance(name, str):
        raise RequestError(INVALID_CHANNEL, "channel must be a string")
    if _NAME.fullmatch(name) is None:
        if not name:
            raise RequestError(INVALID_CHANNEL, "channel must not be empty")
        if len(name) > MAX_NAME_LENGTH:
            raise RequestError(INVALID_CHANNEL, f"channel must be at most {MAX_NAME_LENGTH} characters")
        raise RequestError(INVALID_CHANNEL, "channel may hold only letters, digits and _ . : @ / = + -")
    return name
