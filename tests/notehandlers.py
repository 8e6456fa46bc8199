"""
A handlers module that publishes from its handler, for the tests: it
takes C{dispatcher.channels} as it registers, and uses it only when a
NOTE comes.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    channels = dispatcher.channels

    @dispatcher.handler("NOTE")
    def note(message: dict[str, Any], context: Any) -> Any:
        return channels.publish("notes", message.get("text")).addCallback(lambda publication: {"offset": publication.offset})
