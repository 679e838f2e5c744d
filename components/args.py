"""``CertificateWorkloadArgs``: the component's inputs, typed, taking other resources' outputs where Azure can.

A platform team's program passes values it has (strings, lists) and values other resources will have
(an Application Gateway identity's ``principal_id``, a webhook URL read with ``require_secret``). Both go
through the one stack-model parser the stack files use (``parse_workload_config``), so a bad value that is
known when the program runs fails at preview, before anything is registered, as strictly as a stack file.

Which fields may be outputs: the ones :data:`LATE_FIELDS` lists -- values that end up only in Azure resource
properties. Everything else decides which resources exist and what they are called (names, zones,
certificates, the allowlist), so it must be known when the program runs; an output there is refused with the
field's name. While an output is unknown the parser sees a placeholder of the right shape
(:func:`_placeholder`); once known, the real value is parsed again in place of the placeholder (an ``apply``),
so the same rules name the same field.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pulumi

from keyvault_acme.errors import SpecError
from keyvault_acme_stack.workload import (
    KEYS,
    NAMESPACE,
    WorkloadConfig,
    parse_workload_config,
    read_stack_file,
    stack_config_values,
)

# Fields (paths as the parser names them) whose value may be a pulumi.Output, and the shape of their placeholder.
LATE_FIELDS: Mapping[str, str] = {
    r"issuer\.principal_id": "guid",
    r"issuer\.client_id": "guid",
    r"consumers\[\d+\]\.principal_id": "guid",
    r"alerts\.webhooks\[\d+\]\.uri": "url",
}
_PLACEHOLDER_SUFFIX = ".late-input.invalid"


@dataclass(frozen=True)
class ConsumerArgs:
    """An identity that reads the certificates as secrets (App Gateway, Front Door, an app)."""

    name: str
    principal_id: pulumi.Input[str]  # e.g. an azure-native UserAssignedIdentity's principal_id output
    principal_type: str = "ServicePrincipal"


@dataclass(frozen=True)
class IssuerArgs:
    """The identity that issues and renews: a new one by name (default), or an existing one by its two ids."""

    name: str | None = None
    principal_id: pulumi.Input[str] | None = None
    client_id: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class WebhookArgs:
    """A Teams/Slack/other webhook. Its URL is a credential: it is always a secret in state, whatever you pass."""

    name: str
    uri: pulumi.Input[str]


@dataclass(frozen=True)
class AlertsArgs:
    emails: Sequence[str | Mapping[str, str]] = ()
    webhooks: Sequence[WebhookArgs | Mapping[str, Any]] = ()


@dataclass(frozen=True)
class CertificateWorkloadArgs:
    """Everything one workload needs in one environment; the fields are the stack file's ``keyvault-acme:*`` keys.

    Mappings have the stack file's shapes (docs/configuration.md). Build one directly, or from a stack file
    (:meth:`from_stack_file`) or from the stack's config (:meth:`from_config`).
    """

    workload: str
    environment: str
    location: str
    subscription_id: str
    tenant_id: str | None = None
    production: bool | None = None
    resource_group: Mapping[str, Any] | None = None
    vault: Mapping[str, Any] | None = None
    monitoring: Mapping[str, Any] | None = None
    zones: Sequence[Mapping[str, Any]] = ()
    issuer: IssuerArgs | Mapping[str, Any] | None = None
    consumers: Sequence[ConsumerArgs | Mapping[str, Any]] = ()
    grant_roles: bool | None = None
    alerts: AlertsArgs | Mapping[str, Any] | None = None
    allowlist: Mapping[str, Any] | None = None
    acme: Mapping[str, Any] | None = None
    certificates: Sequence[Mapping[str, Any]] = ()
    tags: Mapping[str, str] | None = None
    renewer: Mapping[str, Any] | None = None

    # ------------------------------------------------------------------------------------------ builders

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> CertificateWorkloadArgs:
        """From ``keyvault-acme:*`` values with the prefix stripped (unknown keys are named, not ignored)."""
        unknown = sorted(set(values) - set(KEYS))
        if unknown:
            raise SpecError(f"{NAMESPACE}:{unknown[0]}", "unknown config key",
                            f"use only {', '.join(KEYS)} (docs/configuration.md)")
        missing = [k for k in ("workload", "environment", "location", "subscription_id") if values.get(k) in (None, "")]
        if missing:
            raise SpecError(missing[0], "is required", f"set {NAMESPACE}:{missing[0]}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    @classmethod
    def from_stack_file(cls, path: str | Path) -> CertificateWorkloadArgs:
        """From a stack file (``Pulumi.<stack>.yaml``). Encrypted (``secure:``) values cannot be read here:
        use :meth:`from_config` in a Pulumi program, which Pulumi hands the decrypted values."""
        return cls.from_values(read_stack_file(path))  # bounded and strict YAML, as the CLI reads it

    @classmethod
    def from_config(cls, config: pulumi.Config | None = None, *, stack_file: str | Path | None = None,
                    ) -> CertificateWorkloadArgs:
        """From the stack's config, read with ``pulumi.Config`` (secrets arrive decrypted, and webhook URLs are
        kept secret by the component). ``pulumi.Config`` cannot list keys, so a misspelt key is found by
        reading the key names of ``stack_file`` when given."""
        config = config or pulumi.Config(NAMESPACE)
        if stack_file is not None and Path(stack_file).exists():
            import yaml

            document = yaml.safe_load(Path(stack_file).read_text(encoding="utf-8")) or {}
            unknown = sorted(set(stack_config_values(document)) - set(KEYS))
            if unknown:
                raise SpecError(f"{NAMESPACE}:{unknown[0]}", f"unknown config key in {Path(stack_file).name}",
                                f"use only {', '.join(KEYS)} (docs/configuration.md)")
        values: dict[str, Any] = {}
        for key in KEYS:
            raw = config.get(key)
            if raw is None:
                continue
            # Structured values arrive as JSON text, scalars as plain text ("westeurope", "true").
            try:
                values[key] = _json(raw)
            except ValueError:
                values[key] = raw
        return cls.from_values(values)

    # ------------------------------------------------------------------------------------------ resolving

    def resolve(self) -> tuple[WorkloadConfig, dict[str, pulumi.Output[Any]]]:
        """The parsed config (placeholders where outputs are still unknown) and, by placeholder, each output
        checked by the parser once its value is known."""
        late: dict[str, tuple[str, pulumi.Output[Any]]] = {}  # placeholder -> (field, output)
        values = _plain(self._values(), "", late)
        config = parse_workload_config(values)
        checked = {placeholder: output.apply(_checker(values, field, placeholder))
                   for placeholder, (field, output) in late.items()}
        return config, checked

    def _values(self) -> dict[str, Any]:
        return {f.name: _as_dict(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


def _json(text: str) -> Any:
    import json

    return json.loads(text)


def _as_dict(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_dict(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, Mapping):
        return {k: _as_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_dict(v) for v in value]
    return value


def _placeholder(kind: str, field: str) -> str:
    token = uuid.uuid5(uuid.NAMESPACE_URL, f"keyvault-acme/late-input/{field}")
    return str(token) if kind == "guid" else f"https://{token}{_PLACEHOLDER_SUFFIX}/"


def _plain(value: Any, field: str, late: dict[str, tuple[str, pulumi.Output[Any]]]) -> Any:
    """``value`` with every output replaced by its field's placeholder (recorded in ``late``)."""
    if isinstance(value, pulumi.Output):
        kind = next((k for pattern, k in LATE_FIELDS.items() if re.fullmatch(pattern, field)), None)
        if kind is None:
            raise SpecError(field, "is a pulumi Output, but must be known when the program runs (it decides which "
                                   "resources exist and their names)",
                            "pass a plain value; outputs are accepted for issuer ids, consumers' principal_id and "
                            "webhook URIs")
        placeholder = _placeholder(kind, field)
        late[placeholder] = (field, value)
        return placeholder
    if isinstance(value, Mapping) and set(value) == {"secure"}:
        raise SpecError(field, "is encrypted in the stack file (secure:), and only Pulumi can decrypt it",
                        "in a Pulumi program build the args with CertificateWorkloadArgs.from_config(), which reads "
                        "the decrypted value, or pass the value as a pulumi secret")
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{field}.{k}" if field else str(k), late) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{field}[{i}]", late) for i, v in enumerate(value)]
    return value


def _checker(values: Mapping[str, Any], field: str, placeholder: str):
    def check(known: Any) -> Any:
        # The whole config again with this one value in place of its placeholder: the same rules, the same names.
        parse_workload_config(_replace(values, placeholder, known))
        return known

    return check


def _replace(value: Any, placeholder: str, known: Any) -> Any:
    if isinstance(value, str) and value == placeholder:
        return known
    if isinstance(value, Mapping):
        return {k: _replace(v, placeholder, known) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, placeholder, known) for v in value]
    return value
