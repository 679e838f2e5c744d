"""What a change to a managed certificate means: replace it, renew it, update it in place, or nothing.

Pure and clock-passed-in, like the renewal decision it defers to. The Pulumi provider's ``diff`` and
``update`` both call :func:`plan_change`, so "will this renew?" is answered once, the same way in
``pulumi preview`` and ``pulumi up``. Inputs are the shared dict shape of :mod:`keyvault_acme.config`
(plus any other settings the caller keeps alongside, compared for equality only).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Collection, Mapping

from .config import certificate_spec_from_dict
from .model import CertificateFacts
from .renewal import Reason, renewal_decision

# Another vault or another name is another Key Vault certificate: a new resource.
REPLACE_KEYS = ("vault_url", "name")

NONE, UPDATE, REPLACE = "none", "update", "replace"


@dataclass(frozen=True)
class Plan:
    action: str  # NONE, UPDATE or REPLACE
    reissue: bool = False  # UPDATE only: issue a new version (renew) rather than just record new settings
    replaces: tuple[str, ...] = ()  # the settings that force REPLACE
    reason: Reason | None = None  # the renewal decision's reason, or one of the resource's own (MOVED, ...)
    message: str = ""  # for people
    decided_by: str = ""  # the renewal decision's: "ari", "policy" or "" (see keyvault_acme.renewal)


def _same_certificate(old: Any, new: Any) -> bool:
    # Key Vault names and hosts are case-insensitive; a case-only change is the same certificate.
    if isinstance(old, str) and isinstance(new, str):
        return old.rstrip("/").lower() == new.rstrip("/").lower()
    return old == new


def plan_change(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    facts: CertificateFacts | None,
    now: datetime,
    *,
    unknown: Collection[str] = (),
    other_keys: Collection[str] = (),
    ari_window: tuple[datetime, datetime] | None = None,
    ari_note: str = "",
) -> Plan:
    """Compare the recorded settings ``old`` (and ``facts`` about the issued version) with ``new``.

    Whether a new version is needed (names, key, CA or profile changed, due, revoked, disabled,
    missing) is :func:`keyvault_acme.renewal.renewal_decision`'s call, made on the new spec and the
    recorded facts (whose tags say what the version was issued with). Any other difference is an
    in-place update that records the new settings. ``unknown`` names top-level settings whose new
    value is not known yet (a preview where they come from resources still to be created); they
    count as changed. ``other_keys`` are settings outside the certificate spec (e.g. what to do on
    delete): they are only compared. ``ari_window``/``ari_note``: the CA's renewal info for the version (see
    ``Engine.renewal_info``), passed on to the renewal decision.
    """
    replaces = tuple(k for k in REPLACE_KEYS if k in unknown or not _same_certificate(old.get(k), new.get(k)))
    if replaces:
        return Plan(REPLACE, replaces=replaces, reason=Reason.MOVED,
                    message=f"{', '.join(replaces)} changed: a new Key Vault certificate replaces this one")
    if unknown:
        return Plan(UPDATE, reissue=True, reason=Reason.UNKNOWN,
                    message=f"{', '.join(sorted(unknown))} not known until other resources are updated")

    spec = certificate_spec_from_dict({k: v for k, v in new.items() if k not in other_keys})
    decision = renewal_decision(facts, spec, now, ari_window=ari_window, ari_note=ari_note)
    if decision.reissue:
        return Plan(UPDATE, reissue=True, reason=decision.reason, message=decision.message,
                    decided_by=decision.decided_by)

    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        return Plan(UPDATE, reason=Reason.SETTINGS_CHANGED,
                    message=f"{', '.join(changed)} changed: recorded; the next renewal uses them")
    return Plan(NONE, reason=decision.reason, message=decision.message, decided_by=decision.decided_by)
