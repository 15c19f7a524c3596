"""`make certs`: a throwaway certificate authority and a server certificate for the gRPC hops.

    python -m lab.certs certs/        # then: LAB_GRPC_TLS_DIR=certs make run ARCH=microservices

This is the first step towards mutual TLS, not the whole of it: the stages prove who they are to
the gateway (server authentication and encryption on every hop); the gateway does not yet prove
who *it* is. mTLS adds a client certificate per caller and `require_client_auth=True` on the
servers; in Kubernetes a service mesh or cert-manager issues and rotates those. The keys written
here are for a lab: generated locally, never committed (`certs/` is in .gitignore), valid for
30 days.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servinglab.contract import STAGES

VALID_FOR = timedelta(days=30)
# Every name a stage is reached by: loopback locally, Service names in Kubernetes.
SERVER_NAMES = ("localhost", *STAGES)
SERVER_IPS = ("127.0.0.1", "::1")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "servinglab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate(directory: Path) -> list[Path]:
    """Write ca.pem, server.pem and server-key.pem into `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("servinglab lab CA"))
        .issuer_name(_name("servinglab lab CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVER_NAMES]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("servinglab stage"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca.pem": ca_cert.public_bytes(serialization.Encoding.PEM),
        "server.pem": server_cert.public_bytes(serialization.Encoding.PEM),
        "server-key.pem": _pem_key(server_key),
    }
    written = []
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        if name.endswith("key.pem"):
            path.chmod(0o600)
        written.append(path)
    # The CA's key is not kept: nothing else should ever be signed with it.
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, nargs="?", default=Path("certs"))
    args = parser.parse_args(argv)
    for path in generate(args.directory):
        print(path)
    print(f"use them with LAB_GRPC_TLS_DIR={args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
