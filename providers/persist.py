"""``PersistRecords``: the dns-persist-01 records one certificate needs, as a Pulumi dynamic resource.

A record names the ACME account URL, which exists only once the account is registered; so this resource
registers it (or finds it) at create, and hands out ``records`` (record name -> TXT value) for the
component's ordinary Azure DNS record sets. read and update resolve again: an account key change that
changes the account changes ``records``, and Pulumi re-writes the record sets. Nothing to delete (the account
stays for the certificate's other versions). Everything is the engine's (:meth:`Engine.persist_records`).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from keyvault_acme import config as spec_config
from keyvault_acme.dns import persist
from keyvault_acme.errors import SpecError

from .certificate import CertificateProvider, _has_unknown
from .state import PROVIDER_INPUTS, split_state

# What decides the records: the CA and account (acme), the names, persistUntil. Anything else in the inputs
# (tags, key, renewal, ...) changes the certificate, not its records.
RECORD_INPUTS = ("vault_url", "acme", "dns_names", "persist_until")


def _spec_inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in split_state(props).items() if k not in PROVIDER_INPUTS and k not in ("records",
                                                                                                    "account_url")}


class PersistRecordsProvider(CertificateProvider):
    """The CRUD of :class:`PersistRecords`; credentials and engine exactly as the certificate's provider."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = _spec_inputs(news)
        if _has_unknown(inputs):
            return CheckResult(inputs, [])
        try:
            spec_config.certificate_spec_from_dict(inputs)
        except SpecError as e:
            return CheckResult(inputs, [CheckFailure(e.field, f"{e.problem}; {e.fix}")])
        return CheckResult(inputs, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in RECORD_INPUTS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _resolve(self, props: Mapping[str, Any]) -> dict[str, Any]:
        inputs = _spec_inputs(props)
        engine = self._get_engine()
        spec = spec_config.certificate_spec_from_dict(inputs)
        records = engine.persist_records(spec)
        account_url = next(persist.parse(v).params["accounturi"] for v in records.values())
        return {**inputs, "records": records, "account_url": account_url}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outputs = self._resolve(props)
        return CreateResult(f"{outputs['vault_url']}/persist/{outputs['name']}", outputs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, self._resolve(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._resolve(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None  # the account and its records outlive this resource's inputs; the record sets are the stack's


class PersistRecords(Resource, module="keyvault_acme", name="PersistRecords"):
    """The ``_validation-persist`` records (``records``: name -> TXT value) and the ``account_url`` they name, for
    one dns-persist-01 certificate. Inputs: the certificate's settings (as for ``Certificate``)."""

    records: pulumi.Output[dict]
    account_url: pulumi.Output[str]

    def __init__(self, resource_name: str, inputs: Mapping[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(PersistRecordsProvider(), resource_name,
                         {**inputs, "records": None, "account_url": None}, opts)
