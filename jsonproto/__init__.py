"""
jsonproto: JSON message services over TCP and TLS, built on Twisted.

The public names are importable from here::

    from jsonproto import Dispatcher, JSONServerFactory

See C{docs/} for the wire protocol, writing message types, and operations.
"""

from jsonproto.core import compiled as _compiled  # first: it decides which core is imported
from jsonproto.dispatch.seed import defaultDispatcher
from jsonproto.client import Client, JSONClientProtocol, connect
from jsonproto.server.identity import ClientIdentity
from jsonproto.server.registry import ConnectionInfo, ConnectionRegistry
from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.server.echo import EchoFactory, EchoProtocol
from jsonproto.errors import ErrorCode, RequestError
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.protocol import JSONInt32Protocol, JSONLineProtocol, JSONMessageProtocol

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
