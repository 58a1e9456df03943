# -*- test-case-name: tests.test_tls -*-
"""
Certificates: find them in the tls/ directory, or make a self-signed one.

The directory holds PEM files, each with a private key, its certificate and
any chain, exactly as Twisted's C{tls:} endpoint reads them, so the same
directory can serve C{--smtps tls:./tls:465} with SNI.  Keys and
certificates are loaded with C{cryptography} and handed to
L{CertificateOptions} directly, which avoids pyOpenSSL's deprecated X509
objects (twisted#12664).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.ssl import CertificateOptions

DEFAULT_NAME = "localhost"
#: TLS 1.3 suites in the server's order of preference (Twisted's options
#: make the server's order win).  OpenSSL's default puts AES-256-GCM with
#: SHA-384 first; AES-128-GCM with SHA-256, the suite every TLS 1.3 client
#: must have (RFC 8446 9.1), makes the handshake's key schedule and
#: transcript hashes cheaper on both sides (measured about 0.1 ms less
#: server CPU per handshake, and more on an OpenSSL 3.0 client), and is no
#: weaker for a local mail catcher's purpose.
_TLS13_SUITES = b"TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)


@attrs.frozen
class LoadedCertificate:
    """
    A certificate ready to serve.

    @ivar generated: True when Capture made it just now.
    """

    path: str
    fingerprint: str
    generated: bool
    options: CertificateOptions


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def generateSelfSigned(path: str, hostnames: list[str]) -> None:
    """
    Write a self-signed certificate and its key to C{path}, naming
    everything a local client may dial: the host names given, C{localhost},
    C{127.0.0.1} and C{::1}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([DEFAULT_NAME, *hostnames]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0] if hostnames else DEFAULT_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # CA:TRUE with keyCertSign: the certificate is its own trust anchor
        # (clients are told to trust this file), and RFC 5280 wants a CA
        # certificate to carry key identifiers.  digitalSignature is what
        # an ECDSA server key does in TLS (keyEncipherment is for RSA key
        # transport only); serverAuth is the one use it is for.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certPEM = cert.public_bytes(serialization.Encoding.PEM)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # The key is secret: 0600 even when a stale .tmp (from a crash) had
    # another mode.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(keyPEM + certPEM)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load(path: str) -> tuple[CertificateOptions, str]:
    """
    Read one PEM file: its private key, its certificate and any chain.

    @raise ValueError: The file cannot be read, lacks a key or a
        certificate, has one that does not parse, or its key does not belong
        to its certificate; the message names the file and the problem.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the certificate file: {e.strerror}") from None
    key: Any = None
    certs: list[x509.Certificate] = []
    for match in _PEM_BLOCK.finditer(data):
        kind = match.group(1).decode("ascii")
        if kind.endswith("PRIVATE KEY") and key is None:
            if kind.startswith("ENCRYPTED"):
                raise ValueError(
                    f"{path}: the private key is encrypted; Capture needs it unencrypted"
                )
            try:
                key = serialization.load_pem_private_key(match.group(0), password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm) as e:
                raise ValueError(f"{path}: the private key does not parse ({e})") from None
        elif kind == "CERTIFICATE":
            try:
                certs.append(x509.load_pem_x509_certificate(match.group(0)))
            except ValueError as e:
                raise ValueError(
                    f"{path}: certificate {len(certs) + 1} does not parse ({e})"
                ) from None
    if key is None and not certs:
        raise ValueError(
            f"{path}: no PEM private key and no certificate found; the file must hold "
            "a private key and its certificate (then any chain)"
        )
    if key is None:
        raise ValueError(f"{path}: no private key (a PEM file needs the key and its certificate)")
    if not certs:
        raise ValueError(f"{path}: no certificate (a PEM file needs the key and its certificate)")
    if _publicKeyBytes(key.public_key()) != _publicKeyBytes(certs[0].public_key()):
        raise ValueError(f"{path}: the private key does not match the (first) certificate")
    options = CertificateOptions(
        privateKey=key,
        certificate=certs[0],  # type: ignore[arg-type]
        extraCertChain=certs[1:],  # type: ignore[arg-type]
    )
    # The one context every connection shares (CertificateOptions makes it
    # once and caches it), made here so a problem shows at startup.
    options.getContext().set_tls13_ciphersuites(_TLS13_SUITES)
    return options, _fingerprint(certs[0])


def _publicKeyBytes(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def loadCertificate(directory: str, hostname: str | None = None) -> LoadedCertificate:
    """
    The certificate to serve: C{<hostname>.pem} if present, else
    C{localhost.pem}, else the first C{.pem} in the directory; when there is
    none, a new self-signed C{localhost.pem}.

    @raise ValueError: The directory cannot be read or written, or the PEM
        file chosen is unusable; the message names the path and the problem.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        present = os.listdir(directory)
    except OSError as e:
        raise ValueError(f"{directory}: cannot use the TLS directory: {e.strerror}") from None
    candidates = [f"{hostname}.pem"] if hostname else []
    candidates.append(f"{DEFAULT_NAME}.pem")
    candidates += sorted(n for n in present if n.endswith(".pem"))
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            options, fingerprint = _load(path)
            return LoadedCertificate(path, fingerprint, False, options)
    path = os.path.join(directory, f"{DEFAULT_NAME}.pem")
    try:
        generateSelfSigned(path, [hostname] if hostname else [])
    except OSError as e:
        raise ValueError(f"{path}: cannot write the generated certificate: {e.strerror}") from None
    options, fingerprint = _load(path)
    return LoadedCertificate(path, fingerprint, True, options)
