"""
TLS for the server: the C{jsonproto-tls:} endpoint, with client
certificates (mutual TLS), certificates that reload without a restart,
ALPN, a cipher profile, and session tickets.

Twisted's C{ssl:} server endpoint string can neither require client
certificates nor reload its files, and its ALPN callback refuses every
client that offers ALPN (see L{jsonproto.server.tlscontext}).  The daemon
therefore serves C{ssl:} with this same code (L{serverFromString}), with
C{ssl:}'s default of C{privateKey=server.pem}.  C{jsonproto-tls:} takes
C{ssl:}'s parameters and adds its own::

    jsonproto-tls:3443:privateKey=server.key:certKey=server.pem   key and certificate in two files
    jsonproto-tls:3443:privateKey=both.pem                        key and certificate in one file
    jsonproto-tls:3443:privateKey=server.key:certKey=server.pem:extraCertChain=chain.pem
    jsonproto-tls:3443:privateKey=server.key:certKey=server.pem:clientCA=ca.pem   require client certificates signed by ca.pem
    jsonproto-tls:3443:privateKey=server.key:certKey=server.pem:alpn=jsonproto,json
    jsonproto-tls:3443:privateKey=server.key:certKey=server.pem:profile=modern   TLS 1.3 only
    jsonproto-tls:3443:privateKey=server.key:certKey=server.pem:proxy=yes        behind a load balancer's PROXY protocol

With C{proxy=yes} every connection must start with a PROXY protocol header
(v1 or v2, as HAProxy's C{send-proxy} sends it) before its TLS handshake,
and the daemon sees, logs and limits the client address the header gives.
Twisted's C{haproxy:ssl:...} looks for the header inside TLS, where no load
balancer puts it.

Every file is read again on L{ReloadableTLS.reload} (the daemon calls it
on SIGHUP): new connections get the new certificate and new session ticket
keys, connections already open keep theirs.
"""

from __future__ import annotations

import datetime
import os
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
from zope.interface import implementer

from jsonproto.server.tlscontext import TLSSettings, serverContext
from jsonproto.server.tlsfiles import ServerFiles, TLSFileError, readCredentials

log = Logger()

EXPIRY_WARNING_DAYS = 14
"""A certificate expiring within this many days is warned about at start and reload."""

SSL_DEFAULT_KEY = "server.pem"
"""Where C{ssl:} reads its key and certificate without C{privateKey=}, as in Twisted."""


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """
    Server TLS settings read from files, which L{reload} reads again.

    @ivar files: Where the key and certificates are.
    @ivar settings: Profile and ALPN.
    @ivar context: The C{OpenSSL.SSL.Context} new connections get.
    @ivar notAfter: When the certificate in use expires (seconds since the
        epoch).
    """

    def __init__(self, files: ServerFiles, settings: TLSSettings = TLSSettings(), clock: Any = None) -> None:
        self.files = files
        self.settings = settings
        self.clock = clock
        self._load()

    def _load(self) -> None:
        from OpenSSL import SSL

        credentials = readCredentials(self.files)
        try:
            self.context = serverContext(credentials, self.settings)
        except SSL.Error as e:
            reasons = "; ".join(str(error[-1]) for error in e.args[0]) if e.args and isinstance(e.args[0], list) else str(e)
            raise TLSFileError(
                f"OpenSSL refuses the key or certificate in {', '.join(self.files.paths())}: {reasons}"
            ) from None
        self.notAfter = credentials.notAfter

    def reload(self) -> bool:
        """
        Read the files again.  New connections use what they now hold, with
        new session ticket keys; connections already open are untouched.
        If the files are unusable (half-written, mismatched), the settings
        in use stay and the error is logged.

        @return: Whether the new files were taken.
        """
        try:
            self._load()
        except TLSFileError as e:
            log.error("TLS files not reloaded, keeping the current ones: {error}", error=e)
            return False
        log.info("TLS files reloaded from {files}", files=", ".join(self.files.paths()))
        self.warnIfExpiring()
        return True

    def warnIfExpiring(self) -> None:
        """
        Log one warning if the certificate has expired or expires within
        L{EXPIRY_WARNING_DAYS}: clients will refuse it, and nothing else
        would tell the operator before they do.
        """
        clock = self.clock
        if clock is None:
            from twisted.internet import reactor as clock
        now = clock.seconds()
        left = self.notAfter - now
        if left > EXPIRY_WARNING_DAYS * 86400:
            return
        date = datetime.datetime.fromtimestamp(self.notAfter, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        when = f"expired on {date}" if left <= 0 else f"expires on {date}, in {left / 86400:.1f} days"
        log.warn(
            "the TLS certificate in {file} {when}: replace it, then send SIGHUP",
            file=self.files.certificatePath,
            when=when,
        )

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL import SSL

        return SSL.Connection(self.context, None)


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    A TCP endpoint whose connections speak TLS with L{ReloadableTLS}
    settings.
    """

    def __init__(self, tcp: Any, tls: ReloadableTLS) -> None:
        self.tcp = tcp
        self.tls = tls

    @property
    def certificateNotAfter(self) -> float:
        """
        When the certificate served now expires (seconds since the epoch).
        """
        return self.tls.notAfter

    def listen(self, factory: Any) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        self.tls.warnIfExpiring()
        return self.tcp.listen(TLSMemoryBIOFactory(self.tls, False, factory))

    def reload(self) -> bool:
        """
        Read the TLS files again (see L{ReloadableTLS.reload}).
        """
        return self.tls.reload()


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"the port is a number from 0 to 65535, not {text!r}")
    return int(text)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class TLSServerParser:
    """
    Parses C{jsonproto-tls:PORT:privateKey=...[:certKey=...]
    [:extraCertChain=...][:clientCA=...][:alpn=...][:profile=...]
    [:interface=...][:backlog=...][:proxy=yes]}.
    """

    prefix = "jsonproto-tls"

    def parseStreamServer(  # type: ignore[override]  # Twisted's parsers take their parameters by name too
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
        alpn: str = "",
        profile: str = "intermediate",
        sslmethod: str | None = None,
        dhParameters: str | None = None,
    ) -> TLSServerEndpoint:
        if privateKey is None:
            raise ValueError("it needs privateKey=FILE (the key, and the certificate unless certKey= names it)")
        if sslmethod is not None:
            raise ValueError(
                "sslmethod= is not taken: the TLS versions follow profile= "
                "(intermediate: TLS 1.2 and 1.3, the default; modern: TLS 1.3 only)"
            )
        if dhParameters is not None:
            raise ValueError("dhParameters= is not taken: no profile offers DHE suites (ECDHE only); remove it")
        if proxy not in ("yes", "no"):
            raise ValueError(f"proxy= is yes or no, not {proxy!r}")
        if not backlog.isdigit():
            raise ValueError(f"backlog= is a whole number, not {backlog!r}")
        tls = ReloadableTLS(
            ServerFiles(privateKey, certKey, extraCertChain, clientCA), TLSSettings.parse(profile, alpn), reactor
        )
        endpointType = endpoints.TCP6ServerEndpoint if ":" in interface else endpoints.TCP4ServerEndpoint
        tcp: IStreamServerEndpoint = endpointType(reactor, _port(port), backlog=int(backlog), interface=interface)
        if proxy == "yes":
            # The PROXY header comes first, in the clear, then TLS.
            from jsonproto.compat import proxyEndpoint

            tcp = proxyEndpoint(tcp)
        return TLSServerEndpoint(tcp, tls)


def serverFromString(reactor: Any, description: str) -> Any:
    """
    Twisted's C{endpoints.serverFromString}, except that C{ssl:} is served
    by C{jsonproto-tls:}, which takes all its parameters (with the same
    default, C{privateKey=server.pem}) and serves ALPN clients, a cipher
    profile and session tickets, and reloads on SIGHUP.

    @raise ValueError: For C{ssl:} without C{privateKey=} when there is no
        C{server.pem} to default to, and whatever the parser raises.
    """
    kind, _, parameters = description.partition(":")
    if kind != "ssl":
        return endpoints.serverFromString(reactor, description)
    if not re.search(r"(?:^|:)privateKey=", parameters):
        if not os.path.exists(SSL_DEFAULT_KEY):
            raise ValueError(
                f"ssl: without privateKey= reads {SSL_DEFAULT_KEY} (the default) from the current directory "
                f"{os.getcwd()}, and there is none: name the key's file with privateKey= "
                "(and the certificate's with certKey=)"
            )
        try:
            return endpoints.serverFromString(reactor, f"{TLSServerParser.prefix}:{parameters}:privateKey={SSL_DEFAULT_KEY}")
        except TLSFileError as e:
            raise TLSFileError(f"{e} (ssl: reads {SSL_DEFAULT_KEY}, the default, when no privateKey= names a file)") from None
    return endpoints.serverFromString(reactor, f"{TLSServerParser.prefix}:{parameters}")
