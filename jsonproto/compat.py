"""
Every use jsonproto makes of a private name of Twisted, one guarded function
each.

Twisted's endpoint objects keep what they were parsed from (port, backlog,
interface, the endpoint a wrapper wraps) in private attributes, and offer
no public way to read them back; the daemon needs them to bind the same
address with C{SO_REUSEPORT}, and to check an address before the process
daemonises.  Twisted's log publisher lists its observers only privately;
C{--log-level} wraps them.

Each function checks that the attributes it reads are there and raises
L{TwistedChanged} if they are not, so that a Twisted release that renames
them fails loudly (C{tests/test_compat.py} runs every one against the
installed Twisted) instead of silently doing something else.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class TwistedChanged(RuntimeError):
    """
    The installed Twisted no longer has a private name jsonproto relies on:
    this jsonproto release does not support it.
    """


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


def sslServerAddress(endpoint: Any) -> tuple[StreamAddress, Any]:
    """
    The address and the TLS context factory of an
    L{twisted.internet.endpoints.SSL4ServerEndpoint} (C{ssl:}), kept in its
    C{_port}, C{_backlog}, C{_interface} and C{_sslContextFactory}.
    """
    port, backlog, interface, contextFactory = _read(
        endpoint, "_port", "_backlog", "_interface", "_sslContextFactory"
    )
    return StreamAddress(port, backlog, interface), contextFactory


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
    from twisted.internet import endpoints

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
