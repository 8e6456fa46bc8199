"""
The OpenSSL context of a TLS listener: which protocol versions and cipher
suites it speaks (a profile), which application protocols it selects by
ALPN, and session tickets, so that a client reconnecting skips the full
handshake.

Built here with pyOpenSSL rather than by Twisted's C{CertificateOptions},
whose ALPN callback answers a client offering protocols it does not list
with an empty choice, which OpenSSL turns into a fatal C{internal_error}
alert: every browser, Go or Java client offering C{h2} was refused.  Here
a client offering none of the listener's protocols goes on without ALPN,
as RFC 7301 allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from jsonproto.server.tlsfiles import ServerCredentials

INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
"""
The TLS 1.2 cipher suites of Mozilla's "intermediate" profile without its
DHE ones: forward secret (ECDHE) and authenticated encryption (AES-GCM,
ChaCha20-Poly1305) only, so no static RSA key exchange, no CBC (LUCKY13)
and no finite-field Diffie-Hellman.  TLS 1.3 uses OpenSSL's suites, which
are the profile's (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305).
"""

PROFILES = ("intermediate", "modern")
"""
C{intermediate}: TLS 1.2 with L{INTERMEDIATE_CIPHERS}, and TLS 1.3.
C{modern}: TLS 1.3 only.
"""

TICKET_LIFETIME = 7200
"""
Seconds a session ticket can resume a session.  The keys that encrypt
tickets are made with each context, so reloading a listener's files
(SIGHUP) replaces them and retires every ticket issued before.
"""

SESSION_CONTEXT = b"jsonproto"


@dataclass(frozen=True)
class TLSSettings:
    """
    What a listener's endpoint string says about TLS, besides its files.

    @ivar profile: One of L{PROFILES}.
    @ivar protocols: ALPN protocol names to select, in the server's order
        of preference; empty to select none.
    """

    profile: str = "intermediate"
    protocols: tuple[bytes, ...] = ()

    @classmethod
    def parse(cls, profile: str = "intermediate", alpn: str = "") -> TLSSettings:
        """
        Read the C{profile=} and C{alpn=} parameters (C{alpn=jsonproto,json}).

        @raise ValueError: A profile that is not one of L{PROFILES}, or a
            protocol name that is empty, repeated or over 255 bytes.
        """
        if profile not in PROFILES:
            raise ValueError(f"profile= is {' or '.join(PROFILES)}, not {profile!r}")
        names = [name.encode("utf-8") for name in alpn.split(",")] if alpn else []
        for name in names:
            if not 1 <= len(name) <= 255 or names.count(name) > 1:
                raise ValueError(
                    f"alpn= is a comma-separated list of distinct protocol names of 1 to 255 bytes, not {alpn!r}"
                )
        return cls(profile, tuple(names))


def selectProtocol(ours: Sequence[bytes], offered: Sequence[bytes]) -> Any:
    """
    The ALPN choice: the first of C{ours} the client offered, or else
    pyOpenSSL's C{NO_OVERLAPPING_PROTOCOLS}, which lets the handshake go
    on without ALPN.
    """
    from OpenSSL import SSL

    for name in ours:
        if name in offered:
            return name
    return SSL.NO_OVERLAPPING_PROTOCOLS


def serverContext(credentials: ServerCredentials, settings: TLSSettings) -> Any:
    """
    A new server context serving C{credentials} as C{settings} say, with
    its own session ticket keys.

    @return: An C{OpenSSL.SSL.Context}, to share between the listener's
        connections (a ticket resumes only on the context that issued it).
    """
    from OpenSSL import SSL, crypto

    # pyOpenSSL's own types, which every pyOpenSSL Twisted allows takes.
    certificate = crypto.X509.from_cryptography
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION if settings.profile == "modern" else SSL.TLS1_2_VERSION)
    context.set_cipher_list(INTERMEDIATE_CIPHERS.encode("ascii"))
    # Tickets stay on (no OP_NO_TICKET): they resume sessions without a
    # server-side cache, so the cache is off and memory does not grow with
    # the clients.
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_session_id(SESSION_CONTEXT)
    context.set_timeout(TICKET_LIFETIME)
    context.use_certificate(certificate(credentials.certificate))
    context.use_privatekey(crypto.PKey.from_cryptography_key(credentials.key))
    for intermediate in credentials.chain:
        context.add_extra_chain_cert(certificate(intermediate))
    context.check_privatekey()
    if credentials.clientAuthorities:
        store = context.get_cert_store()
        assert store is not None
        for authority in credentials.clientAuthorities:
            store.add_cert(certificate(authority))
            context.add_client_ca(certificate(authority))
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    if settings.protocols:
        protocols = settings.protocols
        context.set_alpn_select_callback(lambda connection, offered: selectProtocol(protocols, offered))
    return context
