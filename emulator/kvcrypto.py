"""Key Vault's cryptography: key pairs per policy, CSRs, merge input decoding, secret exports, JWKs and signing."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_SIZES = (2048, 3072, 4096)
CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_CURVE_NAMES = {type(c).__name__: n for n, c in CURVES.items()}


class CryptoInputError(ValueError):
    """Input Key Vault would answer with 400 BadParameter."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key(kty: str, key_size: int | None, crv: str | None) -> PrivateKey:
    family = kty.upper().removesuffix("-HSM")
    if family == "RSA":
        size = key_size or 2048
        if size not in RSA_SIZES:
            raise CryptoInputError(f"Invalid key size {size} for key type RSA; use one of {RSA_SIZES}.")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if family == "EC":
        curve = CURVES.get(crv or "P-256")
        if curve is None:
            raise CryptoInputError(f"Invalid curve name {crv!r}; use one of {sorted(CURVES)}.")
        return ec.generate_private_key(curve)
    raise CryptoInputError(f"Invalid key type {kty!r}; use RSA or EC.")


def key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def key_from_pem(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    return key


def curve_name(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    return _CURVE_NAMES[type(key.curve).__name__]


_KEY_USAGE_FLAGS = ("digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
                    "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly")
_KEY_USAGE_ARGS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                   "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


def _key_usage(names: list[str]) -> x509.KeyUsage:
    unknown = set(names) - set(_KEY_USAGE_FLAGS)
    if unknown:
        raise CryptoInputError(f"Invalid key usage {sorted(unknown)}.")
    return x509.KeyUsage(**{arg: flag in names for flag, arg in zip(_KEY_USAGE_FLAGS, _KEY_USAGE_ARGS)})


def _subject(text: str) -> x509.Name:
    try:
        return x509.Name.from_rfc4514_string(text.replace(", ", ","))
    except ValueError as exc:
        raise CryptoInputError(f"Invalid subject name {text!r}: {exc}") from None


def _extensions(x509_props: dict[str, Any]) -> list[tuple[x509.ExtensionType, bool]]:
    sans = x509_props.get("sans") or {}
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in sans.get("dns_names") or []]
    names += [x509.RFC822Name(n) for n in sans.get("emails") or []]
    exts: list[tuple[x509.ExtensionType, bool]] = []
    if names:
        exts.append((x509.SubjectAlternativeName(names), False))
    exts.append((_key_usage(x509_props.get("key_usage") or []), True))
    if x509_props.get("ekus"):
        exts.append((x509.ExtendedKeyUsage([ObjectIdentifier(o) for o in x509_props["ekus"]]), False))
    exts.append((x509.BasicConstraints(ca=False, path_length=None), False))
    return exts


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def build_csr(key: PrivateKey, x509_props: dict[str, Any]) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(x509_props.get("subject", "")))
    for ext, critical in _extensions(x509_props):
        builder = builder.add_extension(ext, critical)
    return builder.sign(key, _hash_for(key)).public_bytes(serialization.Encoding.DER)


def self_signed(key: PrivateKey, x509_props: dict[str, Any], not_before: "object", not_after: "object") -> bytes:
    subject = _subject(x509_props.get("subject", ""))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))  # type: ignore[arg-type]
    for ext, critical in _extensions(x509_props):
        builder = builder.add_extension(ext, critical)
    return builder.sign(key, _hash_for(key)).public_bytes(serialization.Encoding.DER)


def decode_merge_chain(x5c: Any) -> list[x509.Certificate]:
    """Accepts what clients send as x5c: base64 DER, base64 of base64 DER (the Python SDK), or PEM text."""
    if not isinstance(x5c, list) or not x5c or not all(isinstance(e, str) for e in x5c):
        raise CryptoInputError("Property x5c must be a non-empty array of strings.")
    chain: list[x509.Certificate] = []
    for entry in x5c:
        chain.extend(_decode_entry(entry.encode()))
    return chain


def _decode_entry(data: bytes, depth: int = 0) -> list[x509.Certificate]:
    text = data.strip()
    if b"-----BEGIN CERTIFICATE-----" in text:
        try:
            return x509.load_pem_x509_certificates(text)
        except ValueError:
            raise CryptoInputError("Property x5c has a PEM entry that is not a certificate.") from None
    if depth < 2:
        try:
            raw = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if raw:
            try:
                return [x509.load_der_x509_certificate(raw)]
            except ValueError:
                return _decode_entry(raw, depth + 1)
    raise CryptoInputError("Property x5c has an entry that is not a base64-encoded X.509 certificate.")


def public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def thumbprint(cert_der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA1())  # Key Vault's x5t is the SHA-1 thumbprint
    digest.update(cert_der)
    return b64url(digest.finalize())


def export_pfx(key: PrivateKey | None, chain: list[x509.Certificate]) -> bytes:
    return pkcs12.serialize_key_and_certificates(None, key, chain[0], chain[1:] or None,
                                                 serialization.NoEncryption())


def export_pem(key: PrivateKey | None, chain: list[x509.Certificate]) -> str:
    parts = [key_to_pem(key)] if key is not None else []
    parts += [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]
    return "".join(parts)


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))}
    pub = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {"kty": "EC", "crv": curve_name(key), "x": b64url(pub.x.to_bytes(size, "big")),
            "y": b64url(pub.y.to_bytes(size, "big"))}


_SIGN_ALGS: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "ES256": ("EC", hashes.SHA256()), "ES384": ("EC", hashes.SHA384()), "ES512": ("EC", hashes.SHA512()),
    "RS256": ("RSA", hashes.SHA256()), "RS384": ("RSA", hashes.SHA384()), "RS512": ("RSA", hashes.SHA512()),
    "PS256": ("RSA-PSS", hashes.SHA256()), "PS384": ("RSA-PSS", hashes.SHA384()),
    "PS512": ("RSA-PSS", hashes.SHA512()),
}


def sign_digest(key: PrivateKey, alg: str, digest: bytes) -> bytes:
    """Sign a precomputed digest, as Key Vault's sign operation does; EC signatures are raw r||s (JWS form)."""
    family, hash_alg = _SIGN_ALGS.get(alg, ("", hashes.SHA256()))
    if not family:
        raise CryptoInputError(f"Invalid algorithm {alg!r}.")
    if len(digest) != hash_alg.digest_size:
        raise CryptoInputError(f"Invalid digest length {len(digest)} for {alg}; expected {hash_alg.digest_size}.")
    prehashed = utils.Prehashed(hash_alg)
    try:
        if family == "EC" and isinstance(key, ec.EllipticCurvePrivateKey):
            expected = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
            if curve_name(key) != expected:
                raise CryptoInputError(f"Algorithm {alg} does not match the key's curve {curve_name(key)}.")
            r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(prehashed)))
            size = (key.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if family == "RSA" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(digest, padding.PKCS1v15(), prehashed)
        if family == "RSA-PSS" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(digest, padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size), prehashed)
    except UnsupportedAlgorithm as exc:
        raise CryptoInputError(str(exc)) from None
    raise CryptoInputError(f"Algorithm {alg} cannot be used with this key type.")


DEFAULT_EKUS = [ExtendedKeyUsageOID.SERVER_AUTH.dotted_string, ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string]
