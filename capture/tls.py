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

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.ssl import CertificateOptions

DEFAULT_NAME = "localhost"
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
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
    with os.fdopen(fd, "wb") as f:
        f.write(keyPEM + certPEM)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load(path: str) -> tuple[CertificateOptions, str]:
    with open(path, "rb") as f:
        data = f.read()
    key = None
    certs = []
    for match in _PEM_BLOCK.finditer(data):
        kind = match.group(1)
        if kind.endswith(b"PRIVATE KEY"):
            key = serialization.load_pem_private_key(match.group(0), password=None)
        elif kind == b"CERTIFICATE":
            certs.append(x509.load_pem_x509_certificate(match.group(0)))
    if key is None or not certs:
        raise ValueError(f"{path} needs a private key and a certificate")
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=certs[0],  # type: ignore[arg-type]
        extraCertChain=certs[1:],  # type: ignore[arg-type]
    )
    return options, _fingerprint(certs[0])


def loadCertificate(directory: str, hostname: str | None = None) -> LoadedCertificate:
    """
    The certificate to serve: C{<hostname>.pem} if present, else
    C{localhost.pem}, else the first C{.pem} in the directory; when there is
    none, a new self-signed C{localhost.pem}.
    """
    os.makedirs(directory, exist_ok=True)
    candidates = [f"{hostname}.pem"] if hostname else []
    candidates.append(f"{DEFAULT_NAME}.pem")
    candidates += sorted(n for n in os.listdir(directory) if n.endswith(".pem"))
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            options, fingerprint = _load(path)
            return LoadedCertificate(path, fingerprint, False, options)
    path = os.path.join(directory, f"{DEFAULT_NAME}.pem")
    generateSelfSigned(path, [hostname] if hostname else [])
    options, fingerprint = _load(path)
    return LoadedCertificate(path, fingerprint, True, options)
