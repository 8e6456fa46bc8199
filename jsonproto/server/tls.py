"""
TLS for the server: the C{jsonproto-tls:} endpoint, with client
certificates (mutual TLS) and certificates that reload without a restart.

Twisted's C{ssl:} server endpoint string can neither require client
certificates nor reload its files (and its C{tls:} server string, which
reloads a directory of PEM files, has no client certificates either).
C{jsonproto-tls:} takes C{ssl:}'s parameters and adds C{clientCA=}::

    jsonproto-tls:3443:privateKey=key.pem                   key and certificate in one file
    jsonproto-tls:3443:privateKey=key.pem:certKey=cert.pem:extraCertChain=chain.pem
    jsonproto-tls:3443:privateKey=key.pem:clientCA=ca.pem   require client certificates signed by ca.pem
    jsonproto-tls:3443:interface=127.0.0.1:privateKey=key.pem
    jsonproto-tls:3443:privateKey=key.pem:proxy=yes          behind a load balancer's PROXY protocol

With C{proxy=yes} every connection must start with a PROXY protocol header
(v1 or v2, as HAProxy's C{send-proxy} sends it) before its TLS handshake,
and the daemon sees, logs and limits the client address the header gives.
Twisted's C{haproxy:ssl:...} looks for the header inside TLS, where no load
balancer puts it.

TLS 1.2 is the minimum.  Every file is read again on L{ReloadableTLS.reload}
(the daemon calls it on SIGHUP): new connections get the new certificate,
connections already open keep theirs.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.filepath import FilePath
from zope.interface import implementer

log = Logger()

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


def _certificates(pem: bytes) -> list[Any]:
    from twisted.internet import ssl

    return [ssl.Certificate.loadPEM(block) for block in _PEM_CERTIFICATE.findall(pem)]


def loadServerOptions(
    privateKey: str,
    certKey: str | None = None,
    extraCertChain: str | None = None,
    clientCA: str | None = None,
) -> Any:
    """
    Read the key, certificate, chain and client CA files into Twisted's
    L{CertificateOptions}, TLS 1.2 at least.

    @raise OSError: A file cannot be read.
    @raise ValueError: A file does not hold what it should.
    """
    from OpenSSL import SSL, crypto
    from twisted.internet import ssl

    keyPEM = FilePath(privateKey).getContent()
    certPEM = FilePath(certKey).getContent() if certKey else keyPEM
    try:
        private = ssl.PrivateCertificate.loadPEM(certPEM + b"\n" + keyPEM)
    except (SSL.Error, crypto.Error, ValueError, IndexError) as e:
        raise ValueError(f"no private key and certificate in {privateKey!r}{f' and {certKey!r}' if certKey else ''}: {e}") from None
    chain = _certificates(FilePath(extraCertChain).getContent()) if extraCertChain else []
    if extraCertChain and not chain:
        raise ValueError(f"no certificate in extraCertChain file {extraCertChain!r}")
    kwargs: dict[str, Any] = {}
    if clientCA:
        authorities = _certificates(FilePath(clientCA).getContent())
        if not authorities:
            raise ValueError(f"no certificate in clientCA file {clientCA!r}")
        kwargs = {
            "verify": True,
            "caCerts": [c.original for c in authorities],
            "requireCertificate": True,
        }
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=[c.original for c in chain],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        **kwargs,
    )


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """
    Server TLS settings read from files, which L{reload} reads again.

    @ivar files: The file paths, by the C{tls:} parameter names.
    """

    def __init__(self, **files: str | None) -> None:
        self.files = files
        self._options = loadServerOptions(**files)

    def reload(self) -> bool:
        """
        Read the files again.  New connections use what they now hold;
        connections already open are untouched.  If the files are unusable
        (half-written, mismatched), the settings in use stay and the error
        is logged.

        @return: Whether the new files were taken.
        """
        try:
            self._options = loadServerOptions(**self.files)
        except (OSError, ValueError) as e:
            log.error("TLS files not reloaded, keeping the current ones: {error}", error=e)
            return False
        log.info("TLS files reloaded from {files}", files=", ".join(f for f in self.files.values() if f))
        return True

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL import SSL

        return SSL.Connection(self._options.getContext(), None)


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    A TCP endpoint whose connections speak TLS with L{ReloadableTLS}
    settings.
    """

    def __init__(self, tcp: Any, tls: ReloadableTLS) -> None:
        self.tcp = tcp
        self.tls = tls

    def listen(self, factory: Any) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.tcp.listen(TLSMemoryBIOFactory(self.tls, False, factory))

    def reload(self) -> bool:
        """
        Read the TLS files again (see L{ReloadableTLS.reload}).
        """
        return self.tls.reload()


@implementer(IPlugin, IStreamServerEndpointStringParser)
class TLSServerParser:
    """
    Parses C{jsonproto-tls:PORT:privateKey=...[:certKey=...]
    [:extraCertChain=...][:clientCA=...][:interface=...][:backlog=...]
    [:proxy=yes]}.
    """

    prefix = "jsonproto-tls"

    def parseStreamServer(
        self,
        reactor: Any,
        port: str,
        privateKey: str | None = None,
        certKey: str | None = None,
        extraCertChain: str | None = None,
        clientCA: str | None = None,
        interface: str = "",
        backlog: str = "50",
        proxy: str = "no",
    ) -> TLSServerEndpoint:
        if privateKey is None:
            raise ValueError("jsonproto-tls: needs privateKey=FILE (the key, and the certificate unless certKey= names it)")
        tls = ReloadableTLS(
            privateKey=privateKey, certKey=certKey, extraCertChain=extraCertChain, clientCA=clientCA
        )
        endpointType = endpoints.TCP6ServerEndpoint if ":" in interface else endpoints.TCP4ServerEndpoint
        tcp = endpointType(reactor, int(port), backlog=int(backlog), interface=interface)
        if proxy not in ("yes", "no"):
            raise ValueError(f"jsonproto-tls: proxy= is yes or no, not {proxy!r}")
        if proxy == "yes":
            # The PROXY header comes first, in the clear, then TLS.
            from twisted.protocols.haproxy import proxyEndpoint

            tcp = proxyEndpoint(tcp)
        return TLSServerEndpoint(tcp, tls)
