"""
The private names of Twisted that jsonproto reads (L{jsonproto.compat}),
against the installed Twisted: if a release renames one, these fail, naming
it, instead of the daemon misbehaving quietly.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints, epollreactor, tcp
from twisted.logger import LogPublisher
from twisted.protocols.haproxy import proxyEndpoint
from twisted.trial.unittest import SynchronousTestCase

from jsonproto import compat
from jsonproto.daemon.listening import ParseOnlyReactor, parseServer

from tests.e2e import writeCertificate


class EndpointTests(SynchronousTestCase):
    def test_tcp(self) -> None:
        """
        A parsed tcp: or tcp6: endpoint gives back its port, backlog and
        interface.
        """
        self.assertEqual(
            compat.tcpServerAddress(parseServer("tcp:3001:interface=127.0.0.1:backlog=7")),
            (3001, 7, "127.0.0.1"),
        )
        self.assertEqual(compat.tcpServerAddress(parseServer(r"tcp6:3002:interface=\:\:1")), (3002, 50, "::1"))

    def test_ssl(self) -> None:
        """
        An ssl: endpoint (served by jsonproto-tls:) gives back the address
        of the TCP endpoint under its TLS.
        """
        from jsonproto.daemon.listening import innermost

        key = self.mktemp()
        writeCertificate(key)
        self.assertEqual(compat.tcpServerAddress(innermost(parseServer(f"ssl:3443:privateKey={key}:backlog=9"))), (3443, 9, ""))

    def test_unix(self) -> None:
        """
        A parsed unix: endpoint gives back its path.
        """
        self.assertEqual(compat.unixServerPath(parseServer("unix:/run/x/jsonproto.sock")), "/run/x/jsonproto.sock")

    def test_proxied(self) -> None:
        """
        The endpoint inside haproxy: is found, whether parsed or built with
        the public proxyEndpoint; other endpoints have none.
        """
        inner = compat.proxiedEndpoint(parseServer("haproxy:tcp:3001"))
        self.assertIsInstance(inner, endpoints.TCP4ServerEndpoint)
        self.assertEqual(compat.tcpServerAddress(inner).port, 3001)
        tcp = endpoints.TCP4ServerEndpoint(ParseOnlyReactor(), 1)
        self.assertIs(compat.proxiedEndpoint(proxyEndpoint(tcp)), tcp)
        self.assertIsNone(compat.proxiedEndpoint(tcp))

    def test_changed(self) -> None:
        """
        An endpoint without the attributes read fails loudly, naming them
        and the Twisted version.
        """
        import twisted

        error = self.assertRaises(compat.TwistedChanged, compat.tcpServerAddress, object())
        self.assertIn("_port, _backlog, _interface", str(error))
        self.assertIn(twisted.__version__, str(error))


class LogObserverTests(SynchronousTestCase):
    def test_observers(self) -> None:
        """
        A publisher's observers are listed, in order, as a copy.
        """
        first, second = [].append, [].append
        publisher = LogPublisher(first, second)
        observers = compat.logObservers(publisher)
        self.assertEqual(observers, [first, second])
        observers.clear()
        self.assertEqual(compat.logObservers(publisher), [first, second])


class CheckTests(SynchronousTestCase):
    """
    L{compat.check} passes on the installed Twisted, and each piece of the
    reactor's loop and TCP read that L{compat.EPollReactor} repeats fails
    it loudly when it changes.
    """

    def test_installed(self) -> None:
        """
        Every check passes against the installed Twisted.
        """
        compat.check()

    def assertChanged(self, what: str) -> None:
        error = self.assertRaises(compat.TwistedChanged, compat.checkReactor)
        self.assertIn(what, str(error))
        self.assertRaises(compat.TwistedChanged, compat.EPollReactor)

    def test_doReadReplaced(self) -> None:
        """
        A TCP server transport that reads otherwise than tcp.Connection
        fails the check, and the reactor refuses to be made.
        """
        self.patch(tcp.Server, "doRead", lambda self: None)
        self.assertChanged("tcp.Server reads otherwise than tcp.Connection")

    def test_doReadRewritten(self) -> None:
        """
        A tcp.Connection.doRead that no longer receives from its socket
        fails the check.
        """

        def rewritten(self: Any) -> Any:
            return self._dataReceived(b"")

        # tcp.Server first: patched after tcp.Connection, it would record
        # the rewritten doRead it inherits as its original, and keep it.
        self.patch(tcp.Server, "doRead", rewritten)
        self.patch(tcp.Connection, "doRead", rewritten)
        self.assertChanged("tcp.Connection.doRead no longer receives from its socket")

    def test_dataReceivedRewritten(self) -> None:
        """
        A tcp.Connection._dataReceived that no longer hands data to its
        protocol fails the check.
        """
        self.patch(tcp.Connection, "_dataReceived", lambda self, data: None)
        self.assertChanged("tcp.Connection._dataReceived no longer passes data to its protocol")

    def test_pollInChanged(self) -> None:
        """
        A reactor that no longer reads on EPOLLIN fails the check.
        """
        self.patch(epollreactor.EPollReactor, "_POLL_IN", 0)
        self.assertChanged("EPollReactor no longer reads on EPOLLIN")
