"""
The reactor C{twistd jsonproto} runs on unless C{twistd -r} names another:
Twisted's epoll reactor, less one layer per event (L{jsonproto.compat.EPollReactor}).
"""

from __future__ import annotations

from typing import Any

from jsonproto.compat import EPollReactor


def install() -> Any:
    """
    Install jsonproto's epoll reactor as the global one.
    """
    from twisted.internet.main import installReactor

    reactor = EPollReactor()
    installReactor(reactor)
    return reactor
