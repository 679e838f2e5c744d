"""What the engine works through: the Azure credential, Key Vault clients, registered ACME accounts, the CA
directory readers and the DNS providers of a spec's zones, each built on first use and kept for the process.

:class:`~keyvault_acme.lifecycle.Engine` (issue, renew, revoke) and :class:`~keyvault_acme.checks.Checks`
(``Engine.check``) both receive one :class:`Wiring`, so a check talks to the same clients an issuance would,
and neither reaches into the other. Thread-safe: one wiring serves every certificate of an engine.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .dns.base import DnsProvider
from .errors import KeyVaultAcmeError, SpecError, with_note
from .keyvault import KeyVault, sdk_client_kwargs
from .model import AcmeAccount, CertificateSpec, SecretRef, Zone

# The issuance stack (ACME and JOSE, dnspython, azure-mgmt-dns) loads on first use: a process that only reads
# certificates (`keyvault-acme status`, a Pulumi refresh) never imports it.
if TYPE_CHECKING:
    from .account import AccountCache
    from .acme_client import AcmeClient
    from .dns.azure import AzureDnsClients

TSIG_CACHE_S = 300.0  # a rotated TSIG secret is picked up within minutes, without a read per issuance

log = logging.getLogger("keyvault_acme.wiring")


class Wiring:
    """Clients and accounts for an engine. ``credential``: any azure-core TokenCredential; None builds
    DefaultAzureCredential (workload identity, managed identity, environment, Azure CLI) on first use.
    ``timeout_s`` is the default bound of each client's calls."""

    def __init__(self, credential: Any | None = None, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._credential: Any | None = credential
        self._lock = threading.Lock()
        self._client_kwargs: dict[str, Any] | None = None
        self._vaults: dict[str, KeyVault] = {}
        self._dns_clients: AzureDnsClients | None = None
        self._tsig: dict[str, tuple[float, str]] = {}
        self._dir_clients: dict[str, AcmeClient] = {}
        self._acme_sessions: dict[str, Any] = {}  # directory URL -> the one HTTP session of this process for that CA
        self._accounts: AccountCache[AcmeClient] | None = None

    @property
    def accounts(self) -> AccountCache[AcmeClient]:
        """Registered ACME accounts of this process (see :class:`keyvault_acme.account.AccountCache`)."""
        with self._lock:
            if self._accounts is None:
                from .account import AccountCache

                self._accounts = AccountCache()
            return self._accounts

    # -- Azure ------------------------------------------------------------------------------------------

    def _kwargs(self) -> dict[str, Any]:
        with self._lock:
            if self._client_kwargs is None:
                self._client_kwargs = sdk_client_kwargs()
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                # Token requests share the clients' session: one CA bundle load, one environment read.
                self._credential = DefaultAzureCredential(transport=self._client_kwargs["transport"])
            return self._client_kwargs

    def credential(self) -> Any:
        """The credential every client uses (the default one is built here when none was given)."""
        self._kwargs()
        return self._credential

    def vault(self, vault_url: str) -> KeyVault:
        """The client of one vault, the same one for every certificate in it."""
        key = vault_url.rstrip("/").lower()
        kwargs = self._kwargs()
        with self._lock:
            vault = self._vaults.get(key)
            if vault is None:
                vault = self._vaults[key] = KeyVault(vault_url, self._credential, client_kwargs=kwargs,
                                                     timeout_s=self.timeout_s)
            return vault

    def _azure_dns(self) -> AzureDnsClients:
        from .dns.azure import AzureDnsClients

        kwargs = self._kwargs()
        with self._lock:
            if self._dns_clients is None:
                self._dns_clients = AzureDnsClients(self._credential, kwargs)
            return self._dns_clients

    # -- ACME -------------------------------------------------------------------------------------------

    def account(self, spec: CertificateSpec, vault: KeyVault, deadline: float, *,
                directory_url: str | None = None) -> AcmeClient:
        """The registered ACME client for the spec's account (key in the certificate's vault), at the spec's CA
        or at ``directory_url`` (the CA that issued an older version: the same key has its account there, and
        the spec's external account binding belongs to the spec's CA)."""
        from .account import AccountKey, key_vault_account_key
        from .acme_client import AcmeClient

        acme = spec.acme
        if directory_url and directory_url != acme.directory_url:
            acme = replace(acme, directory_url=directory_url, eab_kid=None, eab_hmac=None)

        def register(key: Any) -> AcmeClient:
            # The EAB key is read only here, once per process and account, not on every issuance.
            eab = None
            if acme.eab_kid and acme.eab_hmac is not None:
                eab = self.vault(acme.eab_hmac.vault_url).get_secret(acme.eab_hmac.name, acme.eab_hmac.version,
                                                                    ours=False, deadline=deadline)
            jwk, alg = (key.jwk, key.alg) if isinstance(key, AccountKey) else (key, None)
            # One directory fetch per process and CA: the directory reader's, shared.
            directory = self.directory_client(acme.directory_url).directory_document(deadline=deadline)
            client = AcmeClient(acme.directory_url, jwk, alg=alg, contact=acme.contact, eab_kid=acme.eab_kid,
                                eab_hmac_key=eab, timeout=self.timeout_s, directory=directory,
                                session=self._acme_session(acme.directory_url))
            client.account_url(deadline=deadline)
            return client

        if acme.account_key_kind == "key":
            # Key Vault signs every JWS with this key; only its public half is ever read.
            return self.accounts.get(vault, f"keys/{acme.account_key_name}", acme.directory_url, register,
                                     deadline=deadline,
                                     load=lambda: key_vault_account_key(vault, acme.account_key_name, deadline=deadline))
        from .account import load_or_create_key

        created: list[bool] = []

        def register_new(key: Any) -> AcmeClient:
            try:
                return register(key)
            except KeyVaultAcmeError as e:
                if not created:
                    raise
                # No orphan left unsaid: the key this failed registration created belongs to no account.
                raise with_note(e, f"the ACME account key secret {vault.vault_url}/secrets/{acme.account_key_secret} "
                                   "was created for this registration and no account at the CA uses it: delete it, "
                                   "or keep it and run again once the above is fixed (it is then used)") from e

        return self.accounts.get(vault, acme.account_key_secret, acme.directory_url, register_new, deadline=deadline,
                                 load=lambda: load_or_create_key(vault, acme.account_key_secret, deadline=deadline,
                                                                 created=created))

    def account_key_loaded(self, vault: KeyVault, acme: AcmeAccount) -> bool:
        """Whether this process already loaded (and so vetted) the secret-held account key of ``acme``."""
        return self.accounts.loaded(vault, acme.account_key_secret, acme.directory_url)

    def forget_accounts(self, vault: KeyVault, acme: AcmeAccount) -> None:
        """Drop the cached clients of ``acme``'s account, under both kinds of key (after a key rollover)."""
        self.accounts.forget(vault, acme.account_key_secret, acme.directory_url)
        self.accounts.forget(vault, f"keys/{acme.account_key_name}", acme.directory_url)

    def directory_client(self, directory_url: str) -> AcmeClient:
        """A client only for reading the CA's directory: its throw-away key never registers (preflight and
        checks must create nothing at the CA)."""
        from .account import new_account_key
        from .acme_client import AcmeClient

        session = self._acme_session(directory_url)
        with self._lock:
            client = self._dir_clients.get(directory_url)
            if client is None:
                client = self._dir_clients[directory_url] = AcmeClient(directory_url, new_account_key(),
                                                                       timeout=self.timeout_s, session=session)
            return client

    def _acme_session(self, directory_url: str) -> Any:
        """One HTTP session per CA for this engine: the directory reader and every account's client share its
        connections (a second TLS handshake with the CA cost each process a few milliseconds)."""
        from .acme_client import acme_session

        with self._lock:
            session = self._acme_sessions.get(directory_url)
            if session is None:
                session = self._acme_sessions[directory_url] = acme_session()
            return session

    # -- DNS --------------------------------------------------------------------------------------------

    def providers(self, spec: CertificateSpec, deadline: float) -> dict[str, DnsProvider]:
        """The DNS provider of each of the spec's zones, by zone name."""
        from .acme_client import DNS_PERSIST_01
        from .dns.persist import ReadOnlyZone

        if spec.challenge == DNS_PERSIST_01:  # nothing is written: no provider, no DNS rights, no TSIG key read
            return {zone.name: ReadOnlyZone(spec.propagation_timeout_s) for zone in spec.zones}
        return {zone.name: self.provider(zone, spec, deadline) for zone in spec.zones}

    def provider(self, zone: Zone, spec: CertificateSpec, deadline: float) -> DnsProvider:
        """The zone's provider, as the registry builds it for the zone's type (loaded on first use)."""
        from .dns.registry import provider_for

        return provider_for(zone, self, deadline=deadline, propagation_timeout=spec.propagation_timeout_s)

    def azure_dns(self) -> AzureDnsClients:
        """The Azure DNS clients (one per subscription), shared by every Azure DNS zone."""
        return self._azure_dns()

    def secret(self, ref: SecretRef, field: str, deadline: float) -> str:
        """A secret a zone refers to (TSIG key, API token), read from Key Vault at most every TSIG_CACHE_S."""
        now = time.monotonic()
        with self._lock:
            cached = self._tsig.get(ref.secret_id)
        if cached is not None and now - cached[0] < TSIG_CACHE_S:
            return cached[1]
        value = self.vault(ref.vault_url).get_secret(ref.name, ref.version, ours=False, deadline=deadline)
        if value is None:
            raise SpecError(field, f"the secret {ref.secret_id} does not exist", "store the value in that Key Vault secret")
        with self._lock:
            self._tsig[ref.secret_id] = (now, value)
        return value
