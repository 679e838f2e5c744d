"""What the CA hands back is checked before anything is stored: a CA (or whoever sits on its path) must not get a
certificate into Key Vault that is not the one asked for.

Pure: certificates, Key Vault's CSR and the requested names in; :class:`~keyvault_acme.errors.ChainMismatch` out.
"""
from __future__ import annotations

from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .errors import ChainMismatch
from .keyvault import names_key, same_public_key
from .names import counted


def check_issued_chain(certs: Sequence[x509.Certificate], csr: x509.CertificateSigningRequest,
                       names: Sequence[str]) -> None:
    """ChainMismatch unless ``certs`` (leaf first) is a certificate for exactly Key Vault's key and ``names``,
    followed by its issuer chain, each certificate signed by the next one."""
    if len(certs) < 2:
        raise ChainMismatch(f"the CA sent {len(certs)} certificate(s) where a leaf and its issuer were expected; "
                            "nothing was stored")
    leaf = certs[0]
    if not same_public_key(leaf.public_key(), csr.public_key()):
        raise ChainMismatch(f"the CA's certificate (serial {leaf.serial_number:x}) is for another public key than "
                            "Key Vault's CSR; nothing was stored")
    have, want = _san(leaf), names_key(names)
    if have != want:
        raise ChainMismatch(f"the CA's certificate (serial {leaf.serial_number:x}) names "
                            f"{counted(list(have), 'name')}, the order {counted(list(want), 'name')}; "
                            "nothing was stored")
    for position, (cert, issuer) in enumerate(zip(certs, certs[1:])):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            what = "the leaf" if position == 0 else f"chain certificate {position}"
            raise ChainMismatch(f"the CA's chain does not verify: {what} (serial {cert.serial_number:x}) is not "
                                f"signed by the certificate after it ({issuer.subject.rfc4514_string()[:200]}: "
                                f"{e or type(e).__name__}); nothing was stored") from None


def _san(cert: x509.Certificate) -> tuple[str, ...]:
    """The leaf's names, as :func:`names_key` compares them; any name that is not a DNS name counts too."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return names_key(n.value if isinstance(n, x509.DNSName) else f"{type(n).__name__}:{n.value}" for n in san)
