"""Typed, immutable specs and results of the lifecycle engine.

Everything the CLI, the Pulumi provider and the component hand to the engine is one of these frozen
dataclasses; everything the engine hands back is a public fact. No type here can hold a certificate
private key, and secrets (ACME account key, EAB HMAC, TSIG key) appear only as *references* to Key
Vault secrets, never as values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Mapping, Protocol

from .errors import SpecError

RSA_SIZES = (2048, 3072, 4096)
EC_CURVES = ("P-256", "P-384")
# Key Vault's key types: software-protected, or HSM-protected (premium vaults only; never exportable).
KEY_TYPES = ("EC", "RSA", "EC-HSM", "RSA-HSM")
HSM_SUFFIX = "-HSM"

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

REVOCATION_REASONS = MappingProxyType(
    {  # RFC 5280 CRLReason codes that ACME (RFC 8555 7.6) and Let's Encrypt accept.
        "unspecified": 0,
        "keyCompromise": 1,
        "affiliationChanged": 3,
        "superseded": 4,
        "cessationOfOperation": 5,
    }
)


@dataclass(frozen=True)
class KeySpec:
    """The key pair Key Vault generates for the certificate. It never leaves Key Vault unless exportable.

    ``RSA-HSM`` / ``EC-HSM`` keys are made and kept in Key Vault's HSMs (premium vaults only); they are never
    exportable.
    """

    kty: str = "EC"  # "EC", "RSA", "EC-HSM" or "RSA-HSM"
    size: int | None = None  # RSA only: 2048, 3072, 4096
    curve: str | None = None  # EC only: "P-256", "P-384"
    exportable: bool = False

    def __post_init__(self) -> None:
        if self.kty not in KEY_TYPES:
            raise SpecError("key.kty", f"unknown key type {self.kty!r}",
                            "use 'EC' (P-256, P-384) or 'RSA' (2048-4096), or EC-HSM / RSA-HSM in a premium vault")
        if self.family == "RSA":
            object.__setattr__(self, "size", self.size or 2048)
            if self.size not in RSA_SIZES:
                raise SpecError("key.size", f"RSA key size {self.size} is not supported", f"use one of {RSA_SIZES}")
            if self.curve is not None:
                raise SpecError("key.curve", "an RSA key has no curve", f"remove key.curve or set key.kty to {self.kty.replace('RSA', 'EC')}")
        else:
            object.__setattr__(self, "curve", self.curve or "P-256")
            if self.curve not in EC_CURVES:
                raise SpecError("key.curve", f"EC curve {self.curve!r} is not supported", f"use one of {EC_CURVES}")
            if self.size is not None:
                raise SpecError("key.size", "an EC key has no size", f"remove key.size or set key.kty to {self.kty.replace('EC', 'RSA')}")
        if self.hsm and self.exportable:
            raise SpecError("key.exportable", f"a {self.kty} key never leaves the HSM, so it cannot be exportable",
                            f"remove key.exportable, or use key.kty {self.family} for an exportable software key")

    @property
    def family(self) -> str:
        """``EC`` or ``RSA``, whether HSM-protected or not."""
        return self.kty.removesuffix(HSM_SUFFIX)

    @property
    def hsm(self) -> bool:
        return self.kty.endswith(HSM_SUFFIX)

    @property
    def label(self) -> str:
        """The public key's shape (``EC P-256``), as a CSR shows it: HSM protection is not visible there."""
        return f"RSA {self.size}" if self.family == "RSA" else f"EC {self.curve}"

    @property
    def description(self) -> str:
        """The label plus the protection, for logs and the ``acme-key`` tag (``EC P-256 HSM``)."""
        return self.label + (" HSM" if self.hsm else "")


def describe_shape(value: object) -> str:
    """What a possibly secret value looks like, without any of its characters: type, length, URL or not."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    if not value:
        return "an empty string"
    shape = f"a {len(value)}-character string"
    if not value.startswith("https://"):
        return shape + " that is not an https:// URL"
    if "/secrets/" not in value:
        return shape + " without /secrets/<name>"
    return shape + " that is not <vault>.vault.azure.net/secrets/<name>[/<version>]"


@dataclass(frozen=True)
class SecretRef:
    """A reference to a Key Vault secret: ``https://<vault>.vault.azure.net/secrets/<name>[/<version>]``."""

    secret_id: str

    _PATTERN = re.compile(r"https://[a-z0-9-]+\.vault\.azure\.net/secrets/[A-Za-z0-9-]{1,127}(/[0-9a-f]{32})?/?")

    def __post_init__(self) -> None:
        if not self._PATTERN.fullmatch(self.secret_id or ""):
            # Never echo the value: what was given here is often the secret itself (a pasted TSIG key or EAB
            # HMAC), and this message reaches Pulumi check failures, CLI output and CI logs.
            raise SpecError(
                "secret reference",
                f"is not a Key Vault secret id (got {describe_shape(self.secret_id)})",
                "write it as https://<vault>.vault.azure.net/secrets/<name>; never put a secret value in config",
            )

    @property
    def vault_url(self) -> str:
        return self.secret_id.split("/secrets/")[0]

    @property
    def name(self) -> str:
        return self.secret_id.split("/secrets/")[1].strip("/").split("/")[0]

    @property
    def version(self) -> str | None:
        parts = self.secret_id.split("/secrets/")[1].strip("/").split("/")
        return parts[1] if len(parts) > 1 else None


@dataclass(frozen=True)
class AzureDnsZone:
    """An Azure DNS zone, by ARM resource id, so zones in any subscription and resource group work."""

    resource_id: str

    _PATTERN = re.compile(
        r"/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/\s]+)"
        r"/providers/Microsoft\.Network/dns[zZ]ones/(?P<zone>[^/\s]+)",
        re.IGNORECASE,
    )

    def __post_init__(self) -> None:
        if not self._PATTERN.fullmatch(self.resource_id or ""):
            raise SpecError(
                "zones[].resource_id",
                f"{self.resource_id!r} is not an Azure DNS zone resource id",
                "use /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/dnszones/<zone>",
            )

    def _part(self, name: str) -> str:
        m = self._PATTERN.fullmatch(self.resource_id)
        assert m
        return m.group(name)

    @property
    def name(self) -> str:
        return self._part("zone").lower().rstrip(".")

    @property
    def subscription_id(self) -> str:
        return self._part("sub")

    @property
    def resource_group(self) -> str:
        return self._part("rg")

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        return ()  # written with the engine's own Azure identity


@dataclass(frozen=True)
class Rfc2136Zone:
    """A zone on an RFC 2136 server (BIND, PowerDNS, Windows DNS) updated with TSIG."""

    zone: str
    server: str  # "host" or "host:port"
    tsig_key_name: str
    tsig_secret: SecretRef  # the base64 TSIG secret, stored in Key Vault
    tsig_algorithm: str = "hmac-sha256"

    @property
    def name(self) -> str:
        return self.zone.lower().rstrip(".")

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        return (self.tsig_secret,)


@dataclass(frozen=True)
class CloudflareZone:
    """A zone on Cloudflare DNS, written through Cloudflare's API with an API token that may edit its DNS."""

    zone: str
    api_token: SecretRef  # the Cloudflare API token (Zone:Read and DNS:Edit on the zone), stored in Key Vault

    @property
    def name(self) -> str:
        return self.zone.lower().rstrip(".")

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        return (self.api_token,)


class Zone(Protocol):
    """A DNS zone of a spec, of any type the registry knows (:mod:`keyvault_acme.dns.registry`): the built-in
    ones above or a plug-in's frozen dataclass."""

    @property
    def name(self) -> str:
        """The zone's apex: lower case, no trailing dot."""
        ...

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        """The Key Vault secrets its provider reads (a TSIG key, an API token), so the stack can grant them."""
        ...


ACCOUNT_KEY_KINDS = ("secret", "key")
# How the CA validates the names: dns-01 (a TXT value written for each order and removed after it) or
# dns-persist-01 (one long-lived _validation-persist TXT record per name, naming the CA and the account, written
# by the stack: issuance and renewal then write no DNS record at all).
CHALLENGES = ("dns-01", "dns-persist-01")


@dataclass(frozen=True)
class AcmeAccount:
    """Which CA, and which account at it.

    The account key is, by default, a Key Vault secret (a JWK) created on first use and loaded to sign
    (``account_key_kind="secret"``). With ``account_key_kind="key"`` it is a non-exportable Key Vault EC P-256
    key (``account_key_name``) that signs every JWS in place through Key Vault's sign operation: no private
    key in our process.
    """

    directory_url: str = LETS_ENCRYPT
    account_key_secret: str = "acme-account-key"  # secret name in the certificate's vault
    account_key_kind: str = "secret"
    account_key_name: str = "acme-account-key"  # key name in the certificate's vault (kind "key")
    contact: tuple[str, ...] = ()  # e-mail addresses, without "mailto:"
    eab_kid: str | None = None
    eab_hmac: SecretRef | None = None
    # CAs this stack used before directory_url: versions they issued are revoked there, and nowhere else is.
    previous_directories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "previous_directories", tuple(self.previous_directories))
        for i, url in enumerate(self.previous_directories):
            if not isinstance(url, str) or not url.startswith("https://"):
                raise SpecError(f"acme.previous_directories[{i}]", f"{str(url)[:200]!r} is not an https URL",
                                "list the ACME directory URLs (https://...) of CAs this stack used before")

    def trusted_directories(self) -> tuple[str, ...]:
        """Where revocation may go: the configured CA and the ones configured as used before."""
        return (self.directory_url, *self.previous_directories)


@dataclass(frozen=True)
class RenewalPolicy:
    """When a certificate becomes due. Exactly one of the two may be set; default: 1/3 of lifetime left."""

    days_before_expiry: float | None = None
    fraction_remaining: float | None = None

    def __post_init__(self) -> None:
        if self.days_before_expiry is not None and self.fraction_remaining is not None:
            raise SpecError("renewal", "both days_before_expiry and fraction_remaining are set", "set only one of them")
        if self.days_before_expiry is not None and self.days_before_expiry <= 0:
            raise SpecError("renewal.days_before_expiry", "must be positive", "e.g. 30 for a 90-day certificate")
        if self.fraction_remaining is not None and not 0 < self.fraction_remaining < 1:
            raise SpecError("renewal.fraction_remaining", "must be between 0 and 1", "e.g. 0.33 renews with a third left")


@dataclass(frozen=True)
class CertificateSpec:
    """Everything needed to issue, renew or revoke one Key Vault certificate."""

    vault_url: str
    name: str
    dns_names: tuple[str, ...]
    zones: tuple[Zone, ...]
    acme: AcmeAccount = AcmeAccount()
    key: KeySpec = KeySpec()
    profile: str | None = None
    preferred_chain: str | None = None
    renewal: RenewalPolicy = RenewalPolicy()
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Resolvers to check propagation with instead of the zone's authoritative servers ("host" or "host:port").
    resolvers: tuple[str, ...] = ()
    propagation_timeout_s: float = 300.0
    challenge: str = "dns-01"  # one of CHALLENGES
    persist_until: int | None = None  # dns-persist-01: the records' persistUntil (Unix time), None: no end

    def __post_init__(self) -> None:
        if self.challenge not in CHALLENGES:
            raise SpecError("challenge", f"{self.challenge!r} is not a supported challenge",
                            f"use {' or '.join(CHALLENGES)}")
        if self.persist_until is not None and self.challenge != "dns-persist-01":
            raise SpecError("persist_until", "applies to dns-persist-01 records only",
                            "remove persist_until, or set challenge: dns-persist-01")
        object.__setattr__(self, "dns_names", tuple(self.dns_names))
        object.__setattr__(self, "zones", tuple(self.zones))
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))


@dataclass(frozen=True)
class CertificateFacts:
    """Public facts about one Key Vault certificate version. Safe for Pulumi state, logs and output."""

    id: str  # versionless: https://<vault>.vault.azure.net/certificates/<name>
    versioned_id: str
    secret_id: str  # versionless: what App Gateway, Front Door and App Service should reference
    versioned_secret_id: str
    version: str
    thumbprint: str  # SHA-1 of the DER certificate, upper-case hex, as the Azure portal shows it
    serial: str  # lower-case hex
    not_before: datetime
    not_after: datetime
    issuer: str
    names: tuple[str, ...]
    pem_chain: str  # leaf first, public certificates only
    enabled: bool = True
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    revoked_reason: str | None = None  # set when we revoked it (recorded in tags)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))


@dataclass(frozen=True)
class RevokedFacts(CertificateFacts):
    """What :meth:`Engine.revoke` returns: the version's facts, and whether the CA had revoked it before this
    call (then ``revoked_reason`` is the reason recorded at that first revocation, kept as the CA has it)."""

    already_revoked: bool = False


@dataclass(frozen=True)
class CheckResult:
    """One finding of ``Engine.check``: which step, whether it passed, what was seen, and what to do if not."""

    step: str  # one of keyvault_acme.checks.STEPS
    ok: bool
    detail: str
    fix: str = ""
