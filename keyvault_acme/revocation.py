"""Revoking versions at the CA that issued them, and recording it on the versions in Key Vault.

A version is revoked at the CA its ``acme-directory`` tag names, only when the stack configures that CA
(:func:`.renewal.trusted_directory`): a tag is no authority. The reason is kept in the version's tags and the
version is disabled (unless asked not to); a version the CA had revoked already keeps the reason recorded then.
Expired versions are never sent: CAs refuse them, and nothing trusts them any more.
"""
from __future__ import annotations

import logging
from dataclasses import fields
from datetime import datetime, timezone
from typing import Mapping

from cryptography import x509

from .errors import CertificateExpired, CertificateNotFound
from .keyvault import MANAGED_BY, MANAGED_BY_TAG, KeyVault, split_pem_chain
from .model import CertificateSpec, RevokedFacts
from .renewal import TAG_REVOKED, trusted_directory
from .timefmt import when
from .wiring import Wiring


def revoke_current(wiring: Wiring, log: logging.Logger, spec: CertificateSpec, reason: str, *, disable: bool,
                   deadline: float) -> RevokedFacts:
    """Revoke the current version, record the reason in its tags, and disable it unless ``disable`` is False.
    An expired version is refused (:class:`CertificateExpired`)."""
    vault = wiring.vault(spec.vault_url)
    facts = vault.certificate(spec.name, deadline=deadline)
    if facts is None:
        raise CertificateNotFound(f"{spec.vault_url}/certificates/{spec.name} has no issued version to revoke")
    if datetime.now(timezone.utc) >= facts.not_after:
        raise CertificateExpired(f"{facts.id} version {facts.version} expired at {when(facts.not_after)}"
                                 "; CAs do not revoke expired certificates, and nothing trusts it any more")
    leaf = split_pem_chain(facts.pem_chain)[0]
    tags, revoked_now = _revoke_version(wiring, log, spec, vault, facts.version, leaf, facts.tags, reason,
                                        disable, deadline)
    return RevokedFacts(**{**{f.name: getattr(facts, f.name) for f in fields(facts)}, "tags": tags,
                           "revoked_reason": tags[TAG_REVOKED], "enabled": facts.enabled and not disable,
                           "already_revoked": not revoked_now})


def revoke_every_version(wiring: Wiring, log: logging.Logger, spec: CertificateSpec, reason: str, *,
                         deadline: float) -> list[str]:
    """Before a destroy: revoke every version this engine issued that is neither expired nor revoked yet (all
    of them are being deleted); record and disable each. Expired versions are skipped with a log line: CAs
    refuse to revoke them, which would block the destroy for good. Returns the serials (hex) revoked now."""
    vault = wiring.vault(spec.vault_url)
    revoked: list[str] = []
    for props in vault.versions(spec.name, deadline=deadline):
        tags = dict(props.tags or {})
        if not props.x509_thumbprint or tags.get(MANAGED_BY_TAG) != MANAGED_BY or tags.get(TAG_REVOKED):
            continue  # never issued, not ours, or revoked already
        leaf = vault.leaf(spec.name, props.version, deadline=deadline)
        if leaf is None:
            continue
        if datetime.now(timezone.utc) >= leaf.not_valid_after_utc:
            log.info("not revoking %s/certificates/%s version %s (serial %x): it expired at %s, and CAs do not "
                     "revoke expired certificates", vault.vault_url, spec.name, props.version, leaf.serial_number,
                     when(leaf.not_valid_after_utc))
            continue
        _revoke_version(wiring, log, spec, vault, props.version, leaf, tags, reason, True, deadline)
        revoked.append(format(leaf.serial_number, "x"))
    return revoked


def _revoke_version(wiring: Wiring, log: logging.Logger, spec: CertificateSpec, vault: KeyVault, version: str,
                    leaf: x509.Certificate, tags: Mapping[str, str], reason: str, disable: bool,
                    deadline: float) -> tuple[dict[str, str], bool]:
    # At the CA recorded on the version (the spec may have moved to another CA since it was issued), when the
    # spec trusts that CA: a tag is no authority, anyone allowed to edit tags could name any URL.
    directory_url = trusted_directory(spec, tags, f"{vault.vault_url}/certificates/{spec.name} version {version}")
    revoked_now = wiring.account(spec, vault, deadline, directory_url=directory_url).revoke(
        leaf, reason, deadline=deadline)
    # A certificate the CA had revoked keeps the reason we recorded then: the CA never took this one.
    recorded = tags.get(TAG_REVOKED) if not revoked_now else None
    tags = {**dict(tags), TAG_REVOKED: recorded or reason}
    vault.update(spec.name, version, tags=tags, enabled=False if disable else None, deadline=deadline)
    if revoked_now:
        log.info("revoked %s/certificates/%s version %s (serial %x, reason %s) at %s", vault.vault_url,
                 spec.name, version, leaf.serial_number, reason, directory_url)
    else:
        log.info("%s/certificates/%s version %s (serial %x): the CA at %s had already revoked it; the recorded "
                 "reason is %s", vault.vault_url, spec.name, version, leaf.serial_number, directory_url,
                 tags[TAG_REVOKED])
    return tags, revoked_now
