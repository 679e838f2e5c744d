"""A run's claim on issuing a certificate: Key Vault's one pending operation per certificate.

Creating the pending operation is the claim. One that exists already belongs to another run while that run may
still be working (:class:`.errors.CertificateBusy`); a run that is over (this engine's own, a process on this
host that is gone, or one older than any run may last, see :mod:`.runs`) leaves it to be reused when its CSR
fits, or replaced, after the challenge values it left in DNS are removed. A failed run discards its claim
(:meth:`PendingClaims.abandon`); one whose clean-up failed records its order for the next run to finish.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Mapping, Sequence

from cryptography import x509

from .dns.base import Challenge
from .errors import (
    CertificateBusy,
    CertificateDeletedButRecoverable,
    CertificateMismatch,
    KeyVaultAcmeError,
    KeyVaultError,
    KeyVaultReadOnly,
    one_line,
)
from .keyvault import (
    KeyVault,
    PendingCsr,
    dns_names_of,
    names_key,
    public_key_label,
    same_public_key,
)
from .model import CertificateFacts, CertificateSpec
from .names import plural
from .runs import RUN_TAG, RunRecord, creator_gone, leftover_tags, process_alive, this_run
from .timefmt import when
from .wiring import Wiring

if TYPE_CHECKING:  # the ACME stack loads on first issuance, not with the engine
    from .acme_client import AcmeClient


@dataclass(frozen=True)
class Claim:
    """This run's pending operation, and the chain to merge into it when an earlier run obtained one."""

    pending: PendingCsr
    chain: list[x509.Certificate]


def csr_problem(csr: x509.CertificateSigningRequest, names: Sequence[str], spec: CertificateSpec) -> str | None:
    """Why Key Vault's CSR does not fit the spec (names or key), or None when it does."""
    have, want = names_key(dns_names_of(csr)), names_key(names)
    if have != want:
        return f"Key Vault's CSR names {', '.join(have)}, the spec {', '.join(want)}"
    if public_key_label(csr.public_key()) != spec.key.label:
        return f"Key Vault's CSR has a {public_key_label(csr.public_key())} key, the spec asks for {spec.key.label}"
    return None


def claim_key(spec: CertificateSpec) -> tuple[str, str]:
    """One certificate, however its vault URL and name are cased."""
    return spec.vault_url.rstrip("/").lower(), spec.name.lower()


class PendingClaims:
    """The claims of one engine: which pending operations it made (so its own are never mistaken for another
    run's), and the vaults and accounts to act on them through its wiring."""

    def __init__(self, wiring: Wiring, log: logging.Logger, timeout_s: float) -> None:
        self.wiring, self.log, self.timeout_s = wiring, log, timeout_s
        self._lock = threading.Lock()
        self._ours: set[tuple[str, str]] = set()  # pending operations this engine created, not yet done

    def released(self, spec: CertificateSpec) -> None:
        """The claim ended in a merged version."""
        with self._lock:
            self._ours.discard(claim_key(spec))

    def record_leftovers(self, vault: KeyVault, spec: CertificateSpec, previous: CertificateFacts,
                          order_url: str, deadline: float) -> None:
        """A failed run's values stayed in DNS and its pending operation is gone: record its order on the
        version that stays current, for the next run (and ``check``) to find them."""
        try:
            vault.update(spec.name, previous.version, tags={**previous.tags, **leftover_tags(order_url)},
                         deadline=deadline)
        except KeyVaultAcmeError as e:
            self.log.warning("%s: could not record the order %s whose challenge values stayed in DNS (%s)",
                             previous.id, order_url, one_line(e))

    def abandon(self, vault: KeyVault, spec: CertificateSpec, error: BaseException, deadline: float) -> None:
        """After a failed issuance: discard the pending operation. When that fails too, the operation stays
        for the next run to reuse; a read-only vault (Key Vault's failover) is then said plainly."""
        try:
            self.discard(vault, spec, deadline)
        except KeyVaultAcmeError as e:
            self.log.warning("%s/certificates/%s: the pending operation could not be discarded (%s); the next run "
                             "reuses it", vault.vault_url, spec.name, one_line(e))
            if isinstance(e, KeyVaultReadOnly) or isinstance(error, KeyVaultReadOnly):
                raise KeyVaultReadOnly(
                    f"{getattr(error, 'finding', None) or one_line(error)}; the vault is read-only, so the pending "
                    f"operation of {spec.name} stays, and the next run after the vault recovers reuses it",
                    status=getattr(error, "status", None), code=getattr(error, "code", None)) from error

    def claim(self, spec: CertificateSpec, names: tuple[str, ...], vault: KeyVault, client: AcmeClient,
               tags: Mapping[str, str], deadline: float) -> Claim:
        """A pending operation whose CSR fits the spec: a new one, or one left behind by a run that is over.

        Key Vault allows one pending operation per certificate, so creating it is the claim on issuing. One
        that exists already is another run's while it may still be working: taking it over would order twice
        with one CSR and let the loser's clean-up delete the winner's operation, so that is
        :class:`CertificateBusy`. Its run is over when this engine made it, when the run's record
        (:mod:`.runs`) names a process on this host that is gone, or when it is older than any run may last;
        then it is reused when its CSR fits and replaced otherwise, after removing the challenge values its
        run left in DNS. A chain already kept for its CSR (a run that failed to merge) is merged at once.
        """
        key = claim_key(spec)
        try:
            pending = vault.create_pending(spec.name, spec.key, names, tags, deadline=deadline)
        except KeyVaultError as e:
            if e.status != 409 or isinstance(e, CertificateDeletedButRecoverable):
                raise
            found = vault.pending(spec.name, deadline=deadline)
            fit = (found if found is not None and found.status.lower() == "inprogress"
                   and not csr_problem(found.csr, names, spec) else None)
            if fit is not None:
                chain = vault.stored_chain(spec.name, deadline=deadline)
                if chain and same_public_key(chain[0].public_key(), fit.csr.public_key()) \
                        and names_key(dns_names_of(chain[0])) == names_key(names):
                    with self._lock:
                        self._ours.add(key)
                    return Claim(fit, chain)
            props = vault.pending_properties(spec.name, deadline=deadline)
            record = RunRecord.parse((props.tags or {}).get(RUN_TAG) if props is not None else None)
            if found is not None and key not in self._ours:
                created = props.created_on if props is not None else None
                if not creator_gone(record, created, datetime.now(timezone.utc), self.timeout_s,
                                    host=this_run().host, alive=process_alive):
                    since = "at an unknown time" if created is None else f"at {when(created)}"
                    by = f" by {record.describe()}" if record else ""
                    raise CertificateBusy(
                        f"{spec.vault_url}/certificates/{spec.name}: another run is issuing this certificate (its "
                        f"pending operation was created{by} {since}); retry when it has finished, or after "
                        f"{self.timeout_s:.0f} s (the operation timeout, --timeout) when that run has crashed") \
                        from None
            if record is not None and record.order_url:
                self.remove_stale_values(spec, client, record.order_url, record.describe(), deadline)
            if fit is None:
                self.log.info("discarding a stale pending operation of %s/%s", spec.vault_url, spec.name)
                self.discard(vault, spec, deadline)
                pending = vault.create_pending(spec.name, spec.key, names, tags, deadline=deadline)
            else:
                pending = fit
                self.log.info("reusing the pending operation of %s/%s left by an earlier run%s", spec.vault_url,
                              spec.name, f" ({record.describe()})" if record else "")
                # This run's record replaces the dead one: a third run must see this one as alive.
                if props is not None:
                    vault.update(spec.name, props.version, tags=tags, deadline=deadline)
        with self._lock:
            self._ours.add(key)
        problem = csr_problem(pending.csr, names, spec)
        if problem:
            self.discard(vault, spec, deadline)
            raise CertificateMismatch(f"{spec.vault_url}/certificates/{spec.name}: {problem}; nothing was ordered")
        return Claim(pending, [])

    def remove_stale_values(self, spec: CertificateSpec, client: AcmeClient, order_url: str, who: str,
                             deadline: float) -> None:
        """Remove the DNS-01 values ``who`` published for the order ``order_url`` (provably ours: computed from
        that order's tokens and our account key), so a killed run, or one whose clean-up failed, leaves
        nothing behind for long."""
        from .dns.challenges import CLEANUP_BUDGET_S, DnsSolver

        try:
            values = client.challenge_values(order_url, deadline=deadline)
            if not values:
                return
            solver = DnsSolver(self.wiring.providers(spec, deadline), resolvers=spec.resolvers)
            left = solver.remove([Challenge(i, v) for i, v in values],
                                 deadline=min(deadline, time.monotonic() + CLEANUP_BUDGET_S))
        except KeyVaultAcmeError as e:
            self.log.warning("%s/certificates/%s: could not remove the challenge values of %s (%s)", spec.vault_url,
                             spec.name, who, one_line(e))
            return
        self.log.info("%s/certificates/%s: removed %s left by %s", spec.vault_url, spec.name,
                      plural(len(values) - len(left), "stale challenge value"), who)

    def discard(self, vault: KeyVault, spec: CertificateSpec, deadline: float) -> None:
        vault.discard_pending(spec.name, deadline=deadline)
        with self._lock:
            self._ours.discard(claim_key(spec))
