"""Certificates and keys for a loopback control plane (CA, serving, clients, service accounts)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=2)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(parts)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterCerts:
    ca: Path
    serving: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    service_account_key: Path  # signs service-account tokens (controller-manager and apiserver)
    service_account_pub: Path  # verifies them (apiserver)


class _Authority:
    def __init__(self) -> None:
        self.key = _key()
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("multitalk-test-ca"))
            .issuer_name(_name("multitalk-test-ca"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, subject: x509.Name, *, server: bool, sans: list[x509.GeneralName] | None = None
    ) -> tuple[bytes, bytes]:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate(directory: Path, service_ip: str) -> ClusterCerts:
    """Write a fresh CA, an apiserver serving pair, admin and controller-manager client pairs,
    and the service-account signing key into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Authority()

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def pair(name: str, pem: tuple[bytes, bytes]) -> KeyPair:
        return KeyPair(write(f"{name}.crt", pem[0]), write(f"{name}.key", pem[1]))

    ca_path = write("ca.crt", ca.cert.public_bytes(serialization.Encoding.PEM))
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(service_ip)),
        x509.DNSName("localhost"),
        *(x509.DNSName(n) for n in ("kubernetes", "kubernetes.default", "kubernetes.default.svc")),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    serving = pair("apiserver", ca.issue(_name("kube-apiserver"), server=True, sans=sans))
    # system:masters is the bootstrap superuser group; the controller-manager's own user is
    # bound to its role by the apiserver's bootstrap RBAC policy.
    admin = pair("admin", ca.issue(_name("multitalk-test-admin", "system:masters"), server=False))
    kcm = pair("controller-manager", ca.issue(_name("system:kube-controller-manager"), server=False))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_priv = write("sa.key", _key_pem(sa_key))
    sa_pub = write(
        "sa.pub",
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return ClusterCerts(ca_path, serving, admin, kcm, sa_priv, sa_pub)
