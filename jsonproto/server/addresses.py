"""
Client addresses: how operators write them, the IP address per-address
limits count by, and the networks those limits spare.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress

LOOPBACK = "127.0.0.0/8,::1"
"""
The default of C{--per-ip-exempt}: the machine itself.  Its connections are
the operator's own (a local proxy's pool, a monitoring agent, a load test),
and a proxy on the same machine that sends no PROXY header makes all its
clients one loopback address: a per-address limit would cap the whole
service at it.
"""


def formatAddress(address: IAddress | None) -> str:
    """
    A peer address as operators write it: C{127.0.0.1:5000},
    C{[::1]:5000}, C{unix:/run/sock} (a client of a Unix socket has no
    name of its own: C{unix:}).
    """
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return "unix:" + (name.decode("utf-8", "replace") if isinstance(name, bytes) else name or "")
    return str(address)


def hostOf(address: IAddress | None) -> str | None:
    """
    The client's IP address, which per-address limits count by; L{None}
    where there is none (a Unix socket).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    return None


class Networks:
    """
    A set of IP networks, asked whether an address is in one of them.  An
    IPv4 address an IPv6 socket reports as C{::ffff:a.b.c.d} is taken as
    the IPv4 address it is.
    """

    def __init__(self, networks: Iterable[str] = ()) -> None:
        """
        @param networks: Networks (C{10.0.0.0/8}, C{::1}); a bare address is
            a network of one.
        @raise ValueError: If one is not a network.
        """
        self.networks = tuple(ipaddress.ip_network(text.strip(), strict=False) for text in networks)
        # The answer by address: a service sees the same few addresses
        # over and over.  Bounded, since addresses are the clients' to pick.
        self._known: dict[str, bool] = {}

    @classmethod
    def parse(cls, text: str) -> Networks:
        """
        Networks from a comma-separated list, or C{none} for none.  Since
        this is what an operator typed, a network with host bits set
        (C{127.0.0.1/8}), an empty item or an empty list is refused rather
        than guessed at.

        @raise ValueError: If an item is not a network, naming it.
        """
        if text.strip() == "none":
            return cls()
        items = [item.strip() for item in text.split(",")]
        if not any(items):
            raise ValueError('give IP networks, comma-separated, or "none" for none')
        for item in items:
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError as e:
                raise ValueError(f"{item!r} is not an IP address or network, such as 127.0.0.0/8 or ::1 ({e})") from None
        return cls(items)

    def __contains__(self, host: object) -> bool:
        if not self.networks or not isinstance(host, str):
            return False
        known = self._known.get(host)
        if known is None:
            known = self._lookUp(host)
            if len(self._known) >= 4096:
                self._known.clear()
            self._known[host] = known
        return known

    def _lookUp(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == network.version and address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"Networks({[str(network) for network in self.networks]!r})"
