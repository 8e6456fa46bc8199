"""
Every use jsonproto makes of a private name of Twisted, in one place.

Each is here because Twisted's public API offers no way to do what a
production server needs, and says why:

    - endpoints keep what they were parsed from (port, backlog, interface,
      the endpoint a wrapper wraps) in private attributes: the daemon needs
      them to bind the same address with C{SO_REUSEPORT}, and to check an
      address before the process daemonises;
    - Twisted's log publisher lists its observers only privately:
      C{--log-level} wraps them;
    - a reply is sent at once, when nothing is queued, by looking at the
      transport's private buffers (L{writeNow});
    - Twisted's PROXY protocol wrapper is private, and loses replies when a
      client half-closes (L{HalfCloseableProxyWrapper});
    - the epoll reactor's loop, without its legacy logging context, reads
      the reactor's private table, and repeats a TCP connection's read
      (L{EPollReactor}).

Each is guarded: it checks that the installed Twisted still has what it
relies on and raises L{TwistedChanged} naming it if not, and
C{tests/test_compat.py} runs every check against the installed Twisted, so
that a release that changes them fails loudly instead of jsonproto falling
back silently to something slower or wrong.  The Twisted requirement in
C{setup.cfg} is bounded to the releases these were checked against.

Nothing else in the package may touch a private name of Twisted.
"""

from __future__ import annotations

import errno
import select
from typing import Any, NamedTuple

from twisted.internet import abstract, endpoints, epollreactor, main, tcp
from twisted.internet.interfaces import IHalfCloseableProtocol, IStreamServerEndpoint
from twisted.protocols.haproxy import _wrapper as _haproxy
from twisted.python import log
from zope.interface import implementer


class TwistedChanged(RuntimeError):
    """
    The installed Twisted no longer has a private name jsonproto relies on:
    this jsonproto release does not support it.
    """


def _require(condition: bool, what: str) -> None:
    if not condition:
        import twisted

        raise TwistedChanged(f"the installed Twisted {twisted.__version__} has changed: {what}; jsonproto.compat needs updating")


def _read(thing: Any, *names: str) -> tuple[Any, ...]:
    missing = [name for name in names if not hasattr(thing, name)]
    if missing:
        import twisted

        raise TwistedChanged(
            f"{type(thing).__module__}.{type(thing).__qualname__} has no {', '.join(missing)} in "
            f"Twisted {twisted.__version__}: this jsonproto does not support that version"
        )
    return tuple(getattr(thing, name) for name in names)


class StreamAddress(NamedTuple):
    """
    Where a TCP or TLS server endpoint listens.

    @ivar port: The port number (0 for any free one).
    @ivar backlog: The accept-queue length it asks for.
    @ivar interface: The address to bind; C{""} for every IPv4 address.
    """

    port: int
    backlog: int
    interface: str


def tcpServerAddress(endpoint: Any) -> StreamAddress:
    """
    The address a L{twisted.internet.endpoints.TCP4ServerEndpoint} or
    C{TCP6ServerEndpoint} listens on, kept in its C{_port}, C{_backlog} and
    C{_interface}.
    """
    return StreamAddress(*_read(endpoint, "_port", "_backlog", "_interface"))


def unixServerPath(endpoint: Any) -> str:
    """
    The socket path of a L{twisted.internet.endpoints.UNIXServerEndpoint},
    kept in its C{_address}.
    """
    (address,) = _read(endpoint, "_address")
    return address.decode() if isinstance(address, bytes) else str(address)


def proxiedEndpoint(endpoint: Any) -> Any | None:
    """
    The endpoint inside a C{haproxy:} endpoint, or L{None} if C{endpoint}
    is not one.

    C{haproxy:} endpoints are Twisted's private C{_WrapperServerEndpoint}
    around L{twisted.protocols.haproxy.HAProxyWrappingFactory}; the wrapped
    endpoint is its C{_wrappedEndpoint}.  (Rebuild one around another
    endpoint with the public L{twisted.protocols.haproxy.proxyEndpoint}.)
    """
    wrapper = getattr(endpoints, "_WrapperServerEndpoint", None)
    if wrapper is None:
        raise TwistedChanged("twisted.internet.endpoints has no _WrapperServerEndpoint")
    if not isinstance(endpoint, wrapper):
        return None
    (wrapped,) = _read(endpoint, "_wrappedEndpoint")
    return wrapped


def logObservers(publisher: Any) -> list[Any]:
    """
    The observers a L{twisted.logger.LogPublisher} sends events to, kept in
    its C{_observers}: C{--log-level} puts a filter in front of each of the
    ones twistd set up, which are reachable no other way.
    """
    (observers,) = _read(publisher, "_observers")
    if not isinstance(observers, list):
        raise TwistedChanged(f"LogPublisher._observers is a {type(observers).__name__}, not a list")
    return list(observers)


# Writing a reply at once
#
# Twisted's transport.write() only queues: the bytes go out in the reactor's
# next turn, after an epoll update to watch for writability and another to
# stop.  When nothing is queued, sending straight away saves both updates
# and a turn for every reply written (a fifth of the CPU of a ping-pong
# exchange).  It must never overtake queued bytes, so it looks at the
# transport's two buffers, which are private.


def checkDirectWrite() -> None:
    """
    @raise TwistedChanged: If a TCP server transport no longer keeps its
        queued bytes where L{writeNow} looks for them.
    """
    _require(issubclass(tcp.Server, abstract.FileDescriptor), "tcp.Server is no longer a FileDescriptor")
    for name in ("dataBuffer", "_writeDisconnecting", "socket"):
        _require(hasattr(tcp.Server, name) or name == "socket", f"tcp.Server has no {name}")
    _require(
        "_tempDataBuffer" in abstract.FileDescriptor.__init__.__code__.co_names
        and {"dataBuffer", "_tempDataBuffer"} <= set(abstract.FileDescriptor.doWrite.__code__.co_names),
        "FileDescriptor no longer queues writes in dataBuffer and _tempDataBuffer",
    )


def writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}: straight to the socket when it is a plain
    TCP server transport with nothing queued, else (and for whatever the
    socket does not take) through C{transport.write}.
    """
    if (
        type(transport) is tcp.Server
        and not transport.dataBuffer
        and not transport._tempDataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # Full (EAGAIN) or failed: the transport's own write queues the
            # bytes, or meets the error and closes.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


# The PROXY protocol, half-closed
#
# Twisted's PROXY protocol wrapper (haproxy:) does not provide
# IHalfCloseableProtocol, so when a client behind it shuts down its sending
# side, the TCP transport ends the whole connection and every reply still to
# be written is lost.  This subclass passes the half-close on.  Twisted
# exposes neither the wrapper class nor the endpoint that applies it.


def checkProxyWrapper() -> None:
    """
    @raise TwistedChanged: If Twisted's PROXY wrapper or its endpoint are
        no longer where, or what, this module expects.
    """
    _require(hasattr(_haproxy, "HAProxyProtocolWrapper"), "no twisted.protocols.haproxy._wrapper.HAProxyProtocolWrapper")
    _require(hasattr(_haproxy, "HAProxyWrappingFactory"), "no twisted.protocols.haproxy._wrapper.HAProxyWrappingFactory")
    _require(hasattr(endpoints, "_WrapperServerEndpoint"), "no twisted.internet.endpoints._WrapperServerEndpoint")
    probe = endpoints._WrapperServerEndpoint(None, _haproxy.HAProxyWrappingFactory)
    _require(
        getattr(probe, "_wrappedEndpoint", "missing") is None
        and getattr(probe, "_wrapperFactory", None) is _haproxy.HAProxyWrappingFactory,
        "_WrapperServerEndpoint keeps its endpoint and factory under other names",
    )


@implementer(IHalfCloseableProtocol)
class HalfCloseableProxyWrapper(_haproxy.HAProxyProtocolWrapper):
    """
    Twisted's PROXY protocol wrapper, passing a half-close through to the
    protocol it wraps (and a half-close of ours to the transport).
    """

    def _halfCloseable(self) -> Any:
        # Twisted's wrappers (TLS) claim whatever their wrapped protocol
        # provides, and find missing methods on their transport (this):
        # only a protocol whose class has the method can take a half-close.
        wrapped = self.wrappedProtocol
        if IHalfCloseableProtocol.providedBy(wrapped) and hasattr(type(wrapped), "readConnectionLost"):
            return wrapped
        return None

    transport: Any

    def readConnectionLost(self) -> None:
        wrapped = self._halfCloseable()
        if wrapped is not None:
            wrapped.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        wrapped = self._halfCloseable()
        if wrapped is not None:
            wrapped.writeConnectionLost()

    def loseWriteConnection(self) -> None:
        self.transport.loseWriteConnection()


class HalfCloseableProxyFactory(_haproxy.HAProxyWrappingFactory):
    """
    Wraps connections in L{HalfCloseableProxyWrapper}.
    """

    protocol = HalfCloseableProxyWrapper  # type: ignore[assignment]  # a subclass of HAProxyProtocolWrapper


def proxyEndpoint(wrapped: IStreamServerEndpoint) -> IStreamServerEndpoint:
    """
    C{wrapped}, its connections starting with a PROXY protocol header, as
    Twisted's C{haproxy:} endpoint reads it, half-closes passed on.
    """
    return endpoints._WrapperServerEndpoint(wrapped, HalfCloseableProxyFactory)


def halfCloseableProxies(endpoint: Any) -> Any:
    """
    The endpoint a C{haproxy:} description gave, with Twisted's PROXY
    wrapper replaced by L{HalfCloseableProxyWrapper}; any other endpoint as
    it is.
    """
    if (
        isinstance(endpoint, endpoints._WrapperServerEndpoint)
        and endpoint._wrapperFactory is _haproxy.HAProxyWrappingFactory
    ):
        return proxyEndpoint(endpoint._wrappedEndpoint)
    return endpoint


def behindProxy(transport: Any) -> bool:
    """
    Whether a PROXY protocol wrapper sits under this transport (directly,
    or under TLS): the real client's address is known only once the header
    has been read.
    """
    for _ in range(3):
        if isinstance(transport, _haproxy.HAProxyProtocolWrapper):
            return True
        transport = getattr(transport, "transport", None)
        if transport is None:
            return False
    return False


def check() -> None:
    """
    Check everything this module relies on.

    @raise TwistedChanged: Naming the first piece the installed Twisted no
        longer has.
    """
    checkDirectWrite()
    checkProxyWrapper()
    checkReactor()


# The reactor's loop
#
# Twisted's epoll reactor hands every ready descriptor to
# log.callWithLogger, which sets up a legacy logging context (a prefix for
# twisted.python.log.msg lines) around each read or write.  jsonproto logs
# with twisted.logger, naming the connection in every event, so that layer
# only costs: four Python calls and a dictionary per event, about a tenth of
# the daemon's CPU in ping-pong.  The loop that skips it reads the reactor's
# private table of selectables and its poller.
#
# A TCP connection that is only readable, the event of every request, is
# read here as tcp.Connection.doRead reads it, without the three Python
# calls between the loop and the protocol (_doReadOrWrite, doRead,
# _dataReceived) and the fileno() check before them (a closed socket leaves
# epoll's interest list, so no event names it; were one to, its recv would
# fail and close it): 8% of the daemon's instructions per ping-pong
# exchange (docs/operations.md).  Every other event goes through Twisted's
# own _doReadOrWrite.

_EPOLLIN = select.EPOLLIN
_RECV_CODE = {"socket", "recv", "bufferSize", "_dataReceived"}
_RECEIVED_CODE = {"protocol", "dataReceived", "CONNECTION_DONE"}


def checkReactor() -> None:
    """
    @raise TwistedChanged: If the epoll reactor's loop, or a TCP
        connection's read, no longer works the way L{EPollReactor} repeats
        it.
    """
    reactor = epollreactor.EPollReactor.__new__(epollreactor.EPollReactor)
    for name in ("_doReadOrWrite", "_disconnectSelectable", "doPoll"):
        _require(hasattr(reactor, name), f"EPollReactor has no {name}")
    code = epollreactor.EPollReactor.doPoll.__code__.co_names
    _require({"_poller", "_selectables", "_doReadOrWrite"} <= set(code), "EPollReactor.doPoll no longer polls _poller for _selectables")
    _require(epollreactor.EPollReactor._POLL_IN == select.EPOLLIN, "EPollReactor no longer reads on EPOLLIN")
    _require(tcp.Server.doRead is tcp.Connection.doRead, "tcp.Server reads otherwise than tcp.Connection")
    _require(_RECV_CODE <= set(tcp.Connection.doRead.__code__.co_names), "tcp.Connection.doRead no longer receives from its socket")
    _require(
        _RECEIVED_CODE <= set(tcp.Connection._dataReceived.__code__.co_names),
        "tcp.Connection._dataReceived no longer passes data to its protocol",
    )


class EPollReactor(epollreactor.EPollReactor):
    """
    Twisted's epoll reactor, dispatching events without the legacy logging
    context, and reading TCP connections without the calls in between.

    @raise TwistedChanged: When made on a Twisted whose loop or TCP read no
        longer works the way this one repeats it (L{checkReactor}).
    """

    def __init__(self) -> None:
        checkReactor()
        super().__init__()

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        doReadOrWrite = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if event != _EPOLLIN or type(selectable) is not tcp.Server:
                doReadOrWrite(selectable, fd, event)
                continue
            # What doRead would return (a reason to close, or None), and
            # what Twisted's loop does with it.
            try:
                data = selectable.socket.recv(selectable.bufferSize)
            except OSError as err:
                if err.args[0] != errno.EWOULDBLOCK:
                    self._disconnectSelectable(selectable, main.CONNECTION_LOST, True)
                continue
            if not data:
                self._disconnectSelectable(selectable, main.CONNECTION_DONE, True)
                continue
            try:
                # A returned reason closes, as for Twisted (which deprecates,
                # but honours, returning one).
                why = selectable.protocol.dataReceived(data)  # type: ignore[func-returns-value]
            except BaseException as raised:
                log.err()
                self._disconnectSelectable(selectable, raised, False)
                continue
            if why:
                self._disconnectSelectable(selectable, why, True)

    doIteration = doPoll
