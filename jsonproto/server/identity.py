"""
Who a TLS client proved to be: the names in its verified certificate, which
handlers and authorization hooks decide by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """
    Who a TLS client proved to be with its certificate (verified against
    the listener's C{clientCA=}).

    @ivar commonName: The subject's common name (CN), if it has one.
    @ivar dnsNames: The certificate's DNS subject alternative names.
    @ivar ipAddresses: Its IP address subject alternative names.
    """

    commonName: str | None
    dnsNames: tuple[str, ...] = ()
    ipAddresses: tuple[str, ...] = ()

    @classmethod
    def fromCertificate(cls, certificate: Any) -> ClientIdentity:
        """
        Read one from a pyOpenSSL certificate.
        """
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = certificate.to_cryptography()
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(sans.get_values_for_type(x509.DNSName))
            ips = tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            dns, ips = (), ()
        return cls(str(names[0].value) if names else None, dns, ips)
