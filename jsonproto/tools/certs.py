"""
Development certificates: a self-signed certificate for a quick TLS
server, or a small certificate authority and the server and client
certificates it signs, for trying mutual TLS.

Each certificate and its private key go to separate files (C{server.pem}
and C{server.key}), so that the file a client is given to trust a server
(or a CA) never carries a key.  Every certificate has the key identifiers
that strict verifiers (Python 3.13's C{ssl}) require, and one extended key
usage: server or client authentication, never both.

Not for production: use your organisation's CA or ACME there.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from typing import NamedTuple, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jsonproto.server.tlsfiles import publicKeyBytes

MAX_DAYS = 36500
"""The longest validity C{jsonproto cert} writes (a hundred years)."""

USAGES = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}
"""The extended key usage of a certificate, by what it is for."""

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_COMMON_NAME_LIMIT = 64  # RFC 5280's ub-common-name


class CertificateError(ValueError):
    """
    A certificate that cannot be made as asked (a bad name, validity or
    CA), in a sentence saying what to do instead.
    """


class KeyAndCertificate(NamedTuple):
    """
    A new private key and its certificate, each in PEM.
    """

    key: bytes
    certificate: bytes


class Authority(NamedTuple):
    """
    A certificate authority able to sign: its certificate and private key.
    """

    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


def keyPathFor(certificatePath: str) -> str:
    """
    Where the key of a certificate file goes unless told: C{server.pem}
    (or C{server.crt}) has its key in C{server.key}.
    """
    stem, extension = os.path.splitext(certificatePath)
    return (stem if extension in (".pem", ".crt", ".cer") else certificatePath) + ".key"


def alternativeName(name: str) -> x509.GeneralName:
    """
    A subject alternative name: an IP address, or else a host name
    (C{*.} may start one).

    @raise CertificateError: For anything else (C{999.1.1.1},
        C{bad_name!@#}).
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if (
        len(name) <= 253
        and all(_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()  # 999.1.1.1 is a bad address, not a host name
    ):
        return x509.DNSName(name)
    raise CertificateError(
        f"{name!r} is neither a host name (letters, digits, hyphens and dots) nor an IP address"
    )


def loadAuthority(certificatePath: str, keyPath: str | None = None) -> Authority:
    """
    Read a CA made by C{jsonproto cert --make-ca}: its certificate, and its
    key from C{keyPath}, else from the certificate's own file if it holds
    one, else from beside it (L{keyPathFor}).

    @raise CertificateError: A file is missing or does not hold a CA able
        to sign.
    """
    pem = _read(certificatePath, "--ca")
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateError(f"--ca {certificatePath}: holds no PEM certificate") from None
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        isAuthority = constraints.ca
    except x509.ExtensionNotFound:
        isAuthority = False
    if not isAuthority:
        raise CertificateError(
            f"--ca {certificatePath}: is not a certificate authority; make one with "
            "jsonproto cert NAME --make-ca -o ca.pem"
        )
    if keyPath is None and b"PRIVATE KEY-----" in pem:
        keyPath = certificatePath  # one file, as older versions of jsonproto cert wrote
    elif keyPath is None:
        keyPath = keyPathFor(certificatePath)
        if not os.path.exists(keyPath):
            raise CertificateError(
                f"--ca {certificatePath}: its key is neither in that file nor in {keyPath}; "
                "name the CA's key file with --ca-key"
            )
    keyPEM = pem if keyPath == certificatePath else _read(keyPath, "--ca-key")
    try:
        key = serialization.load_pem_private_key(keyPEM, password=None)
    except (ValueError, TypeError):
        raise CertificateError(f"--ca-key {keyPath}: holds no unencrypted PEM private key") from None
    if publicKeyBytes(key.public_key()) != publicKeyBytes(certificate.public_key()):
        raise CertificateError(f"--ca-key {keyPath}: is not the key of the CA in {certificatePath}")
    return Authority(certificate, key)  # type: ignore[arg-type]


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CertificateError(f"{option} {path}: no such file") from None
    except OSError as e:
        raise CertificateError(f"{option} {path}: {e.strerror}") from None


def makeCertificate(
    names: Sequence[str],
    days: int = 30,
    ca: str | None = None,
    isCA: bool = False,
    usage: str = "server",
    caKey: str | None = None,
    key: CertificateIssuerPrivateKeyTypes | None = None,
) -> KeyAndCertificate:
    """
    A new key and a certificate for C{names}.

    @param names: Host names and IP addresses; the first is also the
        common name.  A CA has one name, any text.
    @param days: How long the certificate is valid, 1 to L{MAX_DAYS}.
    @param ca: A CA's certificate file (from C{isCA}) to sign with;
        self-signed without one.
    @param caKey: The CA's key file (see L{loadAuthority}).
    @param isCA: Make a certificate authority instead, to sign others.
    @param usage: C{"server"} or C{"client"}: what the certificate
        authenticates (its extended key usage).  Not for a CA.
    @param key: The private key to certify; a new P-256 key without one.

    @raise CertificateError: When the names, days or CA are unusable.
    """
    if not names:
        raise CertificateError("a certificate needs at least one name")
    if not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"--days must be from 1 to {MAX_DAYS}, not {days}")
    if usage not in USAGES:
        raise CertificateError(f"a certificate is for {' or '.join(USAGES)}, not {usage!r}")
    if isCA and ca is not None:
        raise CertificateError("--make-ca makes a root CA, which nothing else signs: leave out --ca")
    if isCA:
        if len(names) != 1 or not 1 <= len(names[0]) <= _COMMON_NAME_LIMIT:
            raise CertificateError(f"a certificate authority has one name of 1 to {_COMMON_NAME_LIMIT} characters")
        commonName, alternatives = names[0], []
    else:
        alternatives = [alternativeName(name) for name in names]
        commonName = names[0]
    authority = loadAuthority(ca, caKey) if ca is not None else None
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, commonName)] if len(commonName) <= _COMMON_NAME_LIMIT else []
    subject = x509.Name(attributes)
    now = datetime.datetime.now(datetime.timezone.utc)
    subjectKeyId = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    if authority is not None:
        issuer, signingKey = authority.certificate.subject, authority.key
        authorityKeyId = _authorityKeyIdentifier(authority.certificate)
    else:
        issuer, signingKey = subject, key
        authorityKeyId = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subjectKeyId)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=isCA, path_length=0 if isCA else None), critical=True)
        .add_extension(subjectKeyId, critical=False)
        .add_extension(authorityKeyId, critical=False)
        .add_extension(_keyUsage(isCA, isinstance(key, rsa.RSAPrivateKey)), critical=True)
    )
    if not isCA:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alternatives), critical=not attributes
        ).add_extension(x509.ExtendedKeyUsage([USAGES[usage]]), critical=False)
    digest = None if isinstance(signingKey, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
    certificate = builder.sign(signingKey, digest)
    return KeyAndCertificate(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        certificate.public_bytes(serialization.Encoding.PEM),
    )


def _authorityKeyIdentifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """
    The identifier naming C{issuer}'s key: its own Subject Key Identifier
    where it has one (however its maker computed it), else the usual hash.
    """
    try:
        subjectKeyId = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subjectKeyId)


def _keyUsage(isCA: bool, isRSA: bool) -> x509.KeyUsage:
    # An RSA key may also encipher: RSA key exchange, where a profile allows it.
    return x509.KeyUsage(
        digital_signature=True, key_cert_sign=isCA, crl_sign=isCA, content_commitment=False,
        key_encipherment=isRSA and not isCA, data_encipherment=False, key_agreement=False,
        encipher_only=False, decipher_only=False,
    )


def writeCertificate(
    path: str,
    names: Sequence[str],
    days: int = 30,
    ca: str | None = None,
    isCA: bool = False,
    keyPath: str | None = None,
    usage: str = "server",
    caKey: str | None = None,
) -> None:
    """
    L{makeCertificate} into files: the certificate into C{path}, the key
    into C{keyPath} (readable by its owner only).  Without C{keyPath},
    both go into C{path}, key first, as C{privateKey=} alone takes them;
    such a file is for the server only.
    """
    if keyPath is not None and os.path.abspath(keyPath) == os.path.abspath(path):
        raise CertificateError(f"the key and the certificate need different files, not both {path}")
    made = makeCertificate(names, days=days, ca=ca, isCA=isCA, usage=usage, caKey=caKey)
    if keyPath is None:
        _write(path, made.key + made.certificate, 0o600)
        return
    _write(keyPath, made.key, 0o600)
    _write(path, made.certificate, 0o644)


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # an older file keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as f:
        f.write(data)
