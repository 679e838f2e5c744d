"""Key Vault, as the engine needs it: a certificate whose key pair Key Vault generates (issuer ``Unknown``),
its pending CSR, the merge of the CA's chain, public facts about versions, and a few secrets.

What this module never does: read a certificate's secret. That secret holds the private key when the
key is exportable, so no code path here asks for it. The public PEM chain (leaf + intermediates) is
needed as an output, and Key Vault keeps the intermediates only inside that secret; so when we merge a
chain we also store the *public* chain in a companion secret ``<certificate>-chain`` (content type
``application/x-pem-file``, tagged with the certificate version it belongs to). Reading facts takes the
leaf from the certificate's ``cer`` and the intermediates from that companion, falling back to the leaf
alone when the companion is missing or belongs to another version (e.g. a version merged by hand).

Errors: every call goes through :func:`keyvault_acme.retry.retry_call` (429 and 5xx retried with a
backoff that starts short and honours Retry-After, until the caller's deadline) and is mapped to the
engine's error classes, naming the vault, the object and what to do.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence, TypeVar, overload
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.exceptions import map_error as azure_map_error
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
    KeyCurveName,
    KeyType,
    KeyVaultCertificate,
)
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import (
    AccountKeyRefused,
    CertificateDeletedButRecoverable,
    HsmNotAvailable,
    KeyVaultError,
    KeyVaultForbidden,
    KeyVaultReadOnly,
    KeyVaultUnreachable,
    SecretRefused,
)
from .model import CertificateFacts, KeySpec
from .names import plural
from .renewal import TAG_REVOKED
from .retry import RETRYABLE_STATUS, azure_verdict, retry_call
from .transport import new_session

if TYPE_CHECKING:
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient

log = logging.getLogger("keyvault_acme.keyvault")

T = TypeVar("T")

MANAGED_BY_TAG = "managed-by"
MANAGED_BY = "keyvault-acme"
REVOKED_REASON_TAG = TAG_REVOKED  # one tag name, read by the renewal policies too
CHAIN_SUFFIX = "-chain"
PEM_CONTENT_TYPE = "application/x-pem-file"
_CHAIN_THUMBPRINT_TAG = "thumbprint"  # the leaf's: which certificate version a chain belongs to

_READ_ONLY_MARKERS = ("read-only", "read only", "readonly")
# How long a vault may refuse connections (or be unresolvable, or its proxy refuse) before a call gives up: long
# enough for a blip, short enough that a command against a wrong or unreachable vault answers within half a
# minute rather than at the operation's deadline. Once given up, other calls to the vault fail at once for
# UNREACHABLE_MEMORY_S (a status of a thousand certificates reports the vault once, not a thousand times).
UNREACHABLE_S = 20.0
UNREACHABLE_MEMORY_S = 30.0
CONNECT_TIMEOUT_S = 8
# A standard vault refuses HSM keys with "Hardware key operation not allowed on standard vault".
_HSM_REFUSAL_MARKER = "hardware key operation not allowed"


# -- pure helpers ------------------------------------------------------------------------------------------


def thumbprint(der: bytes) -> str:
    """SHA-1 of the DER certificate in upper-case hex, as the Azure portal and ``x5t`` show it."""
    return hashlib.sha1(der).hexdigest().upper()


def dns_names_of(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest) -> tuple[str, ...]:
    try:
        san = cert_or_csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))


def public_key_label(public_key: Any) -> str:
    """``RSA 2048`` / ``EC P-256``: the same label as :attr:`KeySpec.label`, from a public key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}.get(
            public_key.curve.name, f"EC {public_key.curve.name}")
    return type(public_key).__name__


def same_public_key(a: Any, b: Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def split_pem_chain(pem_chain: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem_chain.encode("ascii"))


def policy_for(key: KeySpec, dns_names: Sequence[str]) -> CertificatePolicy:
    """Key Vault generates the key and a CSR for these names; we bring the CA (issuer ``Unknown``)."""
    # Key Vault wants a subject. CAs copy at most one SAN into the CN and only if it fits 64 characters;
    # profiles without a CN ignore it, so any SAN that fits will do.
    cn = next((n for n in dns_names if len(n) <= 64), dns_names[0][:64])
    kwargs: dict[str, Any] = {}
    if key.family == "RSA":
        kwargs.update(key_type=KeyType.rsa_hsm if key.hsm else KeyType.rsa, key_size=key.size)
    else:
        kwargs.update(key_type=KeyType.ec_hsm if key.hsm else KeyType.ec, key_curve_name=KeyCurveName(key.curve))
    return CertificatePolicy(
        issuer_name="Unknown",
        subject=f"CN={cn}",
        san_dns_names=list(dns_names),
        exportable=key.exportable,
        reuse_key=False,  # a renewal is a new key pair
        content_type=CertificateContentType.pem,
        **kwargs,
    )


def public_key_from_jwk(jwk: Any) -> Any:
    """A cryptography public key from Key Vault's JsonWebKey (only n/e or crv/x/y are read)."""
    kty = str(getattr(jwk.kty, "value", jwk.kty))  # the SDK hands enums; tests and raw JSON hand strings
    if kty.startswith("RSA"):
        n, e = (int.from_bytes(bytes(v), "big") for v in (jwk.n, jwk.e))
        return rsa.RSAPublicNumbers(e, n).public_key()
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[str(getattr(jwk.crv, "value", jwk.crv))]
    x, y = (int.from_bytes(bytes(v), "big") for v in (jwk.x, jwk.y))
    return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()


# -- error mapping -----------------------------------------------------------------------------------------


def _status(error: BaseException) -> int | None:
    return getattr(error, "status_code", None) or getattr(getattr(error, "response", None), "status_code", None)


def _code(error: BaseException) -> str:
    """The error code, and the inner one when there is one (``Conflict/ObjectIsDeletedButRecoverable``)."""
    err = getattr(error, "error", None)
    code = str(getattr(err, "code", "") or "")
    inner = getattr(err, "innererror", None) or {}
    inner_code = inner.get("code") if isinstance(inner, dict) else getattr(inner, "code", None)
    return f"{code}/{inner_code}" if inner_code else code


def _message(error: BaseException) -> str:
    err = getattr(error, "error", None)
    message = getattr(err, "message", None)
    return str(message or getattr(error, "message", None) or error).splitlines()[0]


def is_read_only(error: BaseException) -> bool:
    text = f"{_code(error)} {_message(error)}".lower()
    return any(marker in text for marker in _READ_ONLY_MARKERS)


def retry_verdict(error: BaseException) -> float | bool:
    """For :func:`retry_call`: Azure's transient errors (:func:`azure_verdict`), except read-only mode, which
    lasts minutes: the caller decides, not a tight loop here."""
    return False if is_read_only(error) else azure_verdict(error)


def map_error(error: BaseException, what: str) -> KeyVaultError:
    """The engine's error for an SDK error; the text names the operation and never echoes a request body."""
    status, code, message = _status(error), _code(error), _message(error)
    detail = f"{what}: {message}" + (f" [{status} {code}]" if status or code else "")
    if is_read_only(error):
        return KeyVaultReadOnly(detail, status=status, code=code)
    if status == 403:
        return KeyVaultForbidden(detail, status=status, code=code)
    if _HSM_REFUSAL_MARKER in message.lower():
        return HsmNotAvailable(f"{detail}: HSM-protected keys (key.kty RSA-HSM / EC-HSM) need a premium vault",
                               status=status, code=code)
    if status == 409 and "deletedbutrecoverable" in code.lower():
        return CertificateDeletedButRecoverable(detail, status=status, code=code)
    mapped = KeyVaultError(detail, status=status, code=code)
    mapped.retryable = status in RETRYABLE_STATUS or isinstance(error, (ServiceRequestError, ServiceResponseError))
    return mapped


# -- the adapter -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A Key Vault key that signs in place: its versioned id and public half (the private half stays in Key Vault)."""

    key_id: str
    public_key: Any


ACCOUNT_KEY_CURVE = "P-256"  # ES256: what every ACME CA accepts


@dataclass(frozen=True)
class PendingCsr:
    """Key Vault's pending operation for a certificate: the CSR it wants signed (public, DER)."""

    name: str
    csr_der: bytes
    status: str

    @property
    def csr(self) -> x509.CertificateSigningRequest:
        return x509.load_der_x509_csr(self.csr_der)


class KeyVault:
    """One vault. Thread-safe: the SDK clients are, and they share one HTTP session (one connection pool,
    one cached Key Vault challenge per client)."""

    def __init__(self, vault_url: str, credential: Any, *, client_kwargs: Mapping[str, Any] | None = None,
                 timeout_s: float = 120.0) -> None:
        self.vault_url = vault_url.rstrip("/")
        self._credential = credential
        self._kwargs = dict(client_kwargs or {})
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._certs: CertificateClient | None = None
        self._secrets: SecretClient | None = None
        self._keys: KeyClient | None = None
        self._crypto: dict[str, CryptographyClient] = {}
        self._vetted: set[str] = set()  # secrets of ours this process has checked (see vet_own_secret)
        self._unreachable: tuple[float, KeyVaultUnreachable] | None = None

    # SDK clients are built on first use: a vault we only read certificates from never builds a KeyClient.
    @property
    def certificates(self) -> CertificateClient:
        return self._client("_certs", CertificateClient)

    @property
    def secrets(self) -> SecretClient:
        return self._client("_secrets", SecretClient)

    @property
    def keys(self) -> KeyClient:
        # Imported here: only key checks read keys, and the package costs every CLI start 40 ms.
        from azure.keyvault.keys import KeyClient

        return self._client("_keys", KeyClient)

    def _client(self, attr: str, cls: Callable[..., T]) -> T:
        with self._lock:
            if getattr(self, attr) is None:
                setattr(self, attr, cls(self.vault_url, self._credential, **self._kwargs))
            return getattr(self, attr)

    @overload
    def _call(self, what: str, fn: Callable[[], T], *, deadline: float | None = None,
              missing_ok: Literal[False] = False) -> T: ...

    @overload
    def _call(self, what: str, fn: Callable[[], T], *, deadline: float | None = None,
              missing_ok: Literal[True]) -> T | None: ...

    def _call(self, what: str, fn: Callable[[], T], *, deadline: float | None = None,
              missing_ok: bool = False) -> T | None:
        """Run one SDK call with retries until the deadline; map its errors. Returns None only for a 404 and
        only when ``missing_ok`` (the overloads say so to the type checker: without it, never None). A vault
        that cannot be reached at all is given :data:`UNREACHABLE_S`, not the whole deadline."""
        what = f"Key Vault {self.vault_url}: {what}"
        with self._lock:
            known = self._unreachable
        if known is not None and time.monotonic() - known[0] < UNREACHABLE_MEMORY_S:
            raise KeyVaultUnreachable(str(known[1]))
        started = time.monotonic()

        def verdict(error: BaseException) -> float | bool:
            # The request never reached the vault: try again only while another attempt, which may itself wait
            # out the connect timeout (a vault that drops connections), still ends within UNREACHABLE_S.
            if isinstance(error, ServiceRequestError) and \
                    time.monotonic() - started + CONNECT_TIMEOUT_S > UNREACHABLE_S:
                return False
            return retry_verdict(error)

        try:
            return retry_call(fn, what=what, retry_after=verdict, deadline=deadline,
                              timeout=None if deadline is not None else self.timeout_s)
        except ResourceNotFoundError as e:
            if missing_ok:
                return None
            raise map_error(e, what) from None
        except ServiceRequestError as e:
            unreachable = KeyVaultUnreachable(f"cannot reach {urlsplit(self.vault_url).hostname} ({what}): "
                                              f"{_connection_failure(e)}; {KeyVaultUnreachable.hint}")
            with self._lock:
                self._unreachable = (time.monotonic(), unreachable)
            raise unreachable from None
        except (HttpResponseError, ServiceResponseError) as e:
            raise map_error(e, what) from None

    # -- pending operation -------------------------------------------------------------------------------

    def create_pending(self, name: str, key: KeySpec, dns_names: Sequence[str], tags: Mapping[str, str],
                       *, deadline: float | None = None) -> PendingCsr:
        """Start a new version: Key Vault generates the key pair and returns its CSR. Nothing is signed yet."""
        policy = policy_for(key, dns_names)

        def create():
            poller = self.certificates.begin_create_certificate(name, policy, tags=dict(tags))
            return poller.result()  # issuer Unknown: the poller is done at once with the operation (no polling)

        op = self._call(f"create certificate {name!r} ({key.description}, {plural(len(dns_names), 'name')})", create,
                        deadline=deadline)
        log.debug("created pending operation for %s/%s", self.vault_url, name)
        return PendingCsr(name, bytes(op.csr), str(op.status))

    def pending(self, name: str, *, deadline: float | None = None) -> PendingCsr | None:
        """The certificate's unfinished operation, or None. Key Vault keeps a completed one (merged: its target is
        the certificate) until the next create; that is no pending operation."""
        op = self._call(f"get pending operation of {name!r}",
                        lambda: self.certificates.get_certificate_operation(name), deadline=deadline, missing_ok=True)
        if op is None or not op.csr or str(op.status).lower() == "completed":
            return None
        return PendingCsr(name, bytes(op.csr), str(op.status))

    def pending_properties(self, name: str, *, deadline: float | None = None) -> Any | None:
        """Properties (version, created, tags) of the pending operation's version: the newest version that has
        no certificate yet; None when there is none."""
        unfinished = [p for p in self.versions(name, deadline=deadline) if not p.x509_thumbprint and p.created_on]
        return max(unfinished, key=lambda p: (p.created_on, p.version), default=None)

    def stored_chain(self, name: str, *, deadline: float | None = None) -> list[x509.Certificate]:
        """The public chain most recently kept for ``name`` (see :meth:`store_chain`), leaf first; empty when
        there is none. Read to merge a chain a run obtained and could not merge."""
        secret = self._read_secret(f"{name}{CHAIN_SUFFIX}", None, ours=True, deadline=deadline)
        if secret is None or not secret.value:
            return []
        try:
            return split_pem_chain(secret.value)
        except ValueError:
            return []

    def discard_pending(self, name: str, *, deadline: float | None = None) -> None:
        """Cancel and delete a pending operation (crash leftovers, failed orders). Gone is not an error."""
        self._call(f"cancel pending operation of {name!r}",
                   lambda: self.certificates.cancel_certificate_operation(name), deadline=deadline, missing_ok=True)
        self._call(f"delete pending operation of {name!r}",
                   lambda: self.certificates.delete_certificate_operation(name), deadline=deadline, missing_ok=True)
        log.info("discarded pending operation of %s/%s", self.vault_url, name)

    def store_chain(self, name: str, chain: Sequence[x509.Certificate], *, deadline: float | None = None) -> None:
        """Keep the public chain (leaf first) in the companion secret ``<name>-chain``, tagged with the leaf's
        thumbprint. Done before the merge: a chain that cannot be kept stops the issuance with nothing merged."""
        pem_chain = "".join(pem_of(c) for c in chain)
        thumb = thumbprint(chain[0].public_bytes(serialization.Encoding.DER))
        secret = f"{name}{CHAIN_SUFFIX}"

        def write() -> None:
            self.set_secret(secret, pem_chain, content_type=PEM_CONTENT_TYPE, deadline=deadline,
                            tags={MANAGED_BY_TAG: MANAGED_BY, _CHAIN_THUMBPRINT_TAG: thumb})

        try:
            write()
        except CertificateDeletedButRecoverable:
            # The certificate was deleted and then recovered by hand (our own error says to): its chain secret,
            # deleted with it, is still soft-deleted. Bring it back.
            self.recover_own_secret(secret, deadline=deadline)
            write()

    def merge(self, name: str, chain: Sequence[x509.Certificate], *, tags: Mapping[str, str] | None = None,
              deadline: float | None = None) -> CertificateFacts:
        """Merge leaf + intermediates into the pending version, giving it ``tags`` when given (they replace the
        pending version's); the facts of the new version."""
        ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
        kwargs: dict[str, Any] = {} if tags is None else {"tags": dict(tags)}
        merged = self._call(f"merge certificate {name!r}",
                            lambda: self.certificates.merge_certificate(name, ders, **kwargs), deadline=deadline)
        return self._facts(merged, "".join(pem_of(c) for c in chain))

    # -- certificates ----------------------------------------------------------------------------------------

    def certificate(self, name: str, version: str | None = None, *, chain: bool = True,
                    known: CertificateFacts | None = None, deadline: float | None = None) -> CertificateFacts | None:
        """Public facts of the current (or a given) version; None when there is no issued certificate.

        The read path, at fleet scale: one request (the certificate) when no chain is read. ``chain=False``:
        ``pem_chain`` holds the leaf alone (status, renewal decisions need no chain). ``known``: facts the caller
        already holds (Pulumi state); while the thumbprint is unchanged its chain is the chain, so none is read.
        Otherwise the chain costs two more requests (see :meth:`_chain_for`).
        """
        what = f"get certificate {name!r}" + (f" version {version}" if version else "")
        cert = self._call(what, lambda: self._get_issued(name, version), deadline=deadline, missing_ok=True)
        if cert is None:
            return None  # none, or only a pending operation exists: nothing issued yet
        der = cert.der
        leaf_pem = pem_of(x509.load_der_x509_certificate(der))
        thumb = thumbprint(der)
        if known is not None and known.thumbprint == thumb and known.pem_chain.startswith(leaf_pem):
            pem_chain = known.pem_chain
        elif chain:
            pem_chain = self._chain_for(name, leaf_pem, thumb, deadline=deadline)
        else:
            pem_chain = leaf_pem
        return self._facts(cert, pem_chain)

    def with_chain(self, facts: CertificateFacts, *, deadline: float | None = None) -> CertificateFacts:
        """``facts`` read with ``chain=False``, completed with the chain stored for that version."""
        leaf_pem = pem_of(split_pem_chain(facts.pem_chain)[0])
        name = facts.id.rsplit("/", 1)[-1]
        return replace(facts, pem_chain=self._chain_for(name, leaf_pem, facts.thumbprint, deadline=deadline))

    def versions(self, name: str, *, deadline: float | None = None) -> list[Any]:
        """Properties (tags, dates, thumbprint; no certificate) of every version; empty when the certificate is
        gone. A version without a thumbprint never completed (a pending or discarded operation)."""
        return self._call(f"list versions of certificate {name!r}",
                          lambda: list(self.certificates.list_properties_of_certificate_versions(name)),
                          deadline=deadline, missing_ok=True) or []

    def version_tags(self, name: str, version: str, *, deadline: float | None = None) -> dict[str, str] | None:
        """The current tags of one version (one read, no chain); None when the version is gone."""
        cert = self._call(f"get certificate {name!r} version {version}",
                          lambda: self.certificates.get_certificate_version(name, version),
                          deadline=deadline, missing_ok=True)
        if cert is None:
            return None
        return dict((cert.properties.tags if cert.properties is not None else None) or {})

    def leaf(self, name: str, version: str, *, deadline: float | None = None) -> x509.Certificate | None:
        """The issued certificate of one version (public), without reading its chain; None when there is none."""
        cert = self._call(f"get certificate {name!r} version {version}",
                          lambda: self.certificates.get_certificate_version(name, version),
                          deadline=deadline, missing_ok=True)
        return x509.load_der_x509_certificate(bytes(cert.cer)) if cert is not None and cert.cer else None

    def update(self, name: str, version: str | None = None, *, tags: Mapping[str, str] | None = None,
               enabled: bool | None = None, deadline: float | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if tags is not None:
            kwargs["tags"] = dict(tags)
        if enabled is not None:
            kwargs["enabled"] = enabled
        self._call(f"update certificate {name!r}",
                   lambda: self.certificates.update_certificate_properties(name, version or "", **kwargs),
                   deadline=deadline)

    def delete(self, name: str, *, purge: bool = False, deadline: float | None = None) -> bool:
        """Soft-delete the certificate and its companion chain; purge both when asked. False when already gone."""
        deadline = deadline if deadline is not None else time.monotonic() + self.timeout_s
        existed = self._call(f"delete certificate {name!r}", lambda: self.certificates.begin_delete_certificate(name),
                             deadline=deadline, missing_ok=True) is not None
        chain = f"{name}{CHAIN_SUFFIX}"
        chain_existed = self._call(f"delete secret {chain!r}", lambda: self.secrets.begin_delete_secret(chain),
                                   deadline=deadline, missing_ok=True) is not None
        if purge:
            # Wait for a deletion we just made to complete; an object deleted earlier is purged if still there.
            self._purge(f"certificate {name!r}", lambda: self.certificates.get_deleted_certificate(name),
                        lambda: self.certificates.purge_deleted_certificate(name), deadline, wait=existed)
            self._purge(f"secret {chain!r}", lambda: self.secrets.get_deleted_secret(chain),
                        lambda: self.secrets.purge_deleted_secret(chain), deadline, wait=chain_existed)
        log.info("deleted %s/%s%s", self.vault_url, name, " and purged it" if purge else "")
        return existed

    def _purge(self, what: str, get_deleted: Callable[[], Any], purge: Callable[[], Any], deadline: float,
               *, wait: bool) -> None:
        # Deletion completes asynchronously: wait (short backoff, deadline) until the deleted object is listed.
        def deleted_now():
            if self._call(f"get deleted {what}", get_deleted, deadline=deadline, missing_ok=True) is None:
                raise _NotYet()

        try:
            retry_call(deleted_now, what=f"waiting for {what} to be deleted", deadline=deadline,
                       retry_after=lambda e: wait and isinstance(e, _NotYet))
        except _NotYet:  # not deleted by us and not (or no longer) in the deleted state: nothing to purge
            return
        self._call(f"purge {what}", purge, deadline=deadline, missing_ok=True)

    # -- the ACME account key as a Key Vault key (acme.account_key.kind: key) --------------------------------

    def signing_key(self, name: str, *, create: bool = True, deadline: float | None = None) -> SigningKey:
        """The EC P-256 key ``name`` (its latest version), made non-exportable with only sign/verify allowed when it
        does not exist and ``create`` is set. A certificate's key, or one that is not EC P-256 or may not sign, is
        refused (:class:`AccountKeyRefused`). Reading it needs keys/read only."""
        key = self._call(f"get key {name!r}", lambda: self.keys.get_key(name), deadline=deadline, missing_ok=True)
        if key is None:
            if not create:
                raise AccountKeyRefused(f"Key Vault {self.vault_url}: the key {name!r} does not exist", status=404)
            from azure.keyvault.keys import KeyCurveName as KeyCurve
            from azure.keyvault.keys import KeyOperation

            key = self._call(f"create key {name!r} (EC {ACCOUNT_KEY_CURVE}, sign/verify)",
                             lambda: self.keys.create_ec_key(
                                 name, curve=KeyCurve.p_256, key_operations=[KeyOperation.sign, KeyOperation.verify],
                                 tags={MANAGED_BY_TAG: MANAGED_BY, "purpose": "acme-account-key"}), deadline=deadline)
            log.info("created the ACME account key %s/keys/%s (EC %s, not exportable)", self.vault_url, name,
                     ACCOUNT_KEY_CURVE)
        problem = signing_key_problem(name, key)
        if problem:
            raise AccountKeyRefused(f"Key Vault {self.vault_url}: {problem}")
        return SigningKey(key.id, public_key_from_jwk(key.key))

    def sign_digest(self, key_id: str, algorithm: str, digest: bytes, *, deadline: float | None = None) -> bytes:
        """Key Vault signs ``digest`` with the key ``key_id`` (keys/sign); EC signatures come back as raw r||s."""
        from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

        with self._lock:
            client = self._crypto.get(key_id)
            if client is None:
                client = self._crypto[key_id] = CryptographyClient(key_id, self._credential, **self._kwargs)
        result = self._call(f"sign with key {key_id.rsplit('/keys/', 1)[-1]!r}",
                            lambda: client.sign(SignatureAlgorithm(algorithm), digest), deadline=deadline)
        return bytes(result.signature)

    # -- secrets (account key, TSIG key, EAB key, public chains) ---------------------------------------------
    #
    # Every read of a secret's value goes through :meth:`_read_secret`, which first looks at the versions'
    # properties (no values) and refuses a certificate's secret, and, for the secrets the engine writes itself
    # (account key, chains), one that lacks the engine's tag: a name collision must never bring another
    # certificate's private key into this process.

    def get_secret(self, name: str, version: str | None = None, *, ours: bool,
                   deadline: float | None = None) -> str | None:
        """The value of the latest (or a given) version; None when the secret does not exist. ``ours``: the
        engine wrote it (every version must carry the engine's tag); else it is the operator's (TSIG, EAB)."""
        secret = self._read_secret(name, version, ours=ours, deadline=deadline)
        return None if secret is None else secret.value

    def get_secret_and_tags(self, name: str, version: str | None = None, *,
                            deadline: float | None = None) -> tuple[str, str, dict[str, str]] | None:
        """(value, version, tags) of the latest (or a given) version of a secret the engine wrote; None when
        the secret does not exist."""
        secret = self._read_secret(name, version, ours=True, deadline=deadline)
        if secret is None:
            return None
        return secret.value, secret.properties.version, dict(secret.properties.tags or {})

    def refuse_foreign_secret(self, name: str, *, ours: bool = True, deadline: float | None = None) -> None:
        """Raise :class:`SecretRefused` when the secret ``name`` exists and is not one the engine may use
        (see :func:`secret_problem`); checked from properties only."""
        self._checked_versions(name, ours=ours, deadline=deadline)

    def vet_own_secret(self, name: str, *, deadline: float | None = None) -> None:
        """:meth:`refuse_foreign_secret` for a secret the engine writes (a ``-chain`` companion), once per process
        and secret: listing its versions on every issuance would cost each renewal a Key Vault request."""
        key = name.lower()
        with self._lock:
            if key in self._vetted:
                return
        self.refuse_foreign_secret(name, deadline=deadline)
        with self._lock:
            self._vetted.add(key)

    def set_secret_tags(self, name: str, version: str, tags: Mapping[str, str], *,
                        deadline: float | None = None) -> None:
        self._call(f"update tags of secret {name!r} version {version}",
                   lambda: self.secrets.update_secret_properties(name, version, tags=dict(tags)), deadline=deadline)

    def secret_versions(self, name: str, *, deadline: float | None = None) -> list[Any]:
        """Properties of every version, oldest first; ties (one-second timestamps) broken by version id, so every
        reader orders them the same way."""
        props = self._call(f"list versions of secret {name!r}",
                           lambda: list(self.secrets.list_properties_of_secret_versions(name)),
                           deadline=deadline, missing_ok=True) or []
        return sorted(props, key=lambda p: (p.created_on, p.version))

    def set_secret(self, name: str, value: str, *, content_type: str | None = None,
                   tags: Mapping[str, str] | None = None, deadline: float | None = None) -> str:
        """Store a new version; returns the version. The value never appears in logs or errors."""
        secret = self._call(f"set secret {name!r}",
                            lambda: self.secrets.set_secret(name, value, content_type=content_type,
                                                            tags=dict(tags or {})), deadline=deadline)
        return str(secret.properties.version)  # a secret just set always has one

    def _checked_versions(self, name: str, *, ours: bool, deadline: float | None) -> list[Any]:
        versions = self.secret_versions(name, deadline=deadline)
        problem = secret_problem(name, versions, ours=ours)
        if problem:
            raise SecretRefused(f"Key Vault {self.vault_url}: {problem}")
        return versions

    def _read_secret(self, name: str, version: str | None, *, ours: bool, deadline: float | None,
                     versions: Sequence[Any] | None = None) -> Any:
        """``versions``: the secret's version properties, when the caller has just listed and checked them."""
        if not (versions if versions is not None else self._checked_versions(name, ours=ours, deadline=deadline)):
            return None
        secret = self._call(f"get secret {name!r}" + (f" version {version}" if version else ""),
                            lambda: self.secrets.get_secret(name, version), deadline=deadline, missing_ok=True)
        # The properties came back with the value: a secret that changed hands since the listing is dropped too.
        problem = secret and secret_problem(name, [secret.properties], ours=ours)
        if problem:
            raise SecretRefused(f"Key Vault {self.vault_url}: {problem}")
        return secret

    def recover_own_secret(self, name: str, *, deadline: float | None = None) -> None:
        """Recover the soft-deleted secret ``name`` when it is one the engine wrote; SecretRefused otherwise."""
        deleted = self._call(f"get deleted secret {name!r}", lambda: self.secrets.get_deleted_secret(name),
                             deadline=deadline)
        problem = secret_problem(name, [deleted.properties], ours=True)
        if problem:
            raise SecretRefused(f"Key Vault {self.vault_url}: {problem}")
        self._call(f"recover deleted secret {name!r}",
                   lambda: self.secrets.begin_recover_deleted_secret(name).result(), deadline=deadline)
        self._checked_versions(name, ours=True, deadline=deadline)  # every version, now that they are listable
        log.info("recovered the soft-deleted secret %s/secrets/%s, which keyvault-acme wrote", self.vault_url, name)

    def _chain_for(self, name: str, leaf_pem: str, thumb: str, *, deadline: float | None) -> str:
        """The public chain stored with the version whose leaf is ``leaf_pem``, or the leaf alone when there is
        none (a version merged outside the engine). Two requests: the chain secret's versions are listed once
        (properties only: a certificate's secret is refused before any value is read), then the matching
        version is read."""
        chain_name = f"{name}{CHAIN_SUFFIX}"
        versions = self._checked_versions(chain_name, ours=True, deadline=deadline)
        match = next((p for p in reversed(versions) if (p.tags or {}).get(_CHAIN_THUMBPRINT_TAG) == thumb), None)
        secret = None if match is None else self._read_secret(chain_name, match.version, ours=True,
                                                              deadline=deadline, versions=versions)
        if secret is None or not secret.value or not secret.value.startswith(leaf_pem):
            return leaf_pem
        return secret.value

    def _get_issued(self, name: str, version: str | None) -> _Issued | None:
        """GET one certificate version as JSON through the client's own pipeline (its credential, challenge,
        API version and transport), None when it has no issued certificate yet. This is every read's one
        request, so it skips the SDK's model layer: building a ``KeyVaultCertificate`` (policy included) cost
        more CPU than the rest of a read together, and a fleet ``status`` reads a thousand of them."""
        response = self.certificates.send_request(HttpRequest("GET", f"/certificates/{name}/{version or ''}"))
        if response.status_code != 200:
            azure_map_error(response.status_code, response, _SDK_ERRORS)  # the SDK's own exception classes
            raise HttpResponseError(response=response)
        body = response.json()
        if not body.get("cer"):
            return None
        # "id": https://<vault>/certificates/<name>/<version>
        _, _, cert_name, cert_version = urlsplit(body["id"]).path.rstrip("/").rsplit("/", 3)
        attributes = body.get("attributes") or {}
        return _Issued(cert_name, cert_version, base64.b64decode(body["cer"]), body.get("sid"),
                       attributes.get("enabled"), body.get("tags") or {})

    def _issued(self, cert: KeyVaultCertificate) -> _Issued:
        """An issued version as the SDK returned it. The SDK types its parts optional (a version still pending
        has no certificate); callers only pass versions that have one, so a missing one is Key Vault's error."""
        props = cert.properties
        if not cert.cer or props is None or not props.version or not cert.name:
            raise KeyVaultError(f"Key Vault {self.vault_url}: certificate {cert.name!r} came back without an issued version")
        return _Issued(cert.name, props.version, bytes(cert.cer), cert.secret_id, props.enabled, props.tags or {})

    def _facts(self, cert: KeyVaultCertificate | _Issued, pem_chain: str) -> CertificateFacts:
        issued = cert if isinstance(cert, _Issued) else self._issued(cert)
        der, name, version = issued.der, issued.name, issued.version
        leaf = x509.load_der_x509_certificate(der)
        tags = dict(issued.tags)
        return CertificateFacts(
            id=f"{self.vault_url}/certificates/{name}",
            versioned_id=f"{self.vault_url}/certificates/{name}/{version}",
            secret_id=f"{self.vault_url}/secrets/{name}",
            versioned_secret_id=issued.secret_id or f"{self.vault_url}/secrets/{name}/{version}",
            version=version,
            thumbprint=thumbprint(der),
            serial=format(leaf.serial_number, "x"),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            issuer=leaf.issuer.rfc4514_string(),
            names=dns_names_of(leaf),
            pem_chain=pem_chain,
            enabled=bool(issued.enabled) if issued.enabled is not None else True,
            tags=tags,
            revoked_reason=tags.get(REVOKED_REASON_TAG),
        )


@dataclass(frozen=True)
class _Issued:
    """What the engine reads of one issued certificate version, whichever way it was read."""

    name: str
    version: str
    der: bytes
    secret_id: str | None
    enabled: bool | None
    tags: Mapping[str, str]


# The status codes the Key Vault SDK turns into its own exception classes (its generated operations' error_map).
_SDK_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError,
    304: ResourceNotModifiedError}


def _connection_failure(error: BaseException) -> str:
    """Why a connection failed, in a few words, from the chain of causes urllib3 and requests wrap it in."""
    text = " ".join(str(error).split()).lower()
    if "proxy" in text:
        return "the proxy refused the connection or could not connect"
    if "name or service not known" in text or "nodename nor servname" in text or "failed to resolve" in text \
            or "name resolution" in text:
        return "its name does not resolve"
    if "timed out" in text or "timeout" in text:
        return "the connection timed out"
    if "refused" in text:
        return "the connection was refused"
    return "no connection could be made"


class _NotYet(Exception):
    pass


def sdk_client_kwargs(session: requests.Session | None = None) -> dict[str, Any]:
    """Keyword arguments for every Azure SDK client the engine builds.

    One ``requests`` session shared by all clients (connections to the vault, ARM and the identity endpoint
    are reused; the environment's proxy and CA bundle apply, read once per origin: see
    :mod:`keyvault_acme.transport`); the SDK's own retry is off because
    :mod:`keyvault_acme.retry` retries with our deadline and a backoff that starts short.
    """
    session = session or new_session(pool_maxsize=64)
    transport = RequestsTransport(session=session, session_owner=False, connection_timeout=CONNECT_TIMEOUT_S,
                                  read_timeout=60)
    return {"transport": transport, "retry_total": 0}


def is_managed(facts: CertificateFacts) -> bool:
    """Whether this engine issued the version (and so may renew, adopt or revoke it)."""
    return facts.tags.get(MANAGED_BY_TAG) == MANAGED_BY


def secret_problem(name: str, versions: Sequence[Any], *, ours: bool) -> str | None:
    """Why the engine must not read the secret ``name`` with these version properties, or None.

    A certificate's secret (``managed``) is never read: an exportable certificate's holds its private key. A
    secret the engine writes itself (``ours``: the account key, the ``-chain`` companions) must carry the
    engine's tag on every version, or its name is taken by something else.
    """
    if any(p.managed for p in versions):
        return (f"the secret {name!r} belongs to the certificate {name!r} (it may hold that certificate's private "
                f"key), so keyvault-acme will not read it; rename that certificate or choose another name "
                f"(keyvault-acme keeps each certificate's public chain in the secret <certificate>{CHAIN_SUFFIX} "
                f"and the ACME account key in acme.account_key_secret)")
    if ours and any((p.tags or {}).get(MANAGED_BY_TAG) != MANAGED_BY for p in versions):
        return (f"the secret {name!r} was not written by keyvault-acme (a version lacks the tag "
                f"{MANAGED_BY_TAG}={MANAGED_BY}); choose another name, or tag every version to let keyvault-acme "
                f"use it")
    return None


def signing_key_problem(name: str, key: Any) -> str | None:
    """Why the Key Vault key ``key`` cannot be the ACME account key, or None."""
    if getattr(key.properties, "managed", False):
        return (f"the key {name!r} belongs to the certificate {name!r}; an ACME account key must be a key of its own "
                f"(acme.account_key.name)")
    kty = str(getattr(key.key_type, "value", key.key_type))
    crv = str(getattr(key.key.crv, "value", key.key.crv)) if key.key.crv else None
    if kty not in ("EC", "EC-HSM") or crv != ACCOUNT_KEY_CURVE:
        return f"the key {name!r} is {kty} {crv or ''}; the ACME account key must be EC {ACCOUNT_KEY_CURVE}".replace("  ", " ")
    ops = [str(getattr(o, "value", o)) for o in (key.key_operations or ())]
    if ops and "sign" not in ops:
        return f"the key {name!r} may not sign (its operations are {', '.join(ops)}); allow sign"
    return None


def names_key(names: Iterable[str]) -> tuple[str, ...]:
    """Names as a comparable set: lower case, sorted, no duplicates."""
    return tuple(sorted({n.lower().rstrip(".") for n in names}))
