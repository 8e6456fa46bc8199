"""
A handlers module for C{--channels}: it sets the channels' authorization
hook as it registers (channels named C{private:} are for nobody).
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.channels.authorize
    def mayI(context: Any, action: str, channel: str) -> bool:
        return not channel.startswith("private:")
