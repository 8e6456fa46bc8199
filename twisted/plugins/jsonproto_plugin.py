"""
Makes C{twistd jsonproto} exist.  Only names L{jsonproto.tap} by string, so
that listing twistd's plugins stays cheap.
"""

from twisted.application.service import ServiceMaker

jsonproto = ServiceMaker(
    "jsonproto",
    "jsonproto.tap",
    "JSON message service over TCP and TLS (newline or length-prefixed framing).",
    "jsonproto",
)
