"""https:// inputs from a real TLS server on 127.0.0.1 (self-signed CA trusted via SSL_CERT_FILE)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from runner_support import Media, probe_mp4, run_cli


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def https_root(tmp_path: Path, media: Media) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "voice.wav").write_bytes(media.short.read_bytes())
    (root / "face.jpg").write_bytes(media.portrait.read_bytes())
    cert, key = _self_signed(tmp_path)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        thread.join()


def test_https_inputs(https_root: tuple[str, Path], tmp_path: Path) -> None:
    base, cert = https_root
    args = ["render", "--audio", f"{base}/voice.wav", "--image", f"{base}/face.jpg", "--out", "h.mp4"]
    run = run_cli(
        [*args, "--engine", "placeholder", "--width", "64", "--height", "64"],
        tmp_path,
        env={"SSL_CERT_FILE": str(cert)},
    )
    assert run.code == 0, run.stderr
    assert probe_mp4(tmp_path / "h.mp4").frames == round(1.2 * 25)

    again = run_cli([*args, "--engine", "placeholder"], tmp_path, env={"SSL_CERT_FILE": str(cert)})
    assert again.code == 5 and again.error["field"] == "output.uri"  # h.mp4 exists: refused before downloading
    gone = run_cli(
        ["render", "--audio", f"{base}/nope.wav", "--out", "n.mp4", "--engine", "placeholder"],
        tmp_path,
        env={"SSL_CERT_FILE": str(cert)},
    )
    assert gone.code == 5 and gone.error["field"] == "speakers[0].audio" and "404" in gone.error["message"]
    untrusted = run_cli(
        ["render", "--audio", f"{base}/voice.wav", "--out", "u.mp4", "--engine", "placeholder"], tmp_path
    )
    assert untrusted.code == 5 and "certificate" in untrusted.error["message"].lower()  # retrying cannot help
    assert not (tmp_path / "n.mp4").exists() and not (tmp_path / "u.mp4").exists()
