"""
A handlers module that tells a client the address the server sees, for the
PROXY protocol tests.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.handler("PEER")
    def peer(message: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"peer": context.peer, "tls": context.tls}

    @dispatcher.handler("PID")
    def pid(message: dict[str, Any], context: Any) -> dict[str, Any]:
        import os

        return {"pid": os.getpid()}
