"""The Certificate resource's state: which properties are inputs, which are facts, and how they convert.

Pulumi keeps one flat property bag per resource. Ours is the checked inputs (the shared dict shape of
:mod:`keyvault_acme.config` plus :data:`PROVIDER_INPUTS`) followed by the public facts about the
current Key Vault certificate version. Facts map field by field from
:class:`keyvault_acme.model.CertificateFacts`, so a fact the engine adds later (an ARI window, the
ACME profile used) becomes an output without touching this module. Dates are ISO 8601 strings.
Nothing here may hold a private key or a secret value: ``CertificateFacts`` cannot.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Mapping

from keyvault_acme.access import azure_time
from keyvault_acme.model import REVOCATION_REASONS, CertificateFacts, CertificateSpec
from keyvault_acme.renewal import ari_from_tags, due_at

# Inputs only the resource has: what ``pulumi destroy`` does to the certificate, and when the role
# assignments it needs were made (ISO 8601; a 403 until they surely apply is waited out, see keyvault_acme.access).
PROVIDER_INPUTS: Mapping[str, Any] = {
    "revoke_on_delete": True,
    "revoke_reason": "cessationOfOperation",
    "purge_on_delete": False,
    "access_granted_at": None,
}
# Inputs that inform an operation but are no part of what the certificate is: never a change to plan.
ADVISORY_INPUTS = frozenset({"access_granted_at"})

# CertificateFacts fields renamed: Pulumi reserves ``id``, and ``tags`` is an input. The Key Vault tags
# say what a version was issued with (CA, profile, key), which the renewal decision compares.
_RENAMED = {"id": "certificate_id", "versioned_id": "versioned_certificate_id", "tags": "vault_tags"}
_FACT_FIELDS = {f.name: f for f in dataclasses.fields(CertificateFacts)}

FACT_OUTPUTS = tuple(_RENAMED.get(name, name) for name in _FACT_FIELDS)
OUTPUTS = FACT_OUTPUTS + ("renew_after",)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def facts_to_outputs(facts: CertificateFacts, spec: CertificateSpec) -> dict[str, Any]:
    outs = {_RENAMED.get(name, name): _plain(getattr(facts, name)) for name in _FACT_FIELDS}
    # The moment the renewal decision turns: inside the CA's ARI window when the version's tags cache one.
    ari = ari_from_tags(facts.tags)
    outs["renew_after"] = due_at(facts, spec, ari.window if ari else None).isoformat()
    return outs


def facts_from_outputs(outputs: Mapping[str, Any]) -> CertificateFacts | None:
    """The facts recorded in state, or None when there are none (a state written before issuance)."""
    values: dict[str, Any] = {}
    for name, f in _FACT_FIELDS.items():
        key = _RENAMED.get(name, name)
        if key not in outputs:
            continue
        value = outputs[key]
        if isinstance(value, str) and "datetime" in str(f.type):
            value = datetime.fromisoformat(value)
        values[name] = value
    try:
        return CertificateFacts(**values)
    except TypeError:  # a required fact is missing
        return None


def split_state(props: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs part of a property bag (old outputs or new inputs), without Pulumi's own keys."""
    return {k: v for k, v in props.items() if k not in OUTPUTS and not k.startswith("__")}


def provider_settings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The provider-only inputs, defaults filled in."""
    return {k: default if inputs.get(k) is None else inputs[k] for k, default in PROVIDER_INPUTS.items()}


def check_provider_settings(settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, problem and fix) for each bad provider-only input."""
    failures = []
    for key in ("revoke_on_delete", "purge_on_delete"):
        if not isinstance(settings[key], bool):
            failures.append((key, f"{settings[key]!r} is not a boolean; write true or false"))
    reason = settings["revoke_reason"]
    if reason not in REVOCATION_REASONS:
        failures.append(("revoke_reason", f"{reason!r} is not a revocation reason; use one of "
                                          f"{', '.join(REVOCATION_REASONS)}"))
    granted = settings["access_granted_at"]
    if granted is not None and access_granted_at(settings) is None:
        failures.append(("access_granted_at", f"{granted!r} is not an ISO 8601 time with a UTC offset; "
                                              "pass the role assignments' createdOn, e.g. 2026-11-26T09:30:00Z"))
    return failures


def access_granted_at(settings: Mapping[str, Any]) -> datetime | None:
    """The ``access_granted_at`` setting as a time; None when unset or unreadable."""
    return azure_time(settings.get("access_granted_at"))
