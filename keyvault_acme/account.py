"""The ACME account key: a Key Vault secret holding a JWK, created and registered on first use.

The key is generated in memory, written to Key Vault and never to disk. Each process loads it once per
(vault, secret, directory) and reuses the registered account for every certificate, from any thread.

Two processes may create the key at the same moment (two ``pulumi up`` runs, or the CLI next to the
provider). Key Vault secrets have no create-if-absent, so every creator writes its own key, tagged as a
*candidate*, and then agrees with the others on one version: the first of those stamped in the
earliest second of the version history, ties broken by version id (:func:`first_version`). Key Vault
stamps ``created`` to the second, so a version written a moment after ours can still share our second
and sort before it; the decision is therefore made only once that second is over (a later stamp is
seen, or :data:`SETTLE_S` has passed since the write), when no new version can join it. Every creator
then sees the same candidates and picks the same key. The winner marks its version *agreed*; the others
write the winner's key again as the newest version, marked agreed. A reader that finds a candidate as
the latest version (a creator is still deciding, or crashed while deciding) makes the same decision
instead of trusting it. The wait is paid by the creators of an account key, once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Callable, Generic, Sequence, TypeVar

import josepy as jose
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import AcmeError, KeyVaultError
from .keyvault import MANAGED_BY, MANAGED_BY_TAG, KeyVault

log = logging.getLogger("keyvault_acme.account")

A = TypeVar("A")

JWK_CONTENT_TYPE = "application/jwk+json"
# Key Vault stamps versions to the second: this long after our write returned, that second is over.
SETTLE_S = 1.1
STATE_TAG = "account-key-state"
CANDIDATE, AGREED = "candidate", "agreed"  # no tag (keys written before this rule): agreed


def new_account_key() -> jose.JWK:
    """ES256: small, fast to sign, accepted by every ACME CA we target."""
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


class KeyVaultES256(jose.JWASignature):
    """ES256 whose private key is a Key Vault key: the adapter that lets certbot's ``acme`` sign every JWS in place.

    josepy hands :meth:`sign` the JWS signing input and the JWK (public only: there is no private key here);
    the SHA-256 digest goes to Key Vault's sign operation, whose ES256 answer is already JWS's raw r||s.
    ``sign_digest(digest) -> signature`` is that call (:meth:`KeyVault.sign_digest` bound to one key version).
    """

    kty = jose.JWKEC
    SIGNATURE_LENGTH = 64  # r||s, 32 bytes each on P-256

    def __init__(self, sign_digest: Callable[[bytes], bytes]) -> None:
        super().__init__("ES256")
        self._sign_digest = sign_digest

    def sign(self, key: Any, msg: bytes) -> bytes:
        signature = self._sign_digest(hashlib.sha256(msg).digest())
        if len(signature) != self.SIGNATURE_LENGTH:
            raise AcmeError(f"Key Vault answered an ES256 signature of {len(signature)} bytes, not the "
                            f"{self.SIGNATURE_LENGTH}-byte r||s a JWS needs")
        return signature

    def verify(self, key: Any, msg: bytes, sig: bytes) -> bool:
        return jose.ES256.verify(key, msg, sig)


class AccountKey:
    """An ACME account key as the client needs it: the JWK (public and private, or public only when Key Vault
    signs) and the JWS algorithm that signs with it; ``where`` names it for logs."""

    def __init__(self, jwk: jose.JWK, alg: jose.JWASignature | None, where: str) -> None:
        self.jwk, self.alg, self.where = jwk, alg, where


def key_vault_account_key(vault: KeyVault, name: str, *, deadline: float | None = None) -> AccountKey:
    """The account key kept as the Key Vault key ``name`` (created when missing): only its public half is read."""
    key = vault.signing_key(name, deadline=deadline)
    jwk = jose.JWKEC(key=key.public_key)
    return AccountKey(jwk, KeyVaultES256(lambda digest: vault.sign_digest(key.key_id, "ES256", digest)),
                      f"{vault.vault_url}/keys/{name}")


def key_from_secret(value: str) -> jose.JWK:
    return jose.JWK.json_loads(value)


def key_to_secret(key: jose.JWK) -> str:
    return json.dumps(key.to_json())


def first_version(versions: Sequence[Any]) -> Any | None:
    """The version every creator agrees on: the lowest version id among the enabled versions stamped in the
    earliest second (``created_on``), or None when there is none."""
    enabled = [p for p in versions if p.enabled is not False]
    if not enabled:
        return None
    earliest = min(p.created_on for p in enabled)
    return min((p for p in enabled if p.created_on == earliest), key=lambda p: p.version)


def earliest_second_is_over(versions: Sequence[Any]) -> bool:
    """True when some version is stamped after the second :func:`first_version` looks at: Key Vault's clock
    has moved past it, so no version written from now on can sort first."""
    first = first_version(versions)
    return first is not None and max(p.created_on for p in versions) > first.created_on


def load_or_create_key(vault: KeyVault, secret_name: str, *, deadline: float | None = None,
                       sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic,
                       created: list[bool] | None = None) -> jose.JWK:
    """The account key stored in ``secret_name``; creates it when the secret does not exist (see the module
    docstring for how concurrent creators converge on one key). ``created`` gets True appended when this call
    wrote the secret (so a failed registration can name it)."""
    latest = vault.get_secret_and_tags(secret_name, deadline=deadline)
    if latest is not None and latest[2].get(STATE_TAG) != CANDIDATE:
        return key_from_secret(latest[0])
    tags = {MANAGED_BY_TAG: MANAGED_BY, "purpose": "acme-account-key"}
    mine: str | None = None
    my_version: str | None = None
    if latest is None:
        mine = key_to_secret(new_account_key())
        my_version = vault.set_secret(secret_name, mine, content_type=JWK_CONTENT_TYPE,
                                      tags={**tags, STATE_TAG: CANDIDATE}, deadline=deadline)
        if created is not None:
            created.append(True)
    written = clock()  # a reader: the candidate it saw was written before now
    versions = vault.secret_versions(secret_name, deadline=deadline)
    if not earliest_second_is_over(versions):
        sleep(max(0.0, written + SETTLE_S - clock()))
        versions = vault.secret_versions(secret_name, deadline=deadline)
    first = first_version(versions)
    if first is not None and first.version == my_version and mine is not None:
        vault.set_secret_tags(secret_name, first.version, {**tags, STATE_TAG: AGREED}, deadline=deadline)
        log.info("created ACME account key in secret %s/secrets/%s", vault.vault_url, secret_name)
        return key_from_secret(mine)
    if first is None:  # every version disabled: nothing to agree on
        raise KeyVaultError(f"Key Vault {vault.vault_url}: every version of the ACME account key secret "
                            f"{secret_name!r} is disabled; enable the one to use, or delete and purge the secret")
    found = vault.get_secret_and_tags(secret_name, first.version, deadline=deadline)
    assert found is not None
    # Make the agreed key the latest again, so readers stop deciding.
    vault.set_secret(secret_name, found[0], content_type=JWK_CONTENT_TYPE, tags={**tags, STATE_TAG: AGREED},
                     deadline=deadline)
    if mine is not None:
        log.info("another process created the ACME account key in %s/secrets/%s at the same time; using its key",
                 vault.vault_url, secret_name)
    return key_from_secret(found[0])


class AccountCache(Generic[A]):
    """Registered accounts per (vault, secret, directory), created at most once per process.

    ``register(key)`` does the CA side (newAccount; an existing key just finds its account) and returns
    whatever the ACME client needs later. Creation holds a lock per cache entry, so concurrent issuances
    for the same account wait for one registration instead of racing to create several keys.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], A] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}

    @staticmethod
    def _key(vault: KeyVault, secret_name: str, directory_url: str) -> tuple[str, str, str]:
        return (vault.vault_url.lower(), secret_name.lower(), directory_url)

    def forget(self, vault: KeyVault, secret_name: str, directory_url: str) -> None:
        """Drop a registered account (its key was rolled over): the next :meth:`get` loads and registers again."""
        with self._lock:
            self._entries.pop(self._key(vault, secret_name, directory_url), None)

    def loaded(self, vault: KeyVault, secret_name: str, directory_url: str) -> bool:
        """Whether this process already loaded (and so already vetted) that account's key."""
        with self._lock:
            return self._key(vault, secret_name, directory_url) in self._entries

    def get(self, vault: KeyVault, secret_name: str, directory_url: str,
            register: Callable[[Any], A], *, deadline: float | None = None,
            load: Callable[[], Any] | None = None) -> A:
        """The registered account; on first use ``register(load())``, where ``load`` defaults to the JWK kept in
        the secret ``secret_name`` (created when missing). Accounts with other keys (a Key Vault key) pass their
        own ``load`` and a ``secret_name`` that names the key's kind, e.g. ``keys/<name>``."""
        key = self._key(vault, secret_name, directory_url)
        with self._lock:
            if key in self._entries:
                return self._entries[key]
            entry_lock = self._locks.setdefault(key, threading.Lock())
        with entry_lock:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            loaded = load() if load is not None else load_or_create_key(vault, secret_name, deadline=deadline)
            account = register(loaded)
            with self._lock:
                self._entries[key] = account
            return account

