"""
The listening endpoints the daemon makes from its endpoint strings: any of
Twisted's, with two of them served by jsonproto's own code.

    - C{ssl:} goes to C{jsonproto-tls:} (L{jsonproto.server.tls}), for
      ALPN, a cipher profile, session tickets and reloading;
    - C{haproxy:} wraps its connections so that a client half-closing
      behind the proxy still gets its replies
      (L{jsonproto.compat.halfCloseableProxies}).
"""

from __future__ import annotations

from typing import Any

from jsonproto import compat
from jsonproto.server import tls


def listeningEndpoint(reactor: Any, description: str) -> Any:
    """
    The server endpoint for C{description}.

    @raise ValueError: Whatever the endpoint string's parser raises.
    """
    return compat.halfCloseableProxies(tls.serverFromString(reactor, description))
