"""
The seams of jsonproto, as zope.interface declares them: what a handler is
given (L{IHandlerContext}), the registry it can reach (L{IConnections}),
and the per-connection pipeline the protocol adapter drives (L{IPipeline}).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IConnections(Interface):
    """
    The open connections of a service, as handlers see them (all its
    listeners together).
    """

    def __iter__():
        """
        The open connections' contexts (L{IHandlerContext}), a snapshot.
        """

    def __len__():
        """
        How many are open.
        """

    def get(connectionId):
        """
        The context of the open connection with this id, or L{None}.
        """

    def send(connectionId, message):
        """
        Push C{message} to the open connection with this id.

        @return: Whether it was open.
        @raise ValueError: If C{message} has a C{status}.
        """


class IHandlerContext(Interface):
    """
    One connection, as a handler sees it: its second argument, and the
    argument of the dispatcher's open and close hooks.
    """

    id = Attribute("int: unique within the process, in order of arrival; in every log line about it.")
    peer = Attribute("str: the client's address, as 127.0.0.1:5000, [::1]:5000 or unix:.")
    host = Attribute("str or None: the client's IP address (None on a Unix socket).")
    connectedAt = Attribute("float: when it was accepted, in the reactor's seconds.")
    tls = Attribute("bool: whether it is encrypted.")
    clientIdentity = Attribute("ClientIdentity or None: the names the client's certificate proved.")
    state = Attribute("dict: the service's own data about this connection, for its lifetime.")
    connections = Attribute("IConnections: every open connection of the service.")
    messagesIn = Attribute("int: messages received whole.")
    messagesOut = Attribute("int: messages sent.")

    def send(message):
        """
        Push C{message} to this client now, outside request and reply.

        @raise ValueError: If C{message} has a C{status}.
        """

    def close(reason="closed by the server"):
        """
        Close this connection after the replies already written.
        """


class IPipeline(Interface):
    """
    One connection's messages without I/O: bytes in, framed replies out
    (L{jsonproto.core.pipeline.Pipeline} and its JSON-RPC subclass
    L{jsonproto.core.rpcpipeline.RPCPipeline}, and their compiled twins).
    """

    traffic = Attribute("Traffic: messages and bytes in and out.")
    refusing = Attribute("bool: answer later messages 'Shutting down'.")
    holdsMessages = Attribute("bool: whole messages have been received and not yet answered.")
    closeReason = Attribute("str or None: why the connection must close, after run() returned CLOSE.")
    closeKind = Attribute("str or None: that reason's category.")

    def receive(data):
        """
        Take the bytes of one read.
        """

    def run():
        """
        Answer what has arrived; returns IDLE, FLUSH, YIELD, BLOCKED or CLOSE.
        """

    def complete(owed, reply):
        """
        A reply that was waited for is ready.
        """

    def push(message):
        """
        Frame a message the server sends of its own accord.
        """

    def takeOutput():
        """
        The framed bytes ready to write.
        """

    def halt():
        """
        Answer nothing more.
        """

    def release():
        """
        Give back the buffer budget held.
        """
