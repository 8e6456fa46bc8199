"""
jsonproto: JSON message services over TCP and TLS, built on Twisted.

The public names are importable from here::

    from jsonproto import Dispatcher, JSONServerFactory

See C{docs/} for the wire protocol, writing message types, and operations.
"""

from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.client import Client, JSONClientProtocol, connect
from jsonproto.server.connection import ClientIdentity, ConnectionInfo, ConnectionRegistry
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.server.echo import EchoFactory, EchoProtocol
from jsonproto.errors import ErrorCode, RequestError
from jsonproto.limits import Limits
from jsonproto.server.protocol import (
    JSONInt32Protocol,
    JSONLineProtocol,
    JSONMessageProtocol,
    JSONServerFactory,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClientIdentity",
    "ConnectionInfo",
    "ConnectionRegistry",
    "Dispatcher",
    "EchoFactory",
    "EchoProtocol",
    "ErrorCode",
    "JSONInt32Protocol",
    "JSONLineProtocol",
    "JSONMessageProtocol",
    "JSONClientProtocol",
    "JSONServerFactory",
    "Limits",
    "RequestError",
    "connect",
    "defaultDispatcher",
]
