"""
TLS on the server, over real sockets on 127.0.0.1 with generated
certificates: Twisted's ssl: endpoint, jsonproto-tls: with client
certificates and reloading, handshake timeouts, and the wrong protocol on
the wrong port.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
from typing import Any

from twisted.internet import endpoints, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import INegotiated
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import directlyProvides

from jsonproto.tools import certs
from jsonproto.client import Client
from jsonproto.server.connection import ClientIdentity
from jsonproto.limits import Limits
from jsonproto.server.protocol import JSONServerFactory
from tests.e2e import Collector, certificateOnly, exchange, lines, startDaemon, twistd
from tests.support import LogCatcher, line, readLines
from tests.test_twistd import DEADLINE, readUntil

GREETING = line({"type": "GREETING", "name": "TLS"})


class Certificates:
    """
    A CA, a server certificate it signed, a client certificate it signed,
    and a self-signed server certificate, each beside its key
    (C{server.pem}, C{server.key}), in a temporary directory.
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory)
        self.path = lambda name: os.path.join(directory, name)
        self.ca = self.write("ca", ["jsonproto test CA"], isCA=True)
        self.server = self.write("server", ["localhost", "127.0.0.1"], ca=self.ca)
        self.client = self.write("client", ["sensor-17", "sensor-17.example"], ca=self.ca, usage="client")
        self.selfSigned = self.write("self", ["localhost", "127.0.0.1"])
        self.selfSignedClient = self.write("selfclient", ["sensor-17"], usage="client")
        self.caDir = certificateOnly(self.ca, self.path("trusted"))

    def write(self, name: str, names: list[str], **kwargs: Any) -> str:
        path = self.path(f"{name}.pem")
        certs.writeCertificate(path, names, keyPath=self.key(path), **kwargs)
        return path

    def key(self, certificate: str) -> str:
        return certs.keyPathFor(certificate)

    def files(self, certificate: str) -> str:
        """
        The endpoint parameters serving C{certificate}.
        """
        return f"privateKey={self.key(certificate)}:certKey={certificate}"


class TLSServerTests(TestCase):
    def setUp(self) -> None:
        self.certs = Certificates(os.path.abspath(self.mktemp()))

    def blocking(self, port: int, **kwargs: object):  # type: ignore[no-untyped-def]
        def run() -> dict[str, object]:
            with Client("localhost", port, tls=True, **kwargs) as c:  # type: ignore[arg-type]
                return c.request({"type": "WHOAMI"})

        return deferToThread(run)

    @inlineCallbacks
    def test_sslSeparateCertificate(self) -> None:
        """
        ssl: with the key and the certificate in separate files
        (certKey=), and the CA's certificate as the chain
        (extraCertChain=), verified by a client trusting that CA.
        """
        _, [port] = yield startDaemon(
            self, "--port", f"ssl:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}:extraCertChain={self.certs.ca}",
            "--handlers", "tests.identityhandlers",
        )
        reply = yield self.blocking(port, ca=self.certs.ca)
        self.assertEqual(reply, {"status": "OK", "tls": True, "commonName": None, "dnsNames": []})

    @inlineCallbacks
    def test_hostnameChecked(self) -> None:
        """
        Clients check the server's name: the Twisted client (with
        service-identity) and the blocking one refuse a certificate for
        another name, naming the name they wanted.
        """
        _, [port] = yield startDaemon(self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}")
        received = yield exchange(f"tls:localhost:{port}:trustRoots={self.certs.caDir}", GREETING, lines(1))
        self.assertEqual(readLines(received), [{"status": "OK", "reply": "Hello, TLS!"}])
        refused = Collector(lines(1))
        yield endpoints.connectProtocol(
            endpoints.clientFromString(reactor, f"tls:wrong.example:{port}:trustRoots={self.certs.caDir}:endpoint=tcp\\:127.0.0.1\\:{port}"),
            refused,
        )
        refused.transport.write(GREETING)
        yield refused.lost
        self.assertEqual(refused.received, b"")
        self.assertIn("wrong.example", str(refused.reason.value))
        error = yield self.assertFailure(self.blocking(port, ca=self.certs.ca, serverHostname="wrong.example"), ssl.SSLCertVerificationError)
        self.assertIn("wrong.example", str(error))
        yield self.assertFailure(self.blocking(port), ssl.SSLCertVerificationError)

    @inlineCallbacks
    def test_mutualTLS(self) -> None:
        """
        With clientCA=, a client must show a certificate that CA signed;
        handlers see the names it carries.  Without one, or with one from
        another CA, the handshake fails and the daemon carries on.
        """
        _, [port] = yield startDaemon(
            self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}:clientCA={self.certs.ca}",
            "--handlers", "tests.identityhandlers",
        )
        client = {"certificate": self.certs.client, "privateKey": self.certs.key(self.certs.client)}
        reply = yield self.blocking(port, ca=self.certs.ca, **client)
        self.assertEqual(reply, {"status": "OK", "tls": True, "commonName": "sensor-17", "dnsNames": ["sensor-17", "sensor-17.example"]})
        yield self.assertFailure(self.blocking(port, ca=self.certs.ca), ssl.SSLError, ConnectionError)
        stranger = {"certificate": self.certs.selfSignedClient, "privateKey": self.certs.key(self.certs.selfSignedClient)}
        yield self.assertFailure(self.blocking(port, ca=self.certs.ca, **stranger), ssl.SSLError, ConnectionError)
        reply = yield self.blocking(port, ca=self.certs.ca, **client)
        self.assertEqual(reply["commonName"], "sensor-17")

    @inlineCallbacks
    def test_handshakeNeverCompletes(self) -> None:
        """
        A client that connects to a TLS port and never completes the
        handshake is dropped after the handshake timeout.
        """
        _, [port] = yield startDaemon(
            self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}", "--handshake-timeout", "0.2",
        )
        silent = Collector(lambda data: False)
        yield endpoints.connectProtocol(endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port}"), silent)
        yield silent.lost

    @inlineCallbacks
    def test_wrongProtocolOnWrongPort(self) -> None:
        """
        Plaintext on a TLS port and TLS on a plaintext port each end in a
        clean close; the daemon goes on serving both.
        """
        logged = LogCatcher(self)
        _, [tlsPort, plainPort] = yield startDaemon(
            self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}", "--port", "tcp:0:interface=127.0.0.1",
        )
        plainOnTLS = yield exchange(f"tcp:127.0.0.1:{tlsPort}", GREETING, lambda d: False)
        self.assertNotIn(b"Hello", plainOnTLS)
        yield self.assertFailure(self.blocking(plainPort, ca=self.certs.ca), ssl.SSLError, ConnectionError)
        reply = yield exchange(f"tls:localhost:{tlsPort}:trustRoots={self.certs.caDir}", GREETING, lines(1))
        self.assertEqual(readLines(reply), [{"status": "OK", "reply": "Hello, TLS!"}])
        reply = yield exchange(f"tcp:127.0.0.1:{plainPort}", GREETING, lines(1))
        self.assertEqual(readLines(reply), [{"status": "OK", "reply": "Hello, TLS!"}])
        self.assertTrue(logged.matching("(TLS failed: "))
        self.assertTrue(logged.matching("a TLS handshake arrived on a plaintext port"))

    @inlineCallbacks
    def test_echo(self) -> None:
        """
        Echo listeners speak TLS too.
        """
        _, [_, port] = yield startDaemon(
            self, "--port", "tcp:0:interface=127.0.0.1", "--echo", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}",
        )
        echoed = yield exchange(f"tls:localhost:{port}:trustRoots={self.certs.caDir}", b"secret bytes", lambda d: len(d) >= 12)
        self.assertEqual(echoed, b"secret bytes")


class HandshakeTimerTests(SynchronousTestCase):
    def connect(self, factory: JSONServerFactory) -> tuple[object, StringTransport]:
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        directlyProvides(transport, INegotiated)
        proto.makeConnection(transport)
        return proto, transport

    def test_timeout(self) -> None:
        """
        The handshake timer runs on TLS connections only, and stops when
        the handshake completes.
        """
        clock = Clock()
        factory = JSONServerFactory(clock=clock, limits=Limits(handshakeTimeout=10, idleTimeout=0))
        slow, slowTransport = self.connect(factory)
        quick, quickTransport = self.connect(factory)
        quick.handshakeCompleted()  # type: ignore[attr-defined]
        clock.advance(10)
        self.assertTrue(slowTransport.disconnecting)
        self.assertFalse(quickTransport.disconnecting)
        self.assertEqual(clock.getDelayedCalls(), [])


class ReloadTests(SynchronousTestCase):
    def test_sighupReloads(self) -> None:
        """
        After the certificate file is replaced and the daemon gets SIGHUP,
        new connections get the new certificate, and a connection opened
        before goes on working with the old one.
        """
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        old, new, live = (os.path.join(work, n) for n in ("old.pem", "new.pem", "live.pem"))
        certs.writeCertificate(old, ["localhost", "127.0.0.1"])
        certs.writeCertificate(new, ["localhost", "127.0.0.1"])
        shutil.copy(old, live)
        process = twistd("-n", "--pidfile=", "jsonproto", "--port", f"jsonproto-tls:0:interface=127.0.0.1:privateKey={live}")
        self.addCleanup(lambda: process.poll() is None and process.kill())
        port = int(readUntil(process, rb"\(TLS\) starting on (\d+)").group(1))
        request = {"type": "SUM", "a": 1, "b": 2}
        with Client("localhost", port, tls=True, ca=old, timeout=DEADLINE) as before:
            self.assertEqual(before.request(request)["result"], 3)
            shutil.copy(new, live)
            process.send_signal(signal.SIGHUP)
            readUntil(process, rb"TLS files reloaded")
            with Client("localhost", port, tls=True, ca=new, timeout=DEADLINE) as after:
                self.assertEqual(after.request(request)["result"], 3)
            with self.assertRaises(ssl.SSLCertVerificationError):
                Client("localhost", port, tls=True, ca=old, timeout=DEADLINE)
            self.assertEqual(before.request(request)["result"], 3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        os.unlink(process.logPath)  # type: ignore[attr-defined]

    def test_badFilesKeepOld(self) -> None:
        """
        A reload from a file that is not a certificate keeps the one in
        use, and says so.
        """
        from jsonproto.server.tls import ReloadableTLS

        path = self.mktemp()
        certs.writeCertificate(path, ["localhost"])
        tls = ReloadableTLS(privateKey=path)
        before = tls._options
        with open(path, "w") as f:
            f.write("half-written")
        logged = LogCatcher(self)
        self.assertFalse(tls.reload())
        self.assertIs(tls._options, before)
        self.assertEqual(len(logged.matching("TLS files not reloaded, keeping the current ones")), 1)


class IdentityTests(SynchronousTestCase):
    def test_fromCertificate(self) -> None:
        """
        The common name and the DNS and IP names of a certificate.
        """
        from OpenSSL import crypto

        pem = certs.makeCertificate(["device-1", "device-1.example", "10.1.2.3"], usage="client").certificate
        certificate = crypto.load_certificate(crypto.FILETYPE_PEM, pem)
        self.assertEqual(
            ClientIdentity.fromCertificate(certificate),
            ClientIdentity("device-1", ("device-1", "device-1.example"), ("10.1.2.3",)),
        )
