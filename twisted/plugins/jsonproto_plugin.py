"""
Makes C{twistd jsonproto} exist.  Only names L{jsonproto.daemon.tap} by string, so
that listing twistd's plugins stays cheap.
"""

from twisted.application.service import ServiceMaker

jsonproto = ServiceMaker(
    "jsonproto",
    "jsonproto.daemon.tap",
    "JSON message service over TCP and TLS (newline or length-prefixed framing).",
    "jsonproto",
)

# twistd -r jsonproto-epoll; twistd jsonproto uses it by default.
from twisted.application.reactors import Reactor

jsonprotoEpoll = Reactor(
    "jsonproto-epoll",
    "jsonproto.daemon.epoll",
    "Twisted's epoll reactor without the per-event legacy log context (Linux).",
)
