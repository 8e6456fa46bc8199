"""
TLS on the server, over real sockets on 127.0.0.1 with generated
certificates: ssl: and jsonproto-tls: listeners, client certificates and
reloading, ALPN, the cipher profiles, session resumption, certificate
expiry, the errors for unusable files, handshake timeouts, and the wrong
protocol on the wrong port.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import endpoints, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import INegotiated
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from zope.interface import directlyProvides

from jsonproto.client import Client
from jsonproto.daemon.tap import Options
from jsonproto.limits import Limits
from jsonproto.server.factory import JSONServerFactory
from jsonproto.server.identity import ClientIdentity
from jsonproto.server.tls import ReloadableTLS
from jsonproto.server.tlsfiles import ServerFiles
from jsonproto.tools import certs
from tests.e2e import Collector, certificateOnly, exchange, lines, startDaemon, twistd
from tests.support import LogCatcher, line, readLines
from tests.test_metrics import samples
from tests.test_twistd import DEADLINE, readUntil

GREETING = line({"type": "GREETING", "name": "TLS"})
SUM = {"type": "SUM", "a": 1, "b": 2}
LOCAL = "tcp:0:interface=127.0.0.1"


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


def writeRSACertificate(directory: str) -> str:
    """
    A self-signed RSA certificate for localhost and its key, in one file:
    with an RSA key (usable for key exchange), static RSA and DHE-RSA
    suites become possible, so only the cipher list can refuse them.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    made = certs.makeCertificate(["localhost"], days=1, key=key)
    path = os.path.join(directory, "rsa.pem")
    with open(path, "wb") as f:
        f.write(made.key + made.certificate)
    return path


def clientContext(
    ca: str,
    alpn: list[str] | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    certificate: str | None = None,
) -> ssl.SSLContext:
    """
    A Python C{ssl} client context trusting C{ca}, offering what it is
    told to.
    """
    context = ssl.create_default_context(cafile=ca)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if certificate is not None:
        context.load_cert_chain(certificate, certs.keyPathFor(certificate))
    return context


def tlsRequest(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None, request: dict[str, Any] = SUM) -> dict[str, Any]:
    """
    Connect with C{context} (offering C{session} to resume), send one
    request, read its reply, close.  Blocks: run it in a thread.

    @return: The reply, and what the handshake settled.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw:
        with context.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(line(request))
            received = b""
            while not received.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
            return {
                "reply": json.loads(received),
                "alpn": s.selected_alpn_protocol(),
                "version": s.version(),
                "reused": s.session_reused,
                "session": s.session,
            }


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
    def test_oneFile(self) -> None:
        """
        A key and its certificate in one file, as privateKey= alone,
        still serve.
        """
        both = self.certs.path("both.pem")
        certs.writeCertificate(both, ["localhost"])
        _, [port] = yield startDaemon(self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:privateKey={both}")
        reply = yield deferToThread(tlsRequest, port, clientContext(both))
        self.assertEqual(reply["reply"], {"status": "OK", "result": 3})

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
            self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}", "--port", LOCAL,
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
            self, "--port", LOCAL, "--echo", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}",
        )
        echoed = yield exchange(f"tls:localhost:{port}:trustRoots={self.certs.caDir}", b"secret bytes", lambda d: len(d) >= 12)
        self.assertEqual(echoed, b"secret bytes")


class ALPNTests(TestCase):
    """
    Clients offering ALPN (every browser, Go's and Java's clients, curl)
    are served on both TLS endpoints.
    """

    def setUp(self) -> None:
        self.certs = Certificates(os.path.abspath(self.mktemp()))

    def startBoth(self, parameters: str = ""):  # type: ignore[no-untyped-def]
        return startDaemon(
            self,
            "--port", f"ssl:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}{parameters}",
            "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}{parameters}",
        )

    @inlineCallbacks
    def test_offeredButNotListed(self) -> None:
        """
        A client offering protocols the listener does not list (here, by
        default, none) is served without ALPN instead of being refused
        with an internal_error alert.
        """
        _, ports = yield self.startBoth()
        for port in ports:
            result = yield deferToThread(tlsRequest, port, clientContext(self.certs.ca, alpn=["h2", "http/1.1"]))
            self.assertEqual((result["reply"], result["alpn"]), ({"status": "OK", "result": 3}, None))

    @inlineCallbacks
    def test_selected(self) -> None:
        """
        With alpn=, the first of the listener's names the client offers is
        selected; a client offering none of them, or no ALPN at all, goes
        on without.
        """
        _, ports = yield self.startBoth(":alpn=jsonproto,json")
        for port in ports:
            for offered, selected in ((["json", "jsonproto"], "jsonproto"), (["h2", "json"], "json"), (["h2"], None), (None, None)):
                result = yield deferToThread(tlsRequest, port, clientContext(self.certs.ca, alpn=offered))
                self.assertEqual((result["reply"]["status"], result["alpn"]), ("OK", selected), offered)

    @inlineCallbacks
    def test_opensslClient(self) -> None:
        """
        openssl s_client -alpn h2, as a TLS scanner's simulated browsers
        connect, completes its handshake.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SkipTest("no openssl command")
        _, ports = yield self.startBoth(":alpn=jsonproto")
        for port, alpn, expected in ((ports[0], "h2", b"No ALPN negotiated"), (ports[1], "h2,jsonproto", b"ALPN protocol: jsonproto")):
            result = yield deferToThread(
                subprocess.run,
                [openssl, "s_client", "-alpn", alpn, "-connect", f"127.0.0.1:{port}", "-CAfile", self.certs.ca, "-verify_return_error"],
                input=b"", capture_output=True, timeout=DEADLINE,
            )
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn(expected, result.stdout)
            self.assertNotIn(b"alert", result.stderr)

    def test_badParameters(self) -> None:
        """
        An alpn= or profile= the listener cannot use is a one-line usage
        error naming what it takes.
        """
        for parameter, words in ((":alpn=a,,b", "alpn= is a comma-separated list"), (":profile=old", "profile= is intermediate or modern")):
            for kind in ("ssl", "jsonproto-tls"):
                with self.assertRaises(usage.UsageError) as raised:
                    Options().parseOptions(["--port", f"{kind}:0:{self.certs.files(self.certs.server)}{parameter}"])
                self.assertIn(words, str(raised.exception))


class ProfileTests(TestCase):
    """
    Mozilla's intermediate profile by default: TLS 1.2 only with forward
    secret AEAD suites, and TLS 1.3; profile=modern for TLS 1.3 only.
    """

    def setUp(self) -> None:
        self.certs = Certificates(os.path.abspath(self.mktemp()))

    @inlineCallbacks
    def test_intermediateRefusesWeakSuites(self) -> None:
        """
        A TLS 1.2 client offering only a static-RSA, DHE or CBC suite is
        refused, on an RSA certificate (where the server could use them)
        and on an EC one; ECDHE with AES-GCM or ChaCha20 is served.
        """
        rsaFile = writeRSACertificate(self.certs.path(""))
        _, [rsaPort, ecPort] = yield startDaemon(
            self,
            "--port", f"ssl:0:interface=127.0.0.1:privateKey={rsaFile}",
            "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.selfSigned)}",
        )
        tls12 = ssl.TLSVersion.TLSv1_2
        for port, trust, weak, strong in (
            (rsaPort, rsaFile, ["AES128-GCM-SHA256", "AES256-SHA", "DHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"],
             ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"]),
            (ecPort, self.certs.selfSigned, ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"],
             ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]),
        ):
            for cipher in weak:
                yield self.assertFailure(deferToThread(tlsRequest, port, clientContext(trust, maximum=tls12, ciphers=cipher)), ssl.SSLError)
            for cipher in strong:
                result = yield deferToThread(tlsRequest, port, clientContext(trust, maximum=tls12, ciphers=cipher))
                self.assertEqual((result["reply"]["status"], result["version"]), ("OK", "TLSv1.2"), cipher)

    @inlineCallbacks
    def test_modern(self) -> None:
        """
        profile=modern refuses TLS 1.2 clients and serves TLS 1.3 ones.
        """
        _, ports = yield startDaemon(
            self,
            "--port", f"ssl:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}:profile=modern",
            "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}:profile=modern",
        )
        for port in ports:
            yield self.assertFailure(
                deferToThread(tlsRequest, port, clientContext(self.certs.ca, maximum=ssl.TLSVersion.TLSv1_2)), ssl.SSLError
            )
            result = yield deferToThread(tlsRequest, port, clientContext(self.certs.ca))
            self.assertEqual(result["version"], "TLSv1.3")


class ResumptionTests(TestCase):
    """
    Session tickets let a client reconnect without a full handshake.
    """

    def setUp(self) -> None:
        self.certs = Certificates(os.path.abspath(self.mktemp()))

    @inlineCallbacks
    def test_secondConnectionResumes(self) -> None:
        """
        A client offering the session of its last connection resumes it,
        with TLS 1.3 and with TLS 1.2, on both endpoints.
        """
        _, ports = yield startDaemon(
            self,
            "--port", f"ssl:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}",
            "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}",
        )
        for port in ports:
            for maximum in (None, ssl.TLSVersion.TLSv1_2):
                context = clientContext(self.certs.ca, maximum=maximum)
                first = yield deferToThread(tlsRequest, port, context)
                second = yield deferToThread(tlsRequest, port, context, first["session"])
                self.assertEqual((first["reused"], second["reused"]), (False, True), (port, maximum))
                self.assertEqual(second["reply"], {"status": "OK", "result": 3})

    @inlineCallbacks
    def test_resumedClientKeepsItsIdentity(self) -> None:
        """
        With clientCA=, a resumed session still tells handlers who the
        client proved to be.
        """
        _, [port] = yield startDaemon(
            self, "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}:clientCA={self.certs.ca}",
            "--handlers", "tests.identityhandlers",
        )
        context = clientContext(self.certs.ca, certificate=self.certs.client)
        whoami = {"type": "WHOAMI"}
        first = yield deferToThread(tlsRequest, port, context, None, whoami)
        second = yield deferToThread(tlsRequest, port, context, first["session"], whoami)
        self.assertTrue(second["reused"])
        self.assertEqual(second["reply"]["commonName"], "sensor-17")

    @inlineCallbacks
    def test_reloadRetiresTickets(self) -> None:
        """
        Reloading the files (SIGHUP) makes new ticket keys, on ssl: and
        jsonproto-tls: alike: a session from before is not resumed, one
        from after is.
        """
        service, ports = yield startDaemon(
            self,
            "--port", f"ssl:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}",
            "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}",
        )
        context = clientContext(self.certs.ca)
        before = []
        for port in ports:
            before.append((yield deferToThread(tlsRequest, port, context)))
        self.assertEqual(service.reloadCertificates(), [True, True])
        for port, old in zip(ports, before):
            retired = yield deferToThread(tlsRequest, port, context, old["session"])
            self.assertFalse(retired["reused"])
            resumed = yield deferToThread(tlsRequest, port, context, retired["session"])
            self.assertTrue(resumed["reused"])


class ExpiryTests(TestCase):
    """
    A certificate about to expire is said at start and exported as a
    metric, before clients start refusing it.
    """

    def setUp(self) -> None:
        self.certs = Certificates(os.path.abspath(self.mktemp()))

    def test_warning(self) -> None:
        """
        One warning naming the file and the date when the certificate
        expires within 14 days or has expired; none before.
        """
        short = self.certs.write("short", ["localhost"], days=10)
        clock = Clock()
        tls = ReloadableTLS(ServerFiles(self.certs.key(short), short), clock=clock)
        expiry = datetime.datetime.fromtimestamp(tls.notAfter, datetime.timezone.utc).strftime("%Y-%m-%d")
        logged = LogCatcher(self)
        clock.advance(tls.notAfter - 15 * 86400)
        tls.warnIfExpiring()
        self.assertEqual(logged.events, [])
        clock.advance(86400)
        tls.warnIfExpiring()
        [soon] = logged.matching(f"the TLS certificate in {short} expires on {expiry}")
        self.assertEqual(soon["log_level"].name, "warn")
        self.assertIn("in 14.0 days", soon["log_format"].format(**soon))
        clock.advance(15 * 86400)
        tls.warnIfExpiring()
        self.assertEqual(len(logged.matching(f"the TLS certificate in {short} expired on {expiry}")), 1)

    @inlineCallbacks
    def test_warnedAtStart(self) -> None:
        """
        A daemon starting with a certificate that expires in 3 days logs
        it once; one with 30 days left says nothing.
        """
        logged = LogCatcher(self)
        short = self.certs.write("short", ["localhost"], days=3)
        yield startDaemon(
            self,
            "--port", f"ssl:0:interface=127.0.0.1:{self.certs.files(short)}",
            "--port", f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(self.certs.server)}",
        )
        self.assertEqual(len(logged.matching("the TLS certificate in")), 1)
        self.assertEqual(len(logged.matching(f"the TLS certificate in {short} expires on")), 1)

    @inlineCallbacks
    def test_metric(self) -> None:
        """
        /metrics has each TLS listener's certificate expiry, in seconds
        since the epoch, labelled with the listener; after a reload, the
        new certificate's.
        """
        live = self.certs.path("live.pem")
        shutil.copy(self.certs.server, live)
        shutil.copy(self.certs.key(self.certs.server), self.certs.key(live))
        sslListener = f"ssl:0:interface=127.0.0.1:{self.certs.files(self.certs.selfSigned)}"
        tlsListener = f"jsonproto-tls:0:interface=127.0.0.1:{self.certs.files(live)}"
        service, [_, _, metricsPort] = yield startDaemon(self, "--port", sslListener, "--port", tlsListener, "--metrics", LOCAL)

        def notAfter(path: str) -> float:
            with open(path, "rb") as f:
                return x509.load_pem_x509_certificate(f.read()).not_valid_after_utc.timestamp()

        @inlineCallbacks
        def scrape():  # type: ignore[no-untyped-def]
            response = yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{metricsPort}/metrics".encode())
            body = yield readBody(response)
            return {
                dict(labels)["listener"]: value
                for (name, labels), value in samples(body.decode()).items()
                if name == "jsonproto_tls_certificate_not_after_timestamp_seconds"
            }

        found = yield scrape()
        self.assertEqual(found, {sslListener: notAfter(self.certs.selfSigned), tlsListener: notAfter(live)})
        self.certs.write("live", ["localhost"], days=5)
        service.reloadCertificates()
        found = yield scrape()
        self.assertEqual(found[tlsListener], notAfter(live))
        self.assertLess(found[tlsListener], notAfter(self.certs.server))


class UnusableFilesTests(SynchronousTestCase):
    """
    A key or certificate file the daemon cannot serve from is a one-line
    usage error, on ssl: and jsonproto-tls: alike, saying what to do.
    """

    def setUp(self) -> None:
        self.certs = Certificates(os.path.abspath(self.mktemp()))

    def assertUsageError(self, parameters: str, *words: str) -> None:
        for kind in ("ssl", "jsonproto-tls"):
            with self.assertRaises(usage.UsageError) as raised:
                Options().parseOptions(["--port", f"{kind}:3443{parameters}"])
            message = str(raised.exception)
            self.assertNotIn("\n", message)
            self.assertNotIn("routines", message)
            for text in words:
                self.assertIn(text, message)

    def test_certificateAsKey(self) -> None:
        """
        privateKey= naming a certificate without its key.
        """
        self.assertUsageError(f":privateKey={self.certs.server}", f"privateKey= {self.certs.server} holds a certificate but no private key", "certKey=")

    def test_notPEM(self) -> None:
        """
        privateKey= naming a DER file.
        """
        der = self.certs.path("key.der")
        with open(self.certs.key(self.certs.server), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        with open(der, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.assertUsageError(f":privateKey={der}:certKey={self.certs.server}", f"privateKey= {der} is not a PEM file", "openssl")

    def test_encryptedKey(self) -> None:
        """
        A key under a passphrase, which a daemon cannot type.
        """
        encrypted = self.certs.path("encrypted.key")
        with open(self.certs.key(self.certs.server), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        with open(encrypted, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret")))
        self.assertUsageError(f":privateKey={encrypted}:certKey={self.certs.server}", "encrypted with a passphrase", "openssl pkey")

    def test_mismatch(self) -> None:
        """
        A key and a certificate that do not belong together.
        """
        self.assertUsageError(
            f":privateKey={self.certs.key(self.certs.selfSigned)}:certKey={self.certs.server}",
            f"the private key in {self.certs.key(self.certs.selfSigned)} does not belong to the certificate in {self.certs.server}",
        )

    def test_noCertificate(self) -> None:
        """
        privateKey= alone naming a key without its certificate.
        """
        self.assertUsageError(f":privateKey={self.certs.key(self.certs.server)}", "holds no certificate: name the certificate's file with certKey=")

    def test_missingFile(self) -> None:
        self.assertUsageError(f":privateKey={self.certs.path('absent.key')}", f"privateKey= {self.certs.path('absent.key')}: No such file or directory")

    def test_sslDefault(self) -> None:
        """
        ssl:PORT without privateKey= says that it looked for server.pem
        because that is the default.
        """
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(empty)
        with self.assertRaises(usage.UsageError) as raised:
            Options().parseOptions(["--port", "ssl:3443"])
        self.assertIn(f"ssl: without privateKey= reads server.pem (the default) from the current directory {empty}", str(raised.exception))
        self.assertIn("name the key's file with privateKey=", str(raised.exception))
        shutil.copy(self.certs.server, "server.pem")
        with self.assertRaises(usage.UsageError) as raised:
            Options().parseOptions(["--port", "ssl:3443"])
        self.assertIn("server.pem holds a certificate but no private key", str(raised.exception))
        self.assertIn("(ssl: reads server.pem, the default, when no privateKey= names a file)", str(raised.exception))

    def test_twistedOnlyParameters(self) -> None:
        """
        ssl:'s sslmethod= and dhParameters= say what to use instead.
        """
        files = self.certs.files(self.certs.server)
        self.assertUsageError(f":{files}:sslmethod=TLSv1_2_METHOD", "sslmethod= is not taken", "profile=")
        self.assertUsageError(f":{files}:dhParameters=dh.pem", "dhParameters= is not taken")


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
        After the certificate files are replaced and the daemon gets
        SIGHUP, new connections get the new certificate, and a connection
        opened before goes on working with the old one; on ssl: and
        jsonproto-tls: alike.  A session from before does not resume after.
        """
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        old, new, live = (os.path.join(work, n) for n in ("old.pem", "new.pem", "live.pem"))
        for path in (old, new):
            certs.writeCertificate(path, ["localhost", "127.0.0.1"], keyPath=certs.keyPathFor(path))
        shutil.copy(old, live)
        shutil.copy(certs.keyPathFor(old), certs.keyPathFor(live))
        files = f"privateKey={certs.keyPathFor(live)}:certKey={live}"
        process = twistd(
            "-n", "--pidfile=", "jsonproto",
            "--port", f"jsonproto-tls:0:interface=127.0.0.1:{files}", "--port", f"ssl:0:interface=127.0.0.1:{files}",
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        ports = [int(readUntil(process, rb"\(TLS\) starting on (\d+)").group(1)) for _ in range(2)]
        both = os.path.join(work, "both.pem")
        with open(both, "wb") as bundle:
            for path in (old, new):
                with open(path, "rb") as f:
                    bundle.write(f.read())
        trustingBoth = clientContext(both)
        oldSessions = [tlsRequest(port, trustingBoth)["session"] for port in ports]
        openBefore = [Client("localhost", port, tls=True, ca=old, timeout=DEADLINE) for port in ports]
        for before in openBefore:
            self.assertEqual(before.request(SUM)["result"], 3)
        shutil.copy(new, live)
        shutil.copy(certs.keyPathFor(new), certs.keyPathFor(live))
        process.send_signal(signal.SIGHUP)
        for _ in ports:
            readUntil(process, rb"TLS files reloaded")
        for port, before, session in zip(ports, openBefore, oldSessions):
            with Client("localhost", port, tls=True, ca=new, timeout=DEADLINE) as after:
                self.assertEqual(after.request(SUM)["result"], 3)
            with self.assertRaises(ssl.SSLCertVerificationError):
                Client("localhost", port, tls=True, ca=old, timeout=DEADLINE)
            self.assertFalse(tlsRequest(port, trustingBoth, session)["reused"])
            self.assertEqual(before.request(SUM)["result"], 3)
            before.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        os.unlink(process.logPath)  # type: ignore[attr-defined]

    def test_badFilesKeepOld(self) -> None:
        """
        A reload from a file that is not a certificate keeps the one in
        use, and says so.
        """
        path = self.mktemp()
        certs.writeCertificate(path, ["localhost"])
        tls = ReloadableTLS(ServerFiles(path))
        before = tls.context
        with open(path, "w") as f:
            f.write("half-written")
        logged = LogCatcher(self)
        self.assertFalse(tls.reload())
        self.assertIs(tls.context, before)
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
