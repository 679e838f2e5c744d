"""One parser from plain data (stack config, provider inputs, CLI) to the engine's typed specs.

The same dict shape is a certificate entry in a stack file, the inputs of the Pulumi ``Certificate``
resource and what the CLI reads, so a field means the same thing everywhere and errors name it the
same way. Errors name the field and the fix; nothing is created before parsing succeeds.
"""
from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import fields
from datetime import datetime
from typing import Any, Mapping

from .errors import SpecError, shown
from .model import (
    ACCOUNT_KEY_KINDS,
    REVOCATION_REASONS,
    AcmeAccount,
    CertificateSpec,
    KeySpec,
    RenewalPolicy,
    SecretRef,
    Zone,
    describe_shape,
)

_SPEC_KEYS = {
    "vault_url", "name", "dns_names", "zones", "acme", "key", "profile", "preferred_chain",
    "renewal", "tags", "resolvers", "propagation_timeout_s", "challenge", "persist_until",
}
# The settings of each nested mapping; anything else is refused by name (``key: {curv: P-384}`` must not
# silently become P-256).
KEY_SETTINGS = tuple(f.name for f in fields(KeySpec))
RENEWAL_SETTINGS = tuple(f.name for f in fields(RenewalPolicy))
ACME_SETTINGS = ("directory_url", "account_key_secret", "account_key", "contact", "eab_kid", "eab_hmac",
                 "previous_directories")
ACCOUNT_KEY_SETTINGS = ("kind", "name")
MAX_PROPAGATION_S = 3600.0
MAX_DAYS_BEFORE_EXPIRY = 3650.0  # ten years: beyond any certificate an ACME CA issues
# The TSIG algorithms dnspython signs with (RFC 8945 names); HMAC-MD5 is deprecated and left out.
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")

_EMAIL = re.compile(r"[^@\s:]+@[^@\s]+\.[^@\s]+")
_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


# ---------------------------------------------------------------------------------------------- shared parsers
# Plain values arrive from YAML stack files, Pulumi config (structured values, numbers as floats) and
# provider inputs alike; these are the one way each kind of value is read, here and in keyvault_acme_stack.


def require(data: Mapping[str, Any], key: str, where: str) -> Any:
    value = data.get(key)
    if value in (None, "", [], ()):
        raise SpecError(f"{where}{key}", "is required", f"set {where}{key} in the stack config or resource inputs")
    return value


def boolean(value: Any, field: str, default: bool) -> bool:
    """``true``/``false`` as YAML booleans or strings (Pulumi config hands ``"false"``); nothing else.

    ``bool("false")`` is True, so a quoted false must never reach ``bool()``.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SpecError(field, f"{shown(value)} is not true or false", f"write {field}: true or {field}: false")


def settings(value: Any, field: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """A mapping of known settings ({} when absent); unknown keys are refused, naming them and the accepted ones."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(field, f"must be a mapping, got {type(value).__name__}", f"write {field} with keys {', '.join(allowed)}")
    unknown = sorted(str(k) for k in set(value) - set(allowed))
    if unknown:
        problem = "unknown setting" if len(unknown) == 1 else f"unknown settings {', '.join(unknown)}"
        raise SpecError(f"{field}.{unknown[0]}", problem, f"use only {', '.join(allowed)}")
    return value


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(field, f"must be a list of strings, got {type(value).__name__}", f"write {field}: [a, b]")
    for item in value:
        if not isinstance(item, str):
            raise SpecError(field, f"{shown(item)} is not a string", "quote every entry")
    return tuple(value)


def _number(value: Any, field: str, *, low: float | None = None, high: float | None = None) -> float:
    """A finite number within [low, high] (either end optional). ``true`` is no number, though Python counts it as 1."""
    # Pulumi hands numbers back as floats (#13830); YAML may hand them as strings.
    if isinstance(value, bool):
        raise SpecError(field, f"{value!r} is a boolean, not a number", f"write {field} as a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(field, f"{shown(value)} is not a number", f"write {field} as a number") from None
    if not math.isfinite(number):
        raise SpecError(field, f"{shown(value)} is not a finite number", f"write {field} as a number")
    if (low is not None and number < low) or (high is not None and number > high):
        span = f"from {low:g} to {high:g}" if low is not None and high is not None else \
            (f"of at least {low:g}" if low is not None else f"of at most {high:g}")
        raise SpecError(field, f"{shown(value)} is out of range", f"write {field} as a number {span}")
    return number


def email(value: Any, field: str) -> str:
    """An e-mail address as ACME contacts and alert receivers take it (no ``mailto:``: the engine adds it)."""
    text = value if isinstance(value, str) else ""
    if text.lower().startswith("mailto:"):
        raise SpecError(field, f"{text!r} starts with mailto:", f"write the bare address, {text[len('mailto:'):]}")
    if not _EMAIL.fullmatch(text):
        raise SpecError(field, f"{shown(value)} is not an e-mail address", "write name@example.com")
    return text


def server_address(value: Any, field: str) -> str:
    """A DNS server as ``host``, ``host:port``, ``[IPv6]:port`` or a bare IPv6 address; returned unchanged.

    The host is an IPv4 or IPv6 address or a host name; the port 1-65535 (53 when left out).
    """
    fix = f"write {field} as host or host:port, e.g. 10.0.0.53, ns1.example.com:53 or [2001:db8::53]:53"
    text = value.strip() if isinstance(value, str) else ""
    port: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise SpecError(field, f"{value!r} is not a server address", fix)
        port = rest[1:] if rest else None
        address = _ip(host)
        if address is None or address.version != 6:
            raise SpecError(field, f"{value!r}: {host!r} in brackets is not an IPv6 address", fix)
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address (its port cannot be told apart without brackets)
        if _ip(host) is None:
            raise SpecError(field, f"{value!r} is not an IPv6 address", fix)
    else:
        host, _, port = text.partition(":")
        port = port if ":" in text else None
        if _ip(host) is None and not _hostname(host):
            raise SpecError(field, f"{value!r}: {host!r} is not an IP address or host name", fix)
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise SpecError(field, f"{value!r}: port {port!r} is not a number from 1 to 65535", fix)
    return text


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _hostname(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    # A dotted all-numeric string (999.1.1.1) is a bad IPv4 address, not a host name.
    return (0 < len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
            and not all(label.isdigit() for label in labels))


def revocation_reason(value: Any, field: str, default: str) -> str:
    reason = default if value in (None, "") else value
    if reason not in REVOCATION_REASONS:
        raise SpecError(field, f"{shown(reason)} is not a revocation reason", f"use one of {', '.join(REVOCATION_REASONS)}")
    return str(reason)


# ---------------------------------------------------------------------------------------------- spec parts


def secret_ref_from(value: Any, field: str) -> SecretRef:
    # No error here or in SecretRef quotes the value: it may be the secret itself, pasted by mistake.
    if not isinstance(value, str):
        raise SpecError(field, f"must be a Key Vault secret id, got {describe_shape(value)}",
                        "https://<vault>.vault.azure.net/secrets/<name>")
    try:
        return SecretRef(value)
    except SpecError as e:
        raise SpecError(field, e.problem, e.fix) from None


def zone_from_dict(data: Mapping[str, Any], field: str = "zones[]") -> Zone:
    """One zone: ``type`` names its kind (azure, rfc2136, cloudflare, or a plug-in's, see
    :mod:`keyvault_acme.dns.registry`); without it, resource_id means Azure DNS and server means RFC 2136, as
    before ``type`` existed. A setting the kind does not have is refused by name."""
    from .dns import registry  # the registry's built-in types parse with this module's helpers

    if not isinstance(data, Mapping):
        raise SpecError(field, "must be a mapping", "give type and its settings, e.g. resource_id for an Azure DNS zone")
    registered = registry.known(plugins=False)  # no scan for plug-ins: a zone naming none needs none
    if "type" in data:
        kind = registry.named(str(data["type"]))
        if kind is None:
            names = ", ".join(t.name for t in registry.known())
            raise SpecError(f"{field}.type", f"{shown(data['type'])} is not a zone type", f"use one of {names}")
        implied = None
    else:
        implied = next((t for t in registered if t.implied_by in data), None)
        if implied is None:
            # Only the two types older than ``type`` are implied by a setting.
            raise SpecError(field, "has no type and is neither an Azure DNS zone (resource_id) nor an RFC 2136 zone "
                            "(server)", f"give type: one of {', '.join(t.name for t in registry.known())}, "
                            "with its settings")
        kind = implied
    settings = {k: v for k, v in data.items() if k != "type"}
    for key in sorted(settings):
        if key in kind.settings:
            continue
        other = next((t for t in registered if t is not kind and key in t.settings), None)
        if implied is not None and other is not None:
            raise SpecError(f"{field}.{key}", f"does not go with {implied.implied_by}: a zone is either "
                            f"{implied.described} or {other.described}, not both",
                            f"keep only {implied.implied_by}, or remove it for {other.described}")
        raise SpecError(f"{field}.{key}", f"is not a setting of {kind.described}",
                        f"give only {', '.join(kind.settings)}")
    return kind.parse(settings, field)


def key_from_dict(data: Mapping[str, Any] | None) -> KeySpec:
    data = settings(data, "key", KEY_SETTINGS)
    size = data.get("size")
    return KeySpec(
        kty=str(data.get("kty", "EC")).upper().replace("_", "-"),
        size=int(_number(size, "key.size", low=1, high=16384)) if size is not None else None,
        curve=data.get("curve"),
        exportable=boolean(data.get("exportable"), "key.exportable", False),
    )


def acme_from_dict(data: Mapping[str, Any] | None) -> AcmeAccount:
    data = settings(data, "acme", ACME_SETTINGS)
    kwargs: dict[str, Any] = {}
    if data.get("directory_url"):
        url = str(data["directory_url"])
        if not url.startswith("https://"):
            raise SpecError("acme.directory_url", f"{url!r} is not an https URL", "use the CA's ACME directory URL")
        kwargs["directory_url"] = url
    if data.get("account_key_secret"):
        name = data["account_key_secret"]
        if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
            # A name, not the key: if a PEM was pasted here, it must not be echoed either.
            raise SpecError("acme.account_key_secret", f"is not a Key Vault secret name (got {describe_shape(name)})",
                            "give the secret's name (1-127 letters, digits and hyphens), e.g. acme-account-key")
        kwargs["account_key_secret"] = name
    if data.get("account_key") is not None:
        key = settings(data["account_key"], "acme.account_key", ACCOUNT_KEY_SETTINGS)
        kind = key.get("kind") or "secret"
        if kind not in ACCOUNT_KEY_KINDS:
            raise SpecError("acme.account_key.kind", f"{kind!r} is not an account key kind",
                            "use secret (a JWK in a Key Vault secret, the default) or key (a Key Vault key that "
                            "signs in place)")
        kwargs["account_key_kind"] = kind
        if key.get("name"):
            name = key["name"]
            if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
                raise SpecError("acme.account_key.name", f"is not a Key Vault key name (got {describe_shape(name)})",
                                "give the key's name (1-127 letters, digits and hyphens), e.g. acme-account-key")
            if kind != "key":
                raise SpecError("acme.account_key.name", "names a Key Vault key, used only with kind: key",
                                "set acme.account_key.kind: key, or name the secret in acme.account_key_secret")
            kwargs["account_key_name"] = name
    if data.get("contact"):
        contacts = _strings(data["contact"], "acme.contact")
        kwargs["contact"] = tuple(email(c, f"acme.contact[{i}]") for i, c in enumerate(contacts))
    if data.get("eab_kid"):
        kwargs["eab_kid"] = str(data["eab_kid"])
        kwargs["eab_hmac"] = secret_ref_from(require(data, "eab_hmac", "acme."), "acme.eab_hmac")
    if data.get("previous_directories"):
        kwargs["previous_directories"] = _strings(data["previous_directories"], "acme.previous_directories")
    return AcmeAccount(**kwargs)


def renewal_from_dict(data: Mapping[str, Any] | None) -> RenewalPolicy:
    data = settings(data, "renewal", RENEWAL_SETTINGS)
    days, fraction = data.get("days_before_expiry"), data.get("fraction_remaining")
    return RenewalPolicy(
        days_before_expiry=_number(days, "renewal.days_before_expiry", high=MAX_DAYS_BEFORE_EXPIRY)
        if days is not None else None,
        fraction_remaining=_number(fraction, "renewal.fraction_remaining") if fraction is not None else None,
    )


def certificate_spec_from_dict(data: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None) -> CertificateSpec:
    """Parse one certificate's settings; ``defaults`` (e.g. the workload's zones and CA) fill what is missing."""
    merged = {**(defaults or {}), **{k: v for k, v in data.items() if v is not None}}
    unknown = set(merged) - _SPEC_KEYS
    if unknown:
        raise SpecError(", ".join(sorted(unknown)), "unknown setting", f"use only {', '.join(sorted(_SPEC_KEYS))}")
    name = str(require(merged, "name", ""))
    vault_url = str(require(merged, "vault_url", "")).rstrip("/")
    if not vault_url.startswith("https://"):
        raise SpecError("vault_url", f"{vault_url!r} is not an https URL", "use https://<vault>.vault.azure.net")
    zones = merged.get("zones") or ()
    if not isinstance(zones, (list, tuple)):
        raise SpecError("zones", "must be a list", "list each zone as a mapping")
    tags = merged.get("tags") or {}
    if not isinstance(tags, Mapping):
        raise SpecError("tags", "must be a mapping of strings", "write tags: {team: web}")
    # Propagation is checked within one operation's deadline: more than an hour is a typo (or 1e300).
    timeout = _number(merged.get("propagation_timeout_s", 300), "propagation_timeout_s", high=MAX_PROPAGATION_S)
    if timeout <= 0:
        raise SpecError("propagation_timeout_s", f"{timeout:g} is not a positive number of seconds",
                        "give the seconds to wait for DNS propagation, e.g. 300")
    resolvers = _strings(merged.get("resolvers") or [], "resolvers")
    challenge = merged.get("challenge") or "dns-01"
    if not isinstance(challenge, str):
        raise SpecError("challenge", f"must be a string, got {type(challenge).__name__}", "write dns-01 or dns-persist-01")
    return CertificateSpec(
        vault_url=vault_url,
        name=name,
        dns_names=_strings(require(merged, "dns_names", ""), "dns_names"),
        zones=tuple(zone_from_dict(z, f"zones[{i}]") for i, z in enumerate(zones)),
        acme=acme_from_dict(merged.get("acme")),
        key=key_from_dict(merged.get("key")),
        profile=merged.get("profile") or None,
        preferred_chain=merged.get("preferred_chain") or None,
        renewal=renewal_from_dict(merged.get("renewal")),
        tags={str(k): str(v) for k, v in tags.items()},
        resolvers=tuple(server_address(r, f"resolvers[{i}]") for i, r in enumerate(resolvers)),
        propagation_timeout_s=timeout,
        challenge=challenge,
        persist_until=persist_until(merged.get("persist_until")),
    )


def persist_until(value: Any) -> int | None:
    """``persist_until`` as Unix time: a number of seconds, or an ISO 8601 date-time with a time zone."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SpecError("persist_until", f"{value!r} is not a date-time",
                            "write an ISO 8601 date-time with its zone, e.g. 2027-12-31T00:00:00Z") from None
    else:
        return int(_number(value, "persist_until"))
    if when.tzinfo is None:
        raise SpecError("persist_until", f"{value!r} has no time zone", "add one, e.g. 2027-12-31T00:00:00Z")
    return int(when.timestamp())


def spec_to_dict(spec: CertificateSpec) -> dict[str, Any]:
    """The inverse of :func:`certificate_spec_from_dict`: plain data for Pulumi inputs and stack files."""

    from .dns.registry import zone_type

    def zone(z: Zone) -> dict[str, Any]:
        kind = zone_type(z)
        # A kind that a setting implies is written without ``type``, as before it existed: existing
        # resources' inputs stay the same.
        return kind.to_dict(z) if kind.implied_by else {"type": kind.name, **kind.to_dict(z)}

    acme: dict[str, Any] = {"directory_url": spec.acme.directory_url, "account_key_secret": spec.acme.account_key_secret}
    if spec.acme.account_key_kind != "secret":  # absent for the default: existing resources' inputs stay the same
        acme["account_key"] = {"kind": spec.acme.account_key_kind, "name": spec.acme.account_key_name}
    if spec.acme.contact:
        acme["contact"] = list(spec.acme.contact)
    if spec.acme.eab_kid:
        acme["eab_kid"] = spec.acme.eab_kid
        acme["eab_hmac"] = spec.acme.eab_hmac.secret_id if spec.acme.eab_hmac else None
    if spec.acme.previous_directories:
        acme["previous_directories"] = list(spec.acme.previous_directories)
    key: dict[str, Any] = {"kty": spec.key.kty, "exportable": spec.key.exportable}
    key.update({"size": spec.key.size} if spec.key.family == "RSA" else {"curve": spec.key.curve})
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
    if spec.challenge != "dns-01":  # absent for the default: existing resources' inputs stay the same
        out["challenge"] = spec.challenge
    if spec.persist_until is not None:
        out["persist_until"] = spec.persist_until
    return out
