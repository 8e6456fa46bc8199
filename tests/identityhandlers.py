"""
A handlers module that tells a client what the server knows of it, for the
TLS tests.
"""

from __future__ import annotations

from typing import Any

from jsonproto.dispatch.dispatcher import Dispatcher


def register(dispatcher: Dispatcher) -> None:
    @dispatcher.handler("WHOAMI")
    def whoami(message: dict[str, Any], context: Any) -> dict[str, Any]:
        identity = context.clientIdentity
        return {
            "tls": context.tls,
            "commonName": identity.commonName if identity else None,
            "dnsNames": list(identity.dnsNames) if identity else [],
        }
