"""
The C{jsonproto} command's argument types: each turns one word of the
command line into a value, or says in one line what is wrong with it (an
C{argparse.ArgumentTypeError}, which becomes a usage error).
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from jsonproto.tools.send import CommandError, parseRequest

ENDPOINTS = "tcp:HOST:PORT, tls:HOST:PORT, unix:PATH or HOST:PORT"


def parseEndpoint(text: str) -> dict[str, Any]:
    """
    C{tcp:HOST:PORT}, C{tls:HOST:PORT}, C{unix:PATH} or C{HOST:PORT} (an
    IPv6 address in brackets: C{[::1]:3001}).

    @raise argparse.ArgumentTypeError: It is none of those, or its port is
        not from 1 to 65535.
    """
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return {"host": "", "port": 0, "unixPath": rest, "tls": False}
    if kind not in ("tcp", "tls"):
        kind, rest = "tcp", text
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an endpoint: use {ENDPOINTS}")
    if not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} has port {port}: a port is a number from 1 to 65535")
    return {"host": host, "port": int(port), "unixPath": None, "tls": kind == "tls", "text": text}


def positiveSeconds(text: str) -> float:
    """
    A number of seconds greater than zero.
    """
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds greater than 0")
    return seconds


def positiveInteger(text: str) -> int:
    """
    A whole number greater than zero.
    """
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number greater than 0")
    return number


def readableFile(text: str) -> str:
    """
    A file that exists and can be read.
    """
    if not os.path.isfile(text) or not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: no such file, or not readable")
    return text


def request(text: str) -> dict[str, Any]:
    """
    One request, as JSON.
    """
    try:
        return parseRequest(text, "it")
    except CommandError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def runningProcess(text: str) -> int:
    """
    The id of a process whose CPU time can be read.
    """
    pid = positiveInteger(text)
    if not os.path.exists(f"/proc/{pid}/stat"):
        raise argparse.ArgumentTypeError(f"no process {pid} is running (or its /proc/{pid}/stat cannot be read)")
    return pid
