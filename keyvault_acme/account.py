"""The ACME account key: a Key Vault secret holding a JWK, created and registered on first use.

The key is generated in memory, written to Key Vault and never to disk. Each process loads it once per
(vault, secret, directory) and reuses the registered account for every certificate, from any thread.

Two processes may create the key at the same moment (two ``pulumi up`` runs, or the CLI next to the
provider). Key Vault secrets have no create-if-absent, so after writing we read the version history and
take the *oldest* version's key (ties broken by version id); a process that finds an older key than its
own writes that key again as the newest version, so every later reader of the latest version gets it.
Processes racing within the same instant may still each keep their own key until they exit (each key
is a valid account; certificates issued meanwhile are revoked with the issuing key's account at worst
after re-validating); every process started afterwards uses the one converged key.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable, Generic, TypeVar

import josepy as jose
from cryptography.hazmat.primitives.asymmetric import ec

from .keyvault import MANAGED_BY, MANAGED_BY_TAG, KeyVault

log = logging.getLogger("keyvault_acme.account")

A = TypeVar("A")

JWK_CONTENT_TYPE = "application/jwk+json"


def new_account_key() -> jose.JWK:
    """ES256: small, fast to sign, accepted by every ACME CA we target."""
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def key_from_secret(value: str) -> jose.JWK:
    return jose.JWK.json_loads(value)


def key_to_secret(key: jose.JWK) -> str:
    return json.dumps(key.to_json())


def load_or_create_key(vault: KeyVault, secret_name: str, *, deadline: float | None = None) -> jose.JWK:
    """The account key stored in ``secret_name``; creates it when the secret does not exist."""
    value = vault.get_secret(secret_name, deadline=deadline)
    if value is not None:
        return key_from_secret(value)
    mine = key_to_secret(new_account_key())
    tags = {MANAGED_BY_TAG: MANAGED_BY, "purpose": "acme-account-key"}
    my_version = vault.set_secret(secret_name, mine, content_type=JWK_CONTENT_TYPE, tags=tags, deadline=deadline)
    versions = vault.secret_versions(secret_name, deadline=deadline)
    oldest = next((p for p in versions if p.enabled is not False), None)
    if oldest is None or oldest.version == my_version:
        log.info("created ACME account key in secret %s/secrets/%s", vault.vault_url, secret_name)
        return key_from_secret(mine)
    # Someone else wrote first: use theirs and make it the latest again.
    theirs = vault.get_secret(secret_name, oldest.version, deadline=deadline)
    assert theirs is not None
    vault.set_secret(secret_name, theirs, content_type=JWK_CONTENT_TYPE, tags=tags, deadline=deadline)
    log.info("another process created the ACME account key in %s/secrets/%s first; using it", vault.vault_url,
             secret_name)
    return key_from_secret(theirs)


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

    def get(self, vault: KeyVault, secret_name: str, directory_url: str,
            register: Callable[[jose.JWK], A], *, deadline: float | None = None) -> A:
        key = (vault.vault_url.lower(), secret_name.lower(), directory_url)
        with self._lock:
            if key in self._entries:
                return self._entries[key]
            entry_lock = self._locks.setdefault(key, threading.Lock())
        with entry_lock:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            account = register(load_or_create_key(vault, secret_name, deadline=deadline))
            with self._lock:
                self._entries[key] = account
            return account

    def forget(self, vault_url: str, secret_name: str, directory_url: str) -> None:
        """Drop a cached account (e.g. the CA no longer knows it); the next ``get`` registers again."""
        with self._lock:
            self._entries.pop((vault_url.lower(), secret_name.lower(), directory_url), None)
