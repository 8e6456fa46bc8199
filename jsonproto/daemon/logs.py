"""
Logs for log shippers: one JSON object per event.

    twistd --logger jsonproto.daemon.logs.jsonLogObserver -n jsonproto ...

Every event about a connection carries its C{connectionId} and C{peer} as
fields of their own, so a shipper can index them without parsing text.
Events are written to standard output, one per line (Twisted's JSON log
format: each record starts with an ASCII record separator, 0x1E).
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def jsonLogObserver() -> ILogObserver:
    """
    The observer twistd's C{--logger} option asks for.
    """
    return jsonFileLogObserver(sys.stdout)
