"""``Certificate``: one Key Vault certificate issued by an ACME CA, as a Pulumi dynamic resource.

A thin adapter: create = issue, update = renew, delete = revoke then soft-delete, read = refresh from
Key Vault, diff = the engine's renewal decision (:mod:`keyvault_acme.resource_diff`). Everything else
is the engine's.

The provider object is dill-pickled into the stack state and one instance serves up to four
concurrent calls in the provider host. So it holds plain settings only (:meth:`__getstate__` drops
the rest); the engine, its SDK clients and the credential are built lazily inside the host, under a
lock, and never pickled. Credentials come from the environment (``DefaultAzureCredential``:
workload identity, managed identity, Azure CLI) and, optionally, the stack config keys
``azure-native:clientId`` and ``azure-native:tenantId`` read in :meth:`configure`.
"""
from __future__ import annotations

import logging
import sys
import threading
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from keyvault_acme import config as spec_config
from keyvault_acme.errors import SpecError
from keyvault_acme.model import CertificateSpec
from keyvault_acme.resource_diff import NONE, REPLACE, plan_change

if TYPE_CHECKING:
    from keyvault_acme.lifecycle import Engine  # imported in the host only (the Azure SDKs are slow to load)

from .state import (
    ADVISORY_INPUTS,
    OUTPUTS,
    PROVIDER_INPUTS,
    access_granted_at,
    check_provider_settings,
    facts_from_outputs,
    facts_to_outputs,
    provider_settings,
    split_state,
)

# Stack config the provider reads (the same keys the azure-native provider uses).
_CONFIG_KEYS = {"client_id": "azure-native:clientId", "tenant_id": "azure-native:tenantId"}

# The parts of the inputs the per-field parsers can check on their own while others are unknown.
_PART_PARSERS = {
    "key": spec_config.key_from_dict,
    "acme": spec_config.acme_from_dict,
    "renewal": spec_config.renewal_from_dict,
}


def _has_unknown(value: Any) -> bool:
    # In check and diff the host keeps unknowns as ``Unknown`` objects; the wire form is a string.
    if isinstance(value, Unknown) or value == UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_unknown(v) for v in value)
    return False


def _spec(inputs: Mapping[str, Any]) -> CertificateSpec:
    return spec_config.certificate_spec_from_dict({k: v for k, v in inputs.items() if k not in PROVIDER_INPUTS})


def _engine_logger() -> logging.Logger:
    """The engine's logger; in the provider host, also to stderr, which Pulumi shows with the deployment."""
    log = logging.getLogger("keyvault_acme")
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main is not None and main.name == "pulumi.dynamic.__main__" and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("keyvault-acme: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return log


def _failure(error: SpecError) -> CheckFailure:
    return CheckFailure(error.field, f"{error.problem}; {error.fix}" if error.fix else error.problem)


class CertificateProvider(ResourceProvider):
    """The CRUD of :class:`Certificate`, delegated to :class:`keyvault_acme.lifecycle.Engine`."""

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, str] = {}
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    # Only plain settings go into the state; the engine and its credential are rebuilt in the host.
    def __getstate__(self) -> dict[str, Any]:
        return {"_config": dict(self._config)}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self._config = dict(state.get("_config", {}))
        self._lock = threading.Lock()
        self._engine = None

    def configure(self, req: ConfigureRequest) -> None:
        self._config = {name: str(req.config.get(key)) for name, key in _CONFIG_KEYS.items() if req.config.get(key)}

    def _get_engine(self):
        with self._lock:
            if self._engine is None:
                from keyvault_acme.lifecycle import Engine  # the Azure SDKs load in the host only

                credential = None
                if self._config:
                    from azure.identity import DefaultAzureCredential

                    kwargs = {}
                    if "client_id" in self._config:
                        kwargs["managed_identity_client_id"] = self._config["client_id"]
                    if "tenant_id" in self._config:
                        kwargs["workload_identity_tenant_id"] = self._config["tenant_id"]
                    credential = DefaultAzureCredential(**kwargs)
                self._engine = Engine(credential, logger=_engine_logger())
            return self._engine

    # check ------------------------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        news = split_state(news)
        settings = provider_settings(news)
        known = {k: PROVIDER_INPUTS[k] if _has_unknown(v) else v for k, v in settings.items()}
        failures = [CheckFailure(f, reason) for f, reason in check_provider_settings(known)]
        spec_part = {k: v for k, v in news.items() if k not in PROVIDER_INPUTS}
        if _has_unknown(spec_part):
            # A preview where some inputs come from resources not created yet: check what is known.
            failures += self._check_known_parts(spec_part)
            return CheckResult({**spec_part, **settings}, failures)
        try:
            spec = spec_config.certificate_spec_from_dict(spec_part)
            self._get_engine().check_spec(spec)
        except SpecError as e:
            return CheckResult(news, failures + [_failure(e)])
        if failures:
            return CheckResult(news, failures)
        return CheckResult({**spec_config.spec_to_dict(spec), **settings}, [])

    @staticmethod
    def _check_known_parts(spec_part: Mapping[str, Any]) -> list[CheckFailure]:
        failures = []
        for key, parse in _PART_PARSERS.items():
            if key in spec_part and not _has_unknown(spec_part[key]):
                try:
                    parse(spec_part[key])
                except SpecError as e:
                    failures.append(_failure(e))
        zones = spec_part.get("zones")
        if isinstance(zones, list):
            for i, zone in enumerate(zones):
                if not _has_unknown(zone):
                    try:
                        spec_config.zone_from_dict(zone, f"zones[{i}]")
                    except SpecError as e:
                        failures.append(_failure(e))
        return failures

    # diff -------------------------------------------------------------------------------------------

    def _plan(self, olds: Mapping[str, Any], news: Mapping[str, Any]):
        def planned(props: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in split_state(props).items() if k not in ADVISORY_INPUTS}

        new_inputs = planned(news)
        unknown = {k for k, v in new_inputs.items() if _has_unknown(v)}
        facts = facts_from_outputs(olds)
        lookup = self._renewal_info(olds, facts)
        return plan_change(
            planned(olds), new_inputs, facts, datetime.now(timezone.utc),
            unknown=unknown, other_keys=PROVIDER_INPUTS.keys(),
            ari_window=lookup.info.window if lookup and lookup.info else None, ari_note=lookup.note if lookup else "",
        )

    def _renewal_info(self, props: Mapping[str, Any], facts):
        """The CA's renewal info for the recorded version (cached in its Key Vault tags, so a preview asks the CA
        at most once per certificate per Retry-After); None when there is no version to ask about."""
        if facts is None or not facts.pem_chain:
            return None
        try:
            spec = _spec(split_state(props))  # where the recorded version lives
        except SpecError:
            return None
        return self._get_engine().renewal_info(spec, facts)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        plan = self._plan(olds, news)
        if plan.action != NONE:
            pulumi.log.info(f"{news.get('name', _id)}: {plan.reason}: {plan.message}")
        return DiffResult(
            changes=plan.action != NONE,
            replaces=list(plan.replaces) if plan.action == REPLACE else [],
            delete_before_replace=False,  # the new certificate exists before the old one is revoked
        )

    # create / read / update / delete ------------------------------------------------------------------

    def _outputs(self, inputs: Mapping[str, Any], facts) -> dict[str, Any]:
        inputs = split_state(inputs)
        return {**inputs, **provider_settings(inputs), **facts_to_outputs(facts, _spec(inputs))}

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = split_state(props)
        # Adopts a matching certificate left by a failed create.
        facts = self._get_engine().issue(_spec(inputs), access_granted_at=access_granted_at(inputs))
        return CreateResult(facts.id, self._outputs(props, facts))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        inputs = split_state(props)
        # One Key Vault request per certificate on a refresh: the chain in state is still the chain while the
        # thumbprint is unchanged, so only a certificate renewed elsewhere has its chain read.
        facts = self._get_engine().inspect(inputs["vault_url"], inputs["name"], known=facts_from_outputs(props))
        if facts is None:
            return ReadResult(None, {})  # an empty id drops the resource from state
        # A refresh also refreshes the CA's renewal info when its Retry-After has passed, and keeps the answer.
        lookup = self._renewal_info(inputs, facts)
        if lookup is not None and lookup.tags is not None:
            facts = replace(facts, tags=lookup.tags)
        return ReadResult(facts.id, self._outputs(inputs, facts))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        engine, inputs = self._get_engine(), split_state(news)
        spec, granted_at = _spec(inputs), access_granted_at(inputs)
        plan = self._plan(olds, news)
        # Settings changed without a reissue ("record"): new tags reach Key Vault now, not at the next renewal.
        if plan.reissue:  # the recorded version is the one this renewal replaces (ARI `replaces`)
            facts = engine.renew(spec, access_granted_at=granted_at, current=facts_from_outputs(olds))
        else:
            facts = engine.update_tags(spec)
        if facts is None:  # deleted between refresh and update
            facts = engine.issue(spec, access_granted_at=granted_at)
        return UpdateResult(self._outputs(news, facts))  # always the full outputs: None would wipe state

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        engine, inputs = self._get_engine(), split_state(props)
        spec, settings = _spec(inputs), provider_settings(inputs)
        if settings["revoke_on_delete"]:
            engine.revoke_all(spec, settings["revoke_reason"])  # every unexpired version: all are deleted
        engine.delete(spec.vault_url, spec.name, purge=settings["purge_on_delete"])


class Certificate(Resource, module="keyvault_acme", name="Certificate"):
    """An ACME certificate whose key pair Key Vault generates and keeps.

    Type token ``pulumi-python:dynamic/keyvault_acme:Certificate``. Inputs are the certificate
    settings of the stack config (see :mod:`keyvault_acme.config`) plus ``revoke_on_delete``,
    ``revoke_reason``, ``purge_on_delete`` and ``access_granted_at`` (when the role assignments the
    certificate needs were made, ISO 8601: a 403 from Key Vault or Azure DNS in the ten minutes after is
    waited out, as Azure takes that long to apply them; never a change to plan). Reference ``secret_id`` (versionless) from App Gateway,
    Front Door or App Service so they pick up renewals.
    """

    certificate_id: pulumi.Output[str]
    versioned_certificate_id: pulumi.Output[str]
    secret_id: pulumi.Output[str]
    versioned_secret_id: pulumi.Output[str]
    version: pulumi.Output[str]
    thumbprint: pulumi.Output[str]
    serial: pulumi.Output[str]
    not_before: pulumi.Output[str]
    not_after: pulumi.Output[str]
    renew_after: pulumi.Output[str]
    issuer: pulumi.Output[str]
    names: pulumi.Output[list]
    pem_chain: pulumi.Output[str]
    enabled: pulumi.Output[bool]
    revoked_reason: pulumi.Output[Optional[str]]

    def __init__(
        self,
        resource_name: str,
        *,
        vault_url: pulumi.Input[str],
        name: pulumi.Input[str],
        dns_names: pulumi.Input[Sequence[pulumi.Input[str]]],
        zones: Optional[pulumi.Input[Sequence[Any]]] = None,
        acme: Optional[pulumi.Input[Mapping[str, Any]]] = None,
        key: Optional[pulumi.Input[Mapping[str, Any]]] = None,
        profile: Optional[pulumi.Input[str]] = None,
        preferred_chain: Optional[pulumi.Input[str]] = None,
        renewal: Optional[pulumi.Input[Mapping[str, Any]]] = None,
        tags: Optional[pulumi.Input[Mapping[str, pulumi.Input[str]]]] = None,
        resolvers: Optional[pulumi.Input[Sequence[pulumi.Input[str]]]] = None,
        propagation_timeout_s: Optional[pulumi.Input[float]] = None,
        challenge: Optional[pulumi.Input[str]] = None,
        persist_until: Optional[pulumi.Input[int]] = None,
        revoke_on_delete: Optional[pulumi.Input[bool]] = None,
        revoke_reason: Optional[pulumi.Input[str]] = None,
        purge_on_delete: Optional[pulumi.Input[bool]] = None,
        access_granted_at: Optional[pulumi.Input[str]] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        inputs = {
            "vault_url": vault_url, "name": name, "dns_names": dns_names, "zones": zones, "acme": acme,
            "key": key, "profile": profile, "preferred_chain": preferred_chain, "renewal": renewal,
            "tags": tags, "resolvers": resolvers, "propagation_timeout_s": propagation_timeout_s,
            "challenge": challenge, "persist_until": persist_until,
            "revoke_on_delete": revoke_on_delete, "revoke_reason": revoke_reason,
            "purge_on_delete": purge_on_delete, "access_granted_at": access_granted_at,
        }
        # Outputs are declared as None so Pulumi exposes them as attributes.
        super().__init__(CertificateProvider(), resource_name, {**inputs, **dict.fromkeys(OUTPUTS)}, opts)
