"""
jsonproto cert: the certificates it writes verify in strict clients (as
Python 3.13's ssl is), keys never share a file with the certificates
handed to clients, each certificate is for a server or a client, and bad
requests are one-line usage errors.
"""

from __future__ import annotations

import io
import os
import socket
import ssl
import stat
import threading
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.trial.unittest import SynchronousTestCase

from jsonproto.tools import certs, cli


def cert(*argv: str) -> tuple[int, str]:
    """
    Run C{jsonproto cert}; its status and what it wrote to standard error.
    """
    err = io.StringIO()
    return cli.main(["cert", *argv], err=err), err.getvalue()


def load(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def strictClient(ca: str, certificate: str | None = None) -> ssl.SSLContext:
    """
    A client context verifying as Python 3.13's default one does
    (X.509 strict), on any Python.
    """
    context = ssl.create_default_context(cafile=ca)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if certificate is not None:
        context.load_cert_chain(certificate, certs.keyPathFor(certificate))
    return context


def handshake(server: str, client: ssl.SSLContext, clientCA: str | None = None) -> str:
    """
    A TLS handshake between a Python ssl server serving C{server} (and
    requiring a client certificate from C{clientCA}, strictly verified)
    and C{client}, over 127.0.0.1.

    @return: What the server saw go wrong, or C{""}.
    @raise ssl.SSLError: What the client saw go wrong.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server, certs.keyPathFor(server))
    if clientCA is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.load_verify_locations(clientCA)
    listener = socket.create_server(("127.0.0.1", 0))
    problems: list[str] = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as e:
            problems.append(str(e))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"x")
                s.recv(1)
    finally:
        thread.join(10)
        listener.close()
    return "".join(problems)


class Workspace(SynchronousTestCase):
    def setUp(self) -> None:
        self.work = os.path.abspath(self.mktemp())
        os.makedirs(self.work)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.work)


class StrictVerificationTests(Workspace):
    def test_keyIdentifiers(self) -> None:
        """
        Every certificate has a Subject Key Identifier, and an Authority
        Key Identifier that is its signer's: strict verifiers refuse a
        chain without them ("Missing Authority Key Identifier").
        """
        self.assertEqual(cert("Test CA", "--make-ca", "-o", "ca.pem")[0], 0)
        self.assertEqual(cert("localhost", "--ca", "ca.pem", "-o", "server.pem")[0], 0)
        self.assertEqual(cert("localhost", "-o", "self.pem")[0], 0)
        ca, server, selfSigned = load("ca.pem"), load("server.pem"), load("self.pem")
        for certificate, signer in ((ca, ca), (server, ca), (selfSigned, selfSigned)):
            authority = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            signerKey = signer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            self.assertEqual(authority.key_identifier, signerKey.digest)

    def test_mutualTLSVerifiesStrictly(self) -> None:
        """
        The mutual TLS walkthrough's certificates verify under X.509
        strict checking, both ways: the server's against the CA, the
        client's against the CA.
        """
        cert("My devices CA", "--make-ca", "-o", "ca.pem")
        cert("sensor-17", "--ca", "ca.pem", "--usage", "client", "-o", "sensor-17.pem")
        cert("localhost", "127.0.0.1", "--ca", "ca.pem", "-o", "server.pem")
        self.assertEqual(handshake("server.pem", strictClient("ca.pem", "sensor-17.pem"), clientCA="ca.pem"), "")

    def test_selfSignedVerifiesStrictly(self) -> None:
        """
        The development recipe's self-signed certificate, given to the
        client as its own trust root, verifies strictly.
        """
        cert("localhost", "127.0.0.1", "-o", "server.pem")
        self.assertEqual(handshake("server.pem", strictClient("server.pem")), "")


class SeparateKeyTests(Workspace):
    def test_keysApart(self) -> None:
        """
        The certificate file holds no private key and anyone may read it;
        the key is in its own file that only its owner can read.
        """
        status, said = cert("My devices CA", "--make-ca", "-o", "ca.pem")
        self.assertEqual(status, 0)
        self.assertIn("to ca.pem, and its private key to ca.key", said)
        os.makedirs("secret")
        self.assertEqual(cert("localhost", "--ca", "ca.pem", "-o", "server.crt", "--key-output", "secret/server-key.pem")[0], 0)
        for certificate, key in (("ca.pem", "ca.key"), ("server.crt", "secret/server-key.pem")):
            with open(certificate, "rb") as f:
                self.assertNotIn(b"PRIVATE KEY", f.read())
            with open(key, "rb") as f:
                self.assertIn(b"-----BEGIN PRIVATE KEY-----", f.read())
            self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
            self.assertEqual(stat.S_IMODE(os.stat(certificate).st_mode), 0o644)

    def test_rewrittenKeyIsPrivate(self) -> None:
        """
        Writing over an existing, world-readable file leaves the key
        readable by its owner only.
        """
        with open("server.key", "w") as f:
            f.write("old")
        os.chmod("server.key", 0o644)
        cert("localhost", "-o", "server.pem")
        self.assertEqual(stat.S_IMODE(os.stat("server.key").st_mode), 0o600)

    def test_caKeyFound(self) -> None:
        """
        --ca finds the CA's key beside its certificate, or where --ca-key
        says, or in the certificate's file (as older versions wrote it).
        """
        cert("CA", "--make-ca", "-o", "ca.pem", "--key-output", "elsewhere.key")
        self.assertEqual(cert("a", "--ca", "ca.pem", "--ca-key", "elsewhere.key", "-o", "a.pem")[0], 0)
        status, said = cert("b", "--ca", "ca.pem", "-o", "b.pem")
        self.assertEqual((status, said), (2, "jsonproto: --ca ca.pem: its key is neither in that file nor in ca.key; name the CA's key file with --ca-key\n"))
        certs.writeCertificate("old-ca.pem", ["CA"], isCA=True)
        self.assertEqual(cert("c", "--ca", "old-ca.pem", "-o", "c.pem")[0], 0)
        self.assertEqual(load("c.pem").issuer, load("old-ca.pem").subject)


class UsageTests(Workspace):
    def usages(self, path: str) -> list[Any]:
        return list(load(path).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    def test_oneUsageEach(self) -> None:
        """
        A server certificate is for server authentication only, a client
        certificate for client authentication only; a CA has none.
        """
        cert("CA", "--make-ca", "-o", "ca.pem")
        cert("localhost", "--ca", "ca.pem", "-o", "server.pem")
        cert("sensor-17", "--ca", "ca.pem", "--usage", "client", "-o", "client.pem")
        self.assertEqual(self.usages("server.pem"), [ExtendedKeyUsageOID.SERVER_AUTH])
        self.assertEqual(self.usages("client.pem"), [ExtendedKeyUsageOID.CLIENT_AUTH])
        with self.assertRaises(x509.ExtensionNotFound):
            self.usages("ca.pem")

    def test_clientCertificateCannotServe(self) -> None:
        """
        A client certificate put on a server is refused by clients, so a
        stolen device certificate cannot impersonate the server.
        """
        cert("CA", "--make-ca", "-o", "ca.pem")
        cert("localhost", "--ca", "ca.pem", "--usage", "client", "-o", "device.pem")
        with self.assertRaises(ssl.SSLCertVerificationError) as raised:
            handshake("device.pem", strictClient("ca.pem"))
        self.assertIn("unsuitable certificate purpose", str(raised.exception))


class UsageErrorTests(Workspace):
    def assertUsageError(self, argv: list[str], message: str) -> None:
        status, said = cert(*argv, "-o", "out.pem")
        self.assertEqual((status, said), (2, f"jsonproto: {message}\n"))
        self.assertFalse(os.path.exists("out.pem"))
        self.assertFalse(os.path.exists("out.key"))

    def test_days(self) -> None:
        """
        --days 0 or less would write a certificate already expired.
        """
        self.assertUsageError(["localhost", "--days", "0"], "--days must be from 1 to 36500, not 0")
        self.assertUsageError(["localhost", "--days", "-5"], "--days must be from 1 to 36500, not -5")

    def test_notACA(self) -> None:
        """
        --ca naming a certificate that is not a CA.
        """
        cert("localhost", "-o", "server.pem")
        self.assertUsageError(
            ["client", "--ca", "server.pem"],
            "--ca server.pem: is not a certificate authority; make one with jsonproto cert NAME --make-ca -o ca.pem",
        )

    def test_missingCA(self) -> None:
        """
        A --ca file that does not exist is named as such, not as a failure
        to write.
        """
        self.assertUsageError(["client", "--ca", "absent.pem"], "--ca absent.pem: no such file")

    def test_badNames(self) -> None:
        """
        Names that are neither host names nor IP addresses.
        """
        for name in ("999.1.1.1", "bad_name!@#", "a..b", "dash-.example", "x" * 64 + ".example"):
            self.assertUsageError(["localhost", name], f"{name!r} is neither a host name (letters, digits, hyphens and dots) nor an IP address")

    def test_goodNames(self) -> None:
        """
        Host names, wildcards, IPv4 and IPv6 addresses are taken, each in
        its kind of subject alternative name.
        """
        self.assertEqual(cert("localhost", "*.example.com", "db-1.internal", "127.0.0.1", "::1", "-o", "ok.pem")[0], 0)
        names = load("ok.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost", "*.example.com", "db-1.internal"])
        self.assertEqual([str(a) for a in names.get_values_for_type(x509.IPAddress)], ["127.0.0.1", "::1"])

    def test_caOptions(self) -> None:
        """
        Options that make no sense for a CA.
        """
        self.assertUsageError(["CA", "--make-ca", "--usage", "client"], "--usage is for the certificates a CA signs, not for the CA (--make-ca)")
        self.assertUsageError(["My CA", "Other", "--make-ca"], "a certificate authority has one name of 1 to 64 characters")
        cert("CA", "--make-ca", "-o", "ca.pem")
        self.assertUsageError(["Sub CA", "--make-ca", "--ca", "ca.pem"], "--make-ca makes a root CA, which nothing else signs: leave out --ca")
