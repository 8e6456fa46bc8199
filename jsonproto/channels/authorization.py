"""
Who may subscribe to a channel and publish to it: the authorization hook a
handlers module sets (C{@dispatcher.channels.authorize}), asked per
connection, action and channel, and its answer made a refusal clients are
told of (C{Not allowed}).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed

from jsonproto.dispatch import awaiting
from jsonproto.errors import ErrorCode, RequestError

NOT_ALLOWED = ErrorCode("not_allowed", "Not allowed")

Authorizer = Callable[[Any, str, str], Any]
"""
C{authorizer(context, action, channel)}, C{action} being C{"subscribe"} or
C{"publish"}: true to allow, false to refuse (C{Not allowed}); or a
Deferred or coroutine of one.  Who may subscribe to a channel may also ask
who is in it (C{PRESENCE}): the hook is asked C{"subscribe"} for that too.
"""


def checkAllowed(authorizer: Authorizer | None, context: Any, action: str, channel: str) -> Deferred[None]:
    """
    Ask C{authorizer} (L{None}: everyone may) whether C{context}'s
    connection may do C{action} to C{channel}.

    @return: Fires when it may; fails with L{RequestError} (C{Not
        allowed}) when it may not, or with what the hook raised.
    """
    if authorizer is None:
        return succeed(None)
    result = authorizer(context, action, channel)
    if inspect.isawaitable(result) and not isinstance(result, Deferred):
        result = awaiting.toDeferred(result)
    if not isinstance(result, Deferred):
        result = succeed(result)
    return result.addCallback(_refuseUnless, action, channel)


def _refuseUnless(allowed: Any, action: str, channel: str) -> None:
    if not allowed:
        raise RequestError(NOT_ALLOWED, f"this connection may not {action} to {channel}")
