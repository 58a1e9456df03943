"""
Certificates (L{capture.tls}): the generated self-signed one, choosing a PEM
file in the TLS directory, clear errors for unusable files, and real
clients (Python, Node) verifying what the server presents.

Python's SMTPS handshake for C{localhost} is in
C{test_smtp_server.test_certificateVerifiesForLocalhost}.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from capture.tls import generateSelfSigned, loadCertificate
from tests.harness import CaptureServer


@pytest.fixture
def tlsDir() -> Iterator[Path]:
    """
    An empty directory for certificates.
    """
    path = Path(tempfile.mkdtemp(prefix="capture-tls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _certificate(path: Path | str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _fingerprint(path: Path | str) -> str:
    return _certificate(path).fingerprint(hashes.SHA256()).hex(":").upper()


# The generated certificate


def test_generatedNames(tlsDir: Path) -> None:
    """
    With an empty directory, C{localhost.pem} is generated naming
    C{localhost}, C{127.0.0.1}, C{::1} and the host name given.
    """
    loaded = loadCertificate(str(tlsDir), "mail.example")
    assert loaded.generated and loaded.path == str(tlsDir / "localhost.pem")
    names = _certificate(loaded.path).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["localhost", "mail.example"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
    ]


def test_generatedForIPHostname(tlsDir: Path) -> None:
    """
    A host name that is an IP address goes in as an IP address entry, not
    a DNS name.
    """
    loaded = loadCertificate(str(tlsDir), "192.0.2.7")
    names = _certificate(loaded.path).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("192.0.2.7") in names.get_values_for_type(x509.IPAddress)


def test_generatedExtensions(tlsDir: Path) -> None:
    """
    The generated certificate is for server authentication (EKU
    serverAuth), signs with its EC key (digitalSignature, no
    keyEncipherment) and is its own CA (CA:TRUE, keyCertSign), so a client
    can take the file as a trust anchor; it carries key identifiers.
    """
    certificate = _certificate(loadCertificate(str(tlsDir)).path)
    extensions = certificate.extensions
    eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH] and not eku.critical
    ku = extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_cert_sign
    assert not (ku.value.key_encipherment or ku.value.content_commitment
                or ku.value.data_encipherment or ku.value.key_agreement or ku.value.crl_sign)
    basic = extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert certificate.issuer == certificate.subject
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)


def test_generatedFileMode(tlsDir: Path) -> None:
    """
    The generated file (it holds the private key) is readable by its owner
    only, whatever the umask, and no temporary file is left behind.
    """
    previous = os.umask(0)
    try:
        loaded = loadCertificate(str(tlsDir))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(loaded.path).st_mode) == 0o600
    assert os.listdir(tlsDir) == ["localhost.pem"]


def test_generatedOnceThenReused(tlsDir: Path) -> None:
    """
    A second load uses the file the first one generated: same fingerprint,
    C{generated} false, file unchanged.
    """
    first = loadCertificate(str(tlsDir), "mail.example")
    content = Path(first.path).read_bytes()
    second = loadCertificate(str(tlsDir), "mail.example")
    assert (second.path, second.fingerprint, second.generated) == (
        first.path, first.fingerprint, False,
    )
    assert first.fingerprint == _fingerprint(first.path)
    assert Path(second.path).read_bytes() == content


# Choosing a file


def test_hostnamePEMPreferred(tlsDir: Path) -> None:
    """
    C{<hostname>.pem} is served over C{localhost.pem} when both exist;
    without a host name, C{localhost.pem} is.
    """
    generateSelfSigned(str(tlsDir / "localhost.pem"), [])
    generateSelfSigned(str(tlsDir / "mail.example.pem"), ["mail.example"])
    chosen = loadCertificate(str(tlsDir), "mail.example")
    assert chosen.path == str(tlsDir / "mail.example.pem") and not chosen.generated
    assert chosen.fingerprint == _fingerprint(tlsDir / "mail.example.pem")
    assert loadCertificate(str(tlsDir)).path == str(tlsDir / "localhost.pem")
    assert loadCertificate(str(tlsDir), "other.example").path == str(tlsDir / "localhost.pem")


def test_firstPEMOtherwise(tlsDir: Path) -> None:
    """
    With neither C{<hostname>.pem} nor C{localhost.pem}, the first PEM file
    by name is served, and nothing is generated.
    """
    generateSelfSigned(str(tlsDir / "zz.example.pem"), ["zz.example"])
    generateSelfSigned(str(tlsDir / "aa.example.pem"), ["aa.example"])
    chosen = loadCertificate(str(tlsDir), "mail.example")
    assert chosen.path == str(tlsDir / "aa.example.pem") and not chosen.generated
    assert sorted(os.listdir(tlsDir)) == ["aa.example.pem", "zz.example.pem"]


# Unusable files


def _keyPEM() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certPEM(directory: Path) -> bytes:
    generateSelfSigned(str(directory / "source.tmp"), [])
    data = (directory / "source.tmp").read_bytes()
    os.remove(directory / "source.tmp")
    return data[data.index(b"-----BEGIN CERTIFICATE-----"):]


def _brokenFiles(directory: Path) -> dict[str, bytes]:
    cert = _certPEM(directory)
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    return {
        "garbage": b"this is not a certificate\n\x00\xff",
        "empty": b"",
        "key only": _keyPEM(),
        "certificate only": cert,
        "key of another certificate": _keyPEM() + cert,
        "encrypted key": encrypted + cert,
        "corrupt certificate": _keyPEM()
        + b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        "corrupt key": b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
        + cert,
    }


_BROKEN_WORDS = {
    "garbage": "no PEM private key and no certificate",
    "empty": "no PEM private key and no certificate",
    "key only": "no certificate",
    "certificate only": "no private key",
    "key of another certificate": "does not match",
    "encrypted key": "encrypted",
    "corrupt certificate": "certificate 1 does not parse",
    "corrupt key": "private key does not parse",
}


@pytest.mark.parametrize("case", sorted(_BROKEN_WORDS))
def test_brokenPEM(tlsDir: Path, case: str) -> None:
    """
    A PEM file that cannot be served raises one ValueError naming the file
    and what is wrong with it, on one line.
    """
    path = tlsDir / "localhost.pem"
    path.write_bytes(_brokenFiles(tlsDir)[case])
    with pytest.raises(ValueError) as raised:
        loadCertificate(str(tlsDir))
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and _BROKEN_WORDS[case] in message
    assert "\n" not in message


def test_unusableDirectory(tlsDir: Path) -> None:
    """
    A TLS directory that is a file gives a ValueError naming it.
    """
    notADirectory = tlsDir / "file"
    notADirectory.write_text("")
    with pytest.raises(ValueError) as raised:
        loadCertificate(str(notADirectory))
    assert str(raised.value).startswith(f"{notADirectory}: cannot use the TLS directory")


def test_twistdBrokenPEMExits() -> None:
    """
    C{twistd capture} with a broken PEM file exits non-zero with one line
    naming the file, and no traceback.
    """
    directory = tempfile.mkdtemp(prefix="capture-test-")
    try:
        os.mkdir(os.path.join(directory, "tls"))
        path = os.path.join(directory, "tls", "localhost.pem")
        with open(path, "wb") as f:
            f.write(_keyPEM())
        server = CaptureServer(directory=directory)
        with pytest.raises(RuntimeError):
            server.start()
        assert server.process is not None and server.process.returncode not in (0, None)
        log = server.log()
        assert f"capture: {path}: no certificate" in log.splitlines()[-1], log
        assert "Traceback" not in log and "listening on" not in log
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# Real clients


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1", "mail.example"])
def test_pythonVerifiesEveryName(tlsDir: Path, name: str) -> None:
    """
    Python's default verifying context (with X.509 strict checks, as from
    Python 3.13), trusting the generated file, accepts every name it
    carries (DNS and IP entries), and refuses one it does not.
    """
    path = loadCertificate(str(tlsDir), "mail.example").path
    serverContext = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serverContext.load_cert_chain(path)
    client = ssl.create_default_context(cafile=path)
    # Python 3.13's default context adds this; the certificate must pass it.
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with serverContext.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with client.wrap_socket(sock, server_hostname=name) as tls:
                assert tls.getpeercert() is not None
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with pytest.raises(ssl.SSLCertVerificationError):
                client.wrap_socket(sock, server_hostname="other.example")
    finally:
        thread.join(10)
        listener.close()


@pytest.mark.parametrize("name", ["127.0.0.1", "::1"])
def test_starttlsVerifiesIPAddresses(server: CaptureServer, name: str) -> None:
    """
    The running server's STARTTLS handshake passes Python's verification
    for the loopback addresses too (clients configured with an IP address
    check IP entries, not C{localhost}).
    """
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30)
    client.ehlo()
    client._host = name  # type: ignore[attr-defined]  # the name starttls checks
    code, _ = client.starttls(context=server.tlsContext())
    assert code == 220
    assert client.sock is not None
    peer = client.sock.getpeercert()  # type: ignore[attr-defined]
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
    assert client.noop()[0] == 250
    client.quit()


def test_generatedFileModeOnServer(server: CaptureServer) -> None:
    """
    The certificate the real server generated is mode 0600.
    """
    path = os.path.join(server.tlsDir, "localhost.pem")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


_NODE_CLIENT = r"""
const tls = require('tls'), fs = require('fs');
const [port, ca, servername] = process.argv.slice(1);
const options = {host: '127.0.0.1', port: Number(port), ca: fs.readFileSync(ca)};
if (servername !== '-') options.servername = servername;
const socket = tls.connect(options, () => {
  console.log(socket.authorized ? 'authorized' : 'unauthorized ' + socket.authorizationError);
  socket.end();
});
socket.on('error', (e) => { console.log('error ' + (e.code || e.message)); process.exit(2); });
"""


@pytest.mark.parametrize(
    "servername, expected",
    [("localhost", "authorized"), ("-", "authorized"),
     ("other.example", "error ERR_TLS_CERT_ALTNAME_INVALID")],
)
def test_nodeAcceptsCertificate(server: CaptureServer, servername: str, expected: str) -> None:
    """
    Node's C{tls.connect} with the generated file as C{ca} accepts the
    SMTPS port for C{localhost} and for C{127.0.0.1} (no servername: the IP
    entry is checked), and refuses a name the certificate lacks.
    """
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is installed by scripts/test")
    result = subprocess.run(
        [node, "-e", _NODE_CLIENT, str(server.ports["smtps"]),
         os.path.join(server.tlsDir, "localhost.pem"), servername],
        capture_output=True, text=True, timeout=60,
    )
    assert result.stdout.strip() == expected, result.stderr


@pytest.mark.parametrize("listener", ["smtp", "smtps", "imaps", "pop3s"])
def test_serverPrefersAES128OnTLS13(server: CaptureServer, listener: str) -> None:
    """
    A TLS 1.3 client that offers OpenSSL's default suites (AES-256-GCM
    first) gets TLS_AES_128_GCM_SHA256, the server's first choice (its key
    schedule is cheaper on both sides), on every listener; the session
    then works.
    """
    context = server.tlsContext()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    port = server.ports[listener]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        if listener == "smtp":
            reader = raw.makefile("rb")
            assert reader.readline().startswith(b"220")
            raw.sendall(b"EHLO c\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            raw.sendall(b"STARTTLS\r\n")
            assert reader.readline().startswith(b"220")
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.cipher()[:2] == ("TLS_AES_128_GCM_SHA256", "TLSv1.3")
            if listener == "smtp":
                tls.sendall(b"NOOP\r\n")
            assert tls.recv(100)[:1] in (b"2", b"*", b"+")
