"""
Development certificates: a key and certificate in one PEM file, as
C{ssl:...:privateKey=} and C{jsonproto-tls:...:privateKey=} take them.

Self-signed for a quick TLS server; or a small certificate authority and
certificates it signs, for trying mutual TLS.  Not for production: use
your organisation's CA or ACME there.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _alternativeNames(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _load(path: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    with open(path, "rb") as f:
        pem = f.read()
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: the CA key must be an EC key made by jsonproto cert")
    return x509.load_pem_x509_certificate(pem), key


def makeCertificate(
    names: Sequence[str],
    days: int = 30,
    ca: str | None = None,
    isCA: bool = False,
) -> bytes:
    """
    A new key and a certificate for C{names}, as one PEM (key first).

    @param names: Host names and IP addresses; the first is also the
        common name.
    @param ca: A PEM file holding a CA's key and certificate (made with
        C{isCA}) to sign with; self-signed without one.
    @param isCA: Make a certificate authority instead, to sign others.
    """
    if not names:
        raise ValueError("a certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    if ca is not None:
        issuerCertificate, signingKey = _load(ca)
        issuer = issuerCertificate.subject
    else:
        issuer, signingKey = subject, key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=isCA, path_length=None), critical=True)
    )
    if isCA:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_alternativeNames(names)), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    certificate = builder.sign(signingKey, hashes.SHA256())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + certificate.public_bytes(serialization.Encoding.PEM)


def writeCertificate(path: str, names: Sequence[str], days: int = 30, ca: str | None = None, isCA: bool = False) -> None:
    """
    L{makeCertificate} into a file readable by its owner only.
    """
    import os

    pem = makeCertificate(names, days=days, ca=ca, isCA=isCA)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
