"""
The files a TLS listener serves from (its private key, its certificate and
chain, the CAs its clients' certificates must come from), read and checked.

Whatever is wrong with them is said in one sentence naming the parameter,
the file and what to do, because OpenSSL's own words for it (C{DECODER
routines::unsupported}) tell an operator nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_DECRYPT = "openssl pkey -in {path} -out key.pem"


class TLSFileError(Exception):
    """
    A TLS file that cannot be served from, with the reason in a sentence
    an operator can act on.  Not a C{ValueError}: the endpoint string is
    fine, its file is not.
    """


@dataclass(frozen=True)
class ServerFiles:
    """
    Where a TLS listener's files are, by the endpoint parameters naming
    them.

    @ivar privateKey: The private key's PEM file; the certificate's too
        unless C{certKey} names another.
    @ivar certKey: The certificate's PEM file.  Certificates after the
        first in it are sent as its chain (a C{fullchain.pem}).
    @ivar extraCertChain: More intermediate certificates, sent after those.
    @ivar clientCA: The CA certificates client certificates must be
        signed by; C{None} asks for no client certificate.
    """

    privateKey: str
    certKey: str | None = None
    extraCertChain: str | None = None
    clientCA: str | None = None

    @property
    def certificatePath(self) -> str:
        """
        The file the server's certificate is read from.
        """
        return self.certKey or self.privateKey

    def paths(self) -> list[str]:
        """
        Every file named, once each.
        """
        named = [self.privateKey, self.certKey, self.extraCertChain, self.clientCA]
        return list(dict.fromkeys(p for p in named if p))


@dataclass(frozen=True)
class ServerCredentials:
    """
    What L{ServerFiles} hold, parsed: a key, the certificate it belongs
    to, the chain to send after it, and the client CAs.
    """

    key: Any
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    clientAuthorities: tuple[x509.Certificate, ...]

    @property
    def notAfter(self) -> float:
        """
        When the certificate expires, in seconds since the epoch.
        """
        return self.certificate.not_valid_after_utc.timestamp()


def readCredentials(files: ServerFiles) -> ServerCredentials:
    """
    Read and check every file of C{files}.

    @raise TLSFileError: A file is missing or unreadable, is not PEM, holds
        no key or no certificate where one is needed, holds an encrypted
        key, or the key does not belong to the certificate.
    """
    keyText = _read("privateKey", files.privateKey)
    key = _privateKey(files, keyText)
    certificateText = _read("certKey", files.certKey) if files.certKey else keyText
    served = _certificates("certKey" if files.certKey else "privateKey", files.certificatePath, certificateText)
    if not served:
        hint = "" if files.certKey else ": name the certificate's file with certKey="
        raise TLSFileError(f"{_parameter(files)} {files.certificatePath} holds no certificate{hint}")
    if publicKeyBytes(key.public_key()) != publicKeyBytes(served[0].public_key()):
        raise TLSFileError(
            f"the private key in {files.privateKey} does not belong to the certificate in "
            f"{files.certificatePath}: name the matching pair with privateKey= and certKey="
        )
    chain = tuple(served[1:])
    if files.extraCertChain:
        extra = _certificates("extraCertChain", files.extraCertChain, _read("extraCertChain", files.extraCertChain))
        if not extra:
            raise TLSFileError(f"extraCertChain= {files.extraCertChain} holds no certificate")
        chain += tuple(extra)
    authorities: tuple[x509.Certificate, ...] = ()
    if files.clientCA:
        authorities = tuple(_certificates("clientCA", files.clientCA, _read("clientCA", files.clientCA)))
        if not authorities:
            raise TLSFileError(f"clientCA= {files.clientCA} holds no certificate (it needs the CA's certificate)")
    return ServerCredentials(key, served[0], chain, authorities)


def _parameter(files: ServerFiles) -> str:
    return "certKey=" if files.certKey else "privateKey="


def _read(parameter: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise TLSFileError(f"{parameter}= {path}: {e.strerror or e}") from None
    if b"-----BEGIN " not in text:
        raise TLSFileError(
            f"{parameter}= {path} is not a PEM file (text with -----BEGIN lines); "
            f"convert a DER file with openssl (openssl x509 -inform DER, openssl pkey -inform DER)"
        )
    return text


def _privateKey(files: ServerFiles, text: bytes) -> Any:
    path = files.privateKey
    blocks = [(label, block) for label, block in _blocks(text) if label.endswith(b"PRIVATE KEY")]
    if not blocks:
        held = "a certificate but" if any(label == b"CERTIFICATE" for label, _ in _blocks(text)) else "PEM, but"
        raise TLSFileError(
            f"privateKey= {path} holds {held} no private key: name the key's file with privateKey= "
            "(and the certificate's with certKey=)"
        )
    if len(blocks) > 1:
        raise TLSFileError(f"privateKey= {path} holds {len(blocks)} private keys; keep the server's only")
    label, block = blocks[0]
    if label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block:
        raise TLSFileError(
            f"privateKey= {path} holds a key encrypted with a passphrase, which the daemon cannot ask for; "
            f"decrypt it to a file only the daemon's user can read ({_DECRYPT.format(path=path)})"
        )
    try:
        return serialization.load_pem_private_key(block, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise TLSFileError(f"privateKey= {path}: its private key cannot be read ({e})") from None


def _certificates(parameter: str, path: str, text: bytes) -> list[x509.Certificate]:
    blocks = [block for label, block in _blocks(text) if label == b"CERTIFICATE"]
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as e:
        raise TLSFileError(f"{parameter}= {path}: a certificate in it cannot be read ({e})") from None


def _blocks(text: bytes) -> list[tuple[bytes, bytes]]:
    return [(match.group(1), match.group(0)) for match in _PEM_BLOCK.finditer(text)]


def publicKeyBytes(key: Any) -> bytes:
    """
    A public key as DER, to tell whether a private key and a certificate
    belong together.
    """
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
