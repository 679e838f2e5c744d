"""Test helpers: a throwaway CA that signs Key Vault's CSRs, and token shortcuts."""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.server import Emulator

VAULT_AUDIENCE = "https://vault.azure.net"
API = {"api-version": "2025-07-01"}


class LocalCA:
    """Signs CSRs the way an ACME CA would: subject and SANs copied from the CSR, the CSR's public key."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emulator-test issuing CA")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def sign(self, csr_der: bytes, days: int = 90) -> x509.Certificate:
        csr = x509.load_der_x509_csr(csr_der)
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.cert.subject)
                   .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=days)))
        for ext in csr.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        return builder.sign(self.key, hashes.SHA256())

    def chain_der(self, csr_der: bytes) -> list[bytes]:
        return [self.sign(csr_der).public_bytes(serialization.Encoding.DER),
                self.cert.public_bytes(serialization.Encoding.DER)]


def bearer(emu: Emulator, client_id: str, audience: str = VAULT_AUDIENCE, lifetime: int = 3600) -> dict[str, str]:
    return {"Authorization": "Bearer " + emu.admin.issue_token(client_id, audience, lifetime)}
