"""
The daemon's listening sockets: what an endpoint string binds, whether it
can be bound (checked before twistd daemonises, so that the operator sees
why at once), binding it with C{SO_REUSEPORT} so that several processes
share it, and taking every connection the kernel has queued before the
socket closes.

Only Twisted's public API listens: a socket we bind ourselves is handed to
C{reactor.adoptStreamPort}, which every supported Twisted has.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
from typing import Any, NamedTuple

from twisted.internet import defer, endpoints
from twisted.internet.abstract import isIPv6Address
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from jsonproto import compat


class ParseOnlyReactor:
    """
    Stands in for the reactor while endpoint strings are parsed, so that
    parsing installs no reactor (twistd chooses it later) and listens on
    nothing.
    """


def parseServer(description: str) -> Any:
    """
    The endpoint for C{description}, parsed without a reactor: for looking
    at, not for listening.
    """
    from jsonproto.server.endpoints import listeningEndpoint

    return listeningEndpoint(ParseOnlyReactor(), description)


class CannotListen(Exception):
    """
    A listener could not start.  The message is one line, naming the
    endpoint and what to do: twistd shows it as it is.
    """


class CannotShare(ValueError):
    """
    An endpoint that several processes cannot listen on at once.
    """


class StreamBinding(NamedTuple):
    """
    What a TCP (or TLS-over-TCP) endpoint binds.

    @ivar family: C{AF_INET} or C{AF_INET6}.
    @ivar interface: The address; C{""} or C{"::"} for all.
    @ivar port: The port; 0 for any free one.
    @ivar backlog: The accept-queue length.
    """

    family: int
    interface: str
    port: int
    backlog: int


def streamBinding(endpoint: Any) -> StreamBinding | None:
    """
    What a C{tcp:}, C{tcp6:} or C{ssl:} endpoint binds; L{None} for any
    other kind.
    """
    if isinstance(endpoint, endpoints.TCP6ServerEndpoint):
        address = compat.tcpServerAddress(endpoint)
        return StreamBinding(socket.AF_INET6, address.interface or "::", address.port, address.backlog)
    if isinstance(endpoint, endpoints.TCP4ServerEndpoint):
        address = compat.tcpServerAddress(endpoint)
        family = socket.AF_INET6 if isIPv6Address(address.interface) else socket.AF_INET
        return StreamBinding(family, address.interface, address.port, address.backlog)
    return None


def innermost(endpoint: Any) -> Any:
    """
    The endpoint that owns the socket, inside any C{jsonproto-tls:} or
    C{haproxy:} wrapping.
    """
    from jsonproto.server.tls import TLSServerEndpoint

    while True:
        if isinstance(endpoint, TLSServerEndpoint):
            endpoint = endpoint.tcp
            continue
        wrapped = compat.proxiedEndpoint(endpoint)
        if wrapped is None:
            return endpoint
        endpoint = wrapped


def _bindable(binding: StreamBinding) -> tuple[Any, ...]:
    if binding.family == socket.AF_INET6:
        # Scope ids (fe80::1%eth0) need resolving; the address is numeric.
        return socket.getaddrinfo(binding.interface, binding.port, binding.family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)[0][4]
    return (binding.interface, binding.port)


def bindSocket(binding: StreamBinding, reusePort: bool) -> socket.socket:
    """
    A socket bound as Twisted binds one (C{SO_REUSEADDR}), and with
    C{SO_REUSEPORT} if asked, not yet listening.

    @raise OSError: If it cannot be bound.
    """
    sock = socket.socket(binding.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reusePort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(_bindable(binding))
    except BaseException:
        sock.close()
        raise
    return sock


_ADVICE = {
    errno.EADDRINUSE: "another process is listening there: stop it, or choose another port",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE (or systemd socket activation)",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's: check interface=",
}


def cannotListen(description: str, error: BaseException | None) -> CannotListen:
    """
    The one-line reason C{description} cannot be listened on, from the
    error binding it gave.
    """
    socketError = getattr(error, "socketError", error)  # CannotListenError wraps it
    number = getattr(socketError, "errno", None)
    reason = getattr(socketError, "strerror", None) or str(socketError)
    advice = _ADVICE.get(number) if isinstance(number, int) else None
    if isinstance(socketError, FileNotFoundError):  # a Unix socket's directory
        advice = "create the directory first; under systemd, RuntimeDirectory="
    message = f"cannot listen on {description}: {reason}"
    return CannotListen(f"{message} ({advice})" if advice else message)


def checkCanListen(description: str, reusePort: bool = False) -> None:
    """
    Check, before the daemon starts, that C{description} can be listened
    on: bind its address and let it go at once (TCP and TLS), or check that
    the directory of its socket exists (Unix).

    twistd daemonises before services start, and then reports a failure to
    listen only as a quoted, truncated exception; checked here, the
    operator reads the reason on the terminal.  A port taken in between is
    still reported when the listener starts.

    @raise CannotListen: If it cannot be.
    """
    endpoint = innermost(parseServer(description))
    binding = streamBinding(endpoint)
    if binding is not None:
        try:
            bindSocket(binding, reusePort).close()
        except (OSError, OverflowError) as e:  # OverflowError: a port past 65535
            raise cannotListen(description, e) from None
        return
    if isinstance(endpoint, endpoints.UNIXServerEndpoint):
        path = compat.unixServerPath(endpoint)
        if path.startswith("\0"):  # the abstract namespace has no directory
            return
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise cannotListen(description, FileNotFoundError(errno.ENOENT, f"the directory {directory} does not exist"))
        if not os.access(directory, os.W_OK | os.X_OK):
            raise CannotListen(
                f"cannot listen on {description}: this user cannot create files in {directory} "
                "(run as a user that can, or choose another directory)"
            )


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    A TCP (or C{ssl:}) server endpoint bound with C{SO_REUSEPORT}, so that
    several processes listen on one port and the kernel spreads
    connections over them.

    It binds the socket itself and hands it to C{reactor.adoptStreamPort}:
    Twisted's own C{reusePort} binding exists only in recent releases.
    """

    def __init__(self, reactor: Any, binding: StreamBinding) -> None:
        self.reactor = reactor
        self.binding = binding

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        return defer.execute(self._listen, factory)

    def _listen(self, factory: Any) -> Any:
        from twisted.internet.error import CannotListenError

        try:
            sock = bindSocket(self.binding, reusePort=True)
        except OSError as e:
            raise CannotListenError(self.binding.interface, self.binding.port, e) from None
        try:
            sock.listen(self.binding.backlog)
            sock.setblocking(False)
            # The reactor takes a duplicate of the descriptor: ours closes.
            return self.reactor.adoptStreamPort(sock.fileno(), self.binding.family, factory)
        finally:
            sock.close()


def shareable(reactor: Any, endpoint: Any) -> Any:
    """
    The same endpoint, bound with C{SO_REUSEPORT}: C{tcp:}, C{tcp6:},
    C{ssl:}, C{jsonproto-tls:} and C{haproxy:} around any of them.

    @raise CannotShare: For any other (a Unix socket, systemd's sockets).
    """
    from jsonproto.server.tls import TLSServerEndpoint

    if isinstance(endpoint, TLSServerEndpoint):
        return TLSServerEndpoint(shareable(reactor, endpoint.tcp), endpoint.tls)
    wrapped = compat.proxiedEndpoint(endpoint)
    if wrapped is not None:
        return compat.proxyEndpoint(shareable(reactor, wrapped))
    binding = streamBinding(endpoint)
    if binding is None:
        raise CannotShare(f"{type(endpoint).__name__} cannot be shared by several processes")
    return ReusePortEndpoint(reactor, binding)


def reusePortEndpoint(reactor: Any, description: str) -> Any:
    """
    The endpoint for C{description}, bound with C{SO_REUSEPORT}.

    @raise CannotShare: If it cannot be.
    """
    from jsonproto.server.endpoints import listeningEndpoint

    return shareable(reactor, listeningEndpoint(reactor, description))


# A classic BPF program of one instruction, "return 0": drop the packet.
_BPF_RET_K = 0x06
SO_ATTACH_FILTER = 26


def stopAdmitting(port: Any) -> bool:
    """
    Make the kernel complete no more TCP handshakes on a listening socket,
    while it stays open: new SYNs, and the last ACK of handshakes under
    way, are dropped (the client retries, then finds the port closed).
    After this, the accept queue only shrinks, so L{acceptQueued} can
    empty it and nothing the kernel accepted is reset when it closes.

    Linux only (a socket filter); elsewhere, and for Unix sockets, it does
    nothing.

    @return: Whether the filter is in place.
    """
    if not sys.platform.startswith("linux"):
        return False
    fileno = getattr(port, "fileno", None)
    if fileno is None:
        return False
    try:
        import ctypes

        class SockFilter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

        program = (SockFilter * 1)(SockFilter(_BPF_RET_K, 0, 0, 0))
        sock = socket.socket(fileno=os.dup(fileno()))
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return False
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(SockFprog(1, program)))
        finally:
            sock.close()
    except (OSError, ValueError, ImportError):
        return False
    return True


MAX_ACCEPT_ROUNDS = 1000


def acceptQueued(port: Any) -> None:
    """
    Accept every connection waiting in a listening port's accept queue now,
    as the port's own reads would, so that closing it resets none of them.

    Bounded: at most L{MAX_ACCEPT_ROUNDS} reads (each accepts many), in case
    accepting fails the same way every time.
    """
    fileno = getattr(port, "fileno", None)
    doRead = getattr(port, "doRead", None)
    if fileno is None or doRead is None:
        return
    poller = select.poll()
    try:
        poller.register(fileno(), select.POLLIN)
    except (OSError, ValueError):
        return
    for _ in range(MAX_ACCEPT_ROUNDS):
        if not poller.poll(0):
            return
        doRead()
