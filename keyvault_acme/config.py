"""One parser from plain data (stack config, provider inputs, CLI) to the engine's typed specs.

The same dict shape is a certificate entry in a stack file, the inputs of the Pulumi ``Certificate``
resource and what the CLI reads, so a field means the same thing everywhere and errors name it the
same way. Errors name the field and the fix; nothing is created before parsing succeeds.
"""
from __future__ import annotations

from typing import Any, Mapping

from .errors import SpecError
from .model import (
    AcmeAccount,
    AzureDnsZone,
    CertificateSpec,
    KeySpec,
    RenewalPolicy,
    Rfc2136Zone,
    SecretRef,
    Zone,
)

_SPEC_KEYS = {
    "vault_url", "name", "dns_names", "zones", "acme", "key", "profile", "preferred_chain",
    "renewal", "tags", "resolvers", "propagation_timeout_s",
}


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    value = data.get(key)
    if value in (None, "", [], ()):
        raise SpecError(f"{where}{key}", "is required", f"set {where}{key} in the stack config or resource inputs")
    return value


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(field, f"must be a list of strings, got {type(value).__name__}", f"write {field}: [a, b]")
    for item in value:
        if not isinstance(item, str):
            raise SpecError(field, f"{item!r} is not a string", "quote every entry")
    return tuple(value)


def _number(value: Any, field: str) -> float:
    # Pulumi hands numbers back as floats (#13830); YAML may hand them as strings.
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpecError(field, f"{value!r} is not a number", f"write {field} as a number") from None


def secret_ref_from(value: Any, field: str) -> SecretRef:
    if not isinstance(value, str):
        raise SpecError(field, "must be a Key Vault secret id", "https://<vault>.vault.azure.net/secrets/<name>")
    try:
        return SecretRef(value)
    except SpecError as e:
        raise SpecError(field, e.problem, e.fix) from None


def zone_from_dict(data: Mapping[str, Any], field: str = "zones[]") -> Zone:
    if not isinstance(data, Mapping):
        raise SpecError(field, "must be a mapping", "give resource_id (Azure DNS) or zone/server/tsig_* (RFC 2136)")
    if "resource_id" in data:
        try:
            return AzureDnsZone(str(data["resource_id"]))
        except SpecError as e:
            raise SpecError(f"{field}.resource_id", e.problem, e.fix) from None
    if "server" in data:
        return Rfc2136Zone(
            zone=str(_require(data, "zone", f"{field}.")),
            server=str(data["server"]),
            tsig_key_name=str(_require(data, "tsig_key_name", f"{field}.")),
            tsig_secret=secret_ref_from(_require(data, "tsig_secret", f"{field}."), f"{field}.tsig_secret"),
            tsig_algorithm=str(data.get("tsig_algorithm") or "hmac-sha256"),
        )
    raise SpecError(field, "is neither an Azure DNS zone nor an RFC 2136 zone",
                    "give resource_id, or zone + server + tsig_key_name + tsig_secret")


def key_from_dict(data: Mapping[str, Any] | None) -> KeySpec:
    data = data or {}
    size = data.get("size")
    return KeySpec(
        kty=str(data.get("kty", "EC")).upper(),
        size=int(_number(size, "key.size")) if size is not None else None,
        curve=data.get("curve"),
        exportable=bool(data.get("exportable", False)),
    )


def acme_from_dict(data: Mapping[str, Any] | None) -> AcmeAccount:
    data = data or {}
    kwargs: dict[str, Any] = {}
    if data.get("directory_url"):
        url = str(data["directory_url"])
        if not url.startswith("https://"):
            raise SpecError("acme.directory_url", f"{url!r} is not an https URL", "use the CA's ACME directory URL")
        kwargs["directory_url"] = url
    if data.get("account_key_secret"):
        kwargs["account_key_secret"] = str(data["account_key_secret"])
    if data.get("contact"):
        kwargs["contact"] = _strings(data["contact"], "acme.contact")
    if data.get("eab_kid"):
        kwargs["eab_kid"] = str(data["eab_kid"])
        kwargs["eab_hmac"] = secret_ref_from(_require(data, "eab_hmac", "acme."), "acme.eab_hmac")
    return AcmeAccount(**kwargs)


def renewal_from_dict(data: Mapping[str, Any] | None) -> RenewalPolicy:
    data = data or {}
    days, fraction = data.get("days_before_expiry"), data.get("fraction_remaining")
    return RenewalPolicy(
        days_before_expiry=_number(days, "renewal.days_before_expiry") if days is not None else None,
        fraction_remaining=_number(fraction, "renewal.fraction_remaining") if fraction is not None else None,
    )


def certificate_spec_from_dict(data: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None) -> CertificateSpec:
    """Parse one certificate's settings; ``defaults`` (e.g. the workload's zones and CA) fill what is missing."""
    merged = {**(defaults or {}), **{k: v for k, v in data.items() if v is not None}}
    unknown = set(merged) - _SPEC_KEYS
    if unknown:
        raise SpecError(", ".join(sorted(unknown)), "unknown setting", f"use only {', '.join(sorted(_SPEC_KEYS))}")
    name = str(_require(merged, "name", ""))
    vault_url = str(_require(merged, "vault_url", "")).rstrip("/")
    if not vault_url.startswith("https://"):
        raise SpecError("vault_url", f"{vault_url!r} is not an https URL", "use https://<vault>.vault.azure.net")
    zones = merged.get("zones") or ()
    if not isinstance(zones, (list, tuple)):
        raise SpecError("zones", "must be a list", "list each zone as a mapping")
    tags = merged.get("tags") or {}
    if not isinstance(tags, Mapping):
        raise SpecError("tags", "must be a mapping of strings", "write tags: {team: web}")
    return CertificateSpec(
        vault_url=vault_url,
        name=name,
        dns_names=_strings(_require(merged, "dns_names", ""), "dns_names"),
        zones=tuple(zone_from_dict(z, f"zones[{i}]") for i, z in enumerate(zones)),
        acme=acme_from_dict(merged.get("acme")),
        key=key_from_dict(merged.get("key")),
        profile=merged.get("profile") or None,
        preferred_chain=merged.get("preferred_chain") or None,
        renewal=renewal_from_dict(merged.get("renewal")),
        tags={str(k): str(v) for k, v in tags.items()},
        resolvers=_strings(merged.get("resolvers") or [], "resolvers"),
        propagation_timeout_s=_number(merged.get("propagation_timeout_s", 300), "propagation_timeout_s"),
    )


def spec_to_dict(spec: CertificateSpec) -> dict[str, Any]:
    """The inverse of :func:`certificate_spec_from_dict`: plain data for Pulumi inputs and stack files."""

    def zone(z: Zone) -> dict[str, Any]:
        if isinstance(z, AzureDnsZone):
            return {"resource_id": z.resource_id}
        return {"zone": z.zone, "server": z.server, "tsig_key_name": z.tsig_key_name,
                "tsig_secret": z.tsig_secret.secret_id, "tsig_algorithm": z.tsig_algorithm}

    acme: dict[str, Any] = {"directory_url": spec.acme.directory_url, "account_key_secret": spec.acme.account_key_secret}
    if spec.acme.contact:
        acme["contact"] = list(spec.acme.contact)
    if spec.acme.eab_kid:
        acme["eab_kid"] = spec.acme.eab_kid
        acme["eab_hmac"] = spec.acme.eab_hmac.secret_id if spec.acme.eab_hmac else None
    key: dict[str, Any] = {"kty": spec.key.kty, "exportable": spec.key.exportable}
    key.update({"size": spec.key.size} if spec.key.kty == "RSA" else {"curve": spec.key.curve})
    out: dict[str, Any] = {
        "vault_url": spec.vault_url, "name": spec.name, "dns_names": list(spec.dns_names),
        "zones": [zone(z) for z in spec.zones], "acme": acme, "key": key,
        "tags": dict(spec.tags), "propagation_timeout_s": spec.propagation_timeout_s,
    }
    if spec.profile:
        out["profile"] = spec.profile
    if spec.preferred_chain:
        out["preferred_chain"] = spec.preferred_chain
    renewal = {k: v for k, v in (("days_before_expiry", spec.renewal.days_before_expiry),
                                  ("fraction_remaining", spec.renewal.fraction_remaining)) if v is not None}
    if renewal:
        out["renewal"] = renewal
    if spec.resolvers:
        out["resolvers"] = list(spec.resolvers)
    return out
