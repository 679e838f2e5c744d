"""The engine's facade: issue, renew, revoke, inspect and delete Key Vault certificates over ACME DNS-01.

Issue/renew: create a new version in Key Vault with issuer ``Unknown`` (Key Vault makes the key pair and
a CSR) -> check the CSR's names and key against the spec -> ACME order -> DNS-01 for every authorization
through the zones' providers -> finalize with Key Vault's CSR -> merge leaf + intermediates. The private
key never leaves Key Vault; we only ever hold the CSR, certificates and public keys.

Idempotent by design, because a failed Pulumi create records nothing and is simply tried again:
``issue`` adopts an existing certificate this engine manages when it already satisfies the spec, a
pending operation left by a crashed run is reused once that run's deadline is over (when its CSR still
fits; otherwise discarded), one another run is still working on is left alone (a retryable
:class:`~keyvault_acme.errors.CertificateBusy`), and a failed issuance discards the pending operation it
created. Every operation has a deadline.

Thread-safe: one engine serves many certificates at once; certificates of one ACME account share one
registered client; operations on the same certificate are serialised within the process.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

from cryptography import x509

from .access import ACCESS_BACKOFF, RBAC_PROPAGATION, may_still_settle, settles_at
from .ari import AriLookup, RenewalInfoReader
from .claims import PendingClaims, claim_key
from .config import revocation_reason
from .dns.base import ChecksAccess, DnsProvider, authoritative_hint
from .errors import (
    CertificateBusy,
    CertificateMismatch,
    ChainMismatch,
    Deadline,
    KeyVaultError,
    KeyVaultReadOnly,
    PreflightError,
    SpecError,
    one_line,
)
from .issued import check_issued_chain
from .keyvault import (
    CHAIN_SUFFIX,
    MANAGED_BY,
    MANAGED_BY_TAG,
    KeyVault,
    is_managed,
    names_key,
    split_pem_chain,
)
from .model import CertificateFacts, CertificateSpec, CheckResult, RevokedFacts
from .names import plural
from .observe import Observer, Operation, failure_reason
from .renewal import (
    TAG_ARI,
    TAG_DIRECTORY,
    TAG_KEY,
    TAG_PROFILE,
    TAG_REVOKED,
    Decision,
    renewal_decision,
)
from .retry import retry_call
from .revocation import revoke_current, revoke_every_version
from .runs import RUN_TAG, leftover_order, leftover_tags, this_run
from .timefmt import when
from .wiring import Wiring

# The issuance stack (ACME and JOSE, dnspython, azure-mgmt-dns) is imported where it is first used, not here:
# reading certificates (`keyvault-acme status`, a refresh) never pays for it, and a CLI start stays short.
if TYPE_CHECKING:
    from .acme_client import AcmeClient, Order
    from .dns.challenges import DnsSolver
    from .preflight import CaaCache


def check_spec(spec: CertificateSpec) -> tuple[str, ...]:
    """:func:`keyvault_acme.preflight.check_spec`, imported on first use (it brings dnspython)."""
    from .preflight import check_spec as checked

    return checked(spec)


def managed_tags(spec: CertificateSpec) -> dict[str, str]:
    """:func:`keyvault_acme.preflight.managed_tags`, imported on first use."""
    from .preflight import managed_tags as tags

    return tags(spec)

DEFAULT_TIMEOUT_S = 600.0

PHASES = ("kv_create", "order", "dns_write", "propagation", "validation", "finalize", "merge")


_Facts = TypeVar("_Facts", bound=CertificateFacts)


# The engine's own tags on a version: what :func:`managed_tags` adds, and the revocation reason.
ENGINE_TAGS = frozenset({MANAGED_BY_TAG, TAG_DIRECTORY, TAG_KEY, TAG_PROFILE, TAG_REVOKED, RUN_TAG, TAG_ARI})


def refuse_unmanaged(existing: CertificateFacts) -> None:
    """Raise :class:`CertificateMismatch` unless this engine issued ``existing`` (tag ``managed-by``): a new
    version of another tool's or a person's certificate would silently replace theirs."""
    if not is_managed(existing):
        raise CertificateMismatch(
            f"{existing.id} exists and is not managed by keyvault-acme (no tag {MANAGED_BY_TAG}={MANAGED_BY}); "
            "choose another certificate name, or tag it to adopt it")


class Timings:
    """Seconds per phase of one issuance (see :data:`PHASES`), for logs and benchmarks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to ``phase``."""
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + (now - self._last)
        self._last = now

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def move(self, source: str, target: str, seconds: float) -> None:
        self.seconds[source] = self.seconds.get(source, 0.0) - seconds
        self.add(target, seconds)

    def __str__(self) -> str:
        return ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.seconds.items())


class _TimedProvider:
    """A provider whose writes are charged to ``dns_write`` (the rest of publishing is propagation)."""

    def __init__(self, provider: DnsProvider, spent: list[float]) -> None:
        self._provider, self._spent = provider, spent
        self.propagation_timeout = provider.propagation_timeout

    def present(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        start = time.perf_counter()
        try:
            self._provider.present(fqdn, value, deadline=deadline)
        finally:
            self._spent.append(time.perf_counter() - start)

    def cleanup(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        self._provider.cleanup(fqdn, value, deadline=deadline)

    def authoritative_servers(self, zone: str):
        return authoritative_hint(self._provider, zone)


class _TimedSolver:
    """Marks the phases around publishing: order (before), DNS (publish + propagation), validation (inside)."""

    def __init__(self, solver: DnsSolver, timings: Timings, writes: list[float]) -> None:
        self._solver, self._timings, self._writes = solver, timings, writes

    @contextlib.contextmanager
    def published(self, challenges, *, deadline=None) -> Iterator[Any]:
        self._timings.mark("order")
        with self._solver.published(challenges, deadline=deadline) as placements:
            self._timings.mark("propagation")
            self._timings.move("propagation", "dns_write", sum(self._writes))
            yield placements
            self._timings.mark("validation")
        self._timings.mark("dns_cleanup")


def _give_up(client: "AcmeClient", order: "Order", deadline: float, log: logging.Logger) -> None:
    """Deactivate what the order still has pending at the CA, at the end of a run that failed before answering
    its challenges; best effort and briefly: the run's own error is the one to report."""
    from .dns.challenges import CLEANUP_MIN_S

    try:
        dropped = client.deactivate_pending(order, deadline=max(deadline, time.monotonic() + CLEANUP_MIN_S))
    except Exception as e:  # noqa: BLE001 - never hides the run's error
        log.warning("could not deactivate the pending authorizations of %s: %s", order.url, one_line(e))
        return
    if dropped:
        log.info("deactivated the unanswered authorizations of %s (%s): the CA no longer counts them as pending",
                 order.url, ", ".join(dropped))


class Engine:
    """Issue, renew, revoke, inspect and delete Key Vault certificates; see the module docstring.

    ``credential``: any azure-core TokenCredential; None uses DefaultAzureCredential (workload identity,
    managed identity, environment, Azure CLI). ``on_timings(name, seconds_by_phase)`` is called after
    each issuance (metrics, benchmarks). ``observer`` hears of every issue, renew and revoke when it ends
    (:mod:`.observe`). ``timeout_s`` bounds each operation.
    """

    def __init__(self, credential: Any | None = None, *, logger: logging.Logger | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 on_timings: Callable[[str, Mapping[str, float]], None] | None = None,
                 observer: Observer | None = None) -> None:
        self.log = logger or logging.getLogger("keyvault_acme")
        self.observer = observer
        self.timeout_s = timeout_s
        self._on_timings = on_timings
        # Credential, vault clients, accounts, directory readers, DNS providers: shared with the checks.
        self.wiring = Wiring(credential, timeout_s=timeout_s)
        self._lock = threading.Lock()
        self._cert_locks: dict[tuple[str, str], threading.Lock] = {}
        self._claims = PendingClaims(self.wiring, self.log, timeout_s)
        self._caa: CaaCache | None = None
        self._renewal_info = RenewalInfoReader(self.wiring, self.log)

    # -- public API -------------------------------------------------------------------------------------

    def check_spec(self, spec: CertificateSpec) -> None:
        """Offline checks (names, zones, counts, Key Vault names, tags); raises SpecError, creates nothing."""
        check_spec(spec)

    def preflight(self, spec: CertificateSpec) -> None:
        """Network checks before any order: the CA directory (and profile), the zones, CAA for every name.

        Creates nothing: no Key Vault object, no DNS record, no ACME account or order.
        """
        self._preflight(spec, check_spec(spec), self._deadline())

    def _preflight(self, spec: CertificateSpec, names: tuple[str, ...], deadline: float) -> None:
        from .dns.challenges import DnsSolver
        from .preflight import caa_lookup, check_caa

        directory = self.wiring.directory_client(spec.acme.directory_url).read_directory(deadline=deadline)
        directory.check_profile(spec.profile, len(names))
        # Names taken by a certificate: never read (its secret may hold its private key), never written over.
        vault = self.wiring.vault(spec.vault_url)
        # A key this process already loaded was vetted then; checking again would cost a Key Vault call
        # on every issuance.
        if spec.acme.account_key_kind == "secret" and not self.wiring.account_key_loaded(vault, spec.acme):
            vault.refuse_foreign_secret(spec.acme.account_key_secret, deadline=deadline)
        vault.vet_own_secret(f"{spec.name}{CHAIN_SUFFIX}", deadline=deadline)
        providers = self.wiring.providers(spec, deadline)
        for provider in providers.values():
            if isinstance(provider, ChecksAccess):
                provider.check_access(deadline=deadline)
        check_caa(names, directory.caa_identities,
                  caa_lookup(DnsSolver(providers, resolvers=spec.resolvers), cache=self._caa_cache()))

    def check(self, spec: CertificateSpec, *, timeout_s: float = 60.0) -> tuple[CheckResult, ...]:
        """Every precondition of issuing ``spec``, without creating or changing anything anywhere: the spec,
        credentials, the vault, the CA's directory and profile, each zone writable, each zone's NS
        delegation, CAA. One result per step (per zone for the zone steps); see :mod:`.checks`."""
        from .checks import Checks

        return Checks(self.wiring, spec, time.monotonic() + timeout_s).run()

    def issue(self, spec: CertificateSpec, *, access_granted_at: datetime | None = None) -> CertificateFacts:
        """Issue the certificate, or adopt the current version when this engine issued one that fits.

        ``access_granted_at``: when the role assignments this needs were made. Until they have surely taken
        effect (:mod:`.access`), a 403 from Key Vault or Azure DNS is retried instead of raised.
        """
        return self._observed("issue", spec,
                              lambda: self._once_access_settles(spec, access_granted_at, lambda: self._issue(spec)))

    def renew(self, spec: CertificateSpec, *, access_granted_at: datetime | None = None,
              current: CertificateFacts | None = None) -> CertificateFacts:
        """A new version of the same Key Vault certificate (new key pair, same names unless the spec changed).
        ``access_granted_at`` as for :meth:`issue`. The order names the version it replaces (ARI ``replaces``,
        which Let's Encrypt exempts from rate limits inside the window): ``current`` when the caller has its
        facts (the provider's state, ``status``), else the current version is read."""
        return self._observed("renew", spec, lambda: self._once_access_settles(
            spec, access_granted_at, lambda: self._renew(spec, current)))

    def _observed(self, kind: str, spec: CertificateSpec, operation: Callable[[], _Facts]) -> _Facts:
        if self.observer is None:
            return operation()
        started_at, start = time.time(), time.monotonic()
        try:
            facts = operation()
        except BaseException as e:
            self._tell(Operation(kind, spec.vault_url, spec.name, started_at, time.monotonic() - start,
                                 failure=failure_reason(e)))
            raise
        self._tell(Operation(kind, spec.vault_url, spec.name, started_at, time.monotonic() - start, facts=facts))
        return facts

    def _tell(self, op: Operation) -> None:
        try:
            assert self.observer is not None
            self.observer.operation(op)
        except Exception as e:  # noqa: BLE001 - metrics must never fail (or repeat) a certificate operation
            self.log.warning("the %s observer failed on %s of %s: %s", type(self.observer).__name__, op.kind,
                             op.certificate, one_line(e))

    def _once_access_settles(self, spec: CertificateSpec, granted_at: datetime | None,
                             operation: Callable[[], CertificateFacts]) -> CertificateFacts:
        if granted_at is None:
            return operation()
        until = settles_at(granted_at)
        announced = False

        def verdict(error: BaseException) -> bool:
            nonlocal announced
            if not may_still_settle(error, granted_at, datetime.now(timezone.utc)):
                return False
            if not announced:
                announced = True
                self.log.info("%s/certificates/%s: %s; role assignments made at %s can take up to %d minutes to "
                              "take effect, so this is retried until %s", spec.vault_url.rstrip("/"), spec.name,
                              one_line(error), when(granted_at), RBAC_PROPAGATION.seconds // 60,
                              when(until))
            return True

        # The window decides; the deadline only bounds the last wait, which may start just before it closes.
        window_s = max(0.0, (until - datetime.now(timezone.utc)).total_seconds())
        return retry_call(operation, what=f"waiting for access to {spec.vault_url.rstrip('/')}/certificates/"
                                          f"{spec.name}", retry_after=verdict, timeout=window_s + ACCESS_BACKOFF.cap,
                          backoff=ACCESS_BACKOFF)

    def _issue(self, spec: CertificateSpec) -> CertificateFacts:
        deadline = self._deadline()
        names = check_spec(spec)
        vault = self.wiring.vault(spec.vault_url)
        with self._certificate_lock(spec):
            existing = vault.certificate(spec.name, chain=False, deadline=deadline)
            if existing is not None:
                refuse_unmanaged(existing)
                decision = renewal_decision(existing, spec, datetime.now(timezone.utc))
                if not decision.reissue:
                    self.log.info("adopting %s version %s: %s", existing.id, existing.version, decision.message)
                    return vault.with_chain(existing, deadline=deadline)
                self.log.info("%s: %s", existing.id, decision.message)
            self._preflight(spec, names, deadline)
            return self._issue_version(spec, names, vault, deadline, previous=existing)

    def _renew(self, spec: CertificateSpec, current: CertificateFacts | None) -> CertificateFacts:
        deadline = self._deadline()
        names = check_spec(spec)
        vault = self.wiring.vault(spec.vault_url)
        with self._certificate_lock(spec):
            if current is None or not current.tags:  # facts without tags cannot say whose the certificate is
                current = vault.certificate(spec.name, chain=False, deadline=deadline)  # the leaf is enough
            if current is not None:
                refuse_unmanaged(current)  # a new version would replace someone else's certificate
            self._preflight(spec, names, deadline)
            return self._issue_version(spec, names, vault, deadline, previous=current,
                                       replaces=self._replaces(spec, names, vault, current, deadline))

    def _replaces(self, spec: CertificateSpec, names: Sequence[str], vault: KeyVault,
                  current: CertificateFacts | None, deadline: float) -> str | None:
        """The ARI CertID of the version a renewal replaces; None when there is none this CA issued (another
        CA cannot honour it) or when it shares no name with the new order (CAs refuse such a replacement, so
        naming it would only cost a refused order). Reading it must never stop a renewal."""
        from .acme_client import ari_cert_id

        try:
            if current is None or not current.pem_chain:
                current = vault.certificate(spec.name, chain=False, deadline=deadline)  # the leaf is enough
            if current is None or current.tags.get(TAG_DIRECTORY, spec.acme.directory_url) != spec.acme.directory_url:
                return None
            if not set(names_key(current.names)) & set(names_key(names)):
                self.log.info("%s: the new names share none with version %s: a plain order, not a replacement",
                              current.id, current.version)
                return None
            return ari_cert_id(x509.load_pem_x509_certificates(current.pem_chain.encode())[0])
        except Exception as e:  # noqa: BLE001 - a renewal without `replaces` is still a renewal
            self.log.warning("%s/certificates/%s: not naming the version this renewal replaces (%s)",
                             spec.vault_url.rstrip("/"), spec.name, one_line(e))
            return None

    def revoke(self, spec: CertificateSpec, reason: str = "unspecified", *, disable: bool = True) -> RevokedFacts:
        """Revoke the current version at the CA that issued it, record the reason in its tags, and disable it
        unless told not to. An expired version is refused (:class:`CertificateExpired`): CAs do not revoke it."""
        return self._observed("revoke", spec, lambda: self._revoke(spec, reason, disable))

    def _revoke(self, spec: CertificateSpec, reason: str, disable: bool) -> RevokedFacts:
        revocation_reason(reason, "reason", "unspecified")
        deadline = self._deadline()
        with self._certificate_lock(spec):
            return revoke_current(self.wiring, self.log, spec, reason, disable=disable, deadline=deadline)

    def revoke_all(self, spec: CertificateSpec, reason: str = "unspecified") -> list[str]:
        """Before a destroy: revoke every version this engine issued that is neither expired nor revoked yet,
        each at the CA that issued it (:func:`.revocation.revoke_every_version`). Returns the serials revoked."""
        revocation_reason(reason, "reason", "unspecified")
        deadline = self._deadline()
        with self._certificate_lock(spec):
            return revoke_every_version(self.wiring, self.log, spec, reason, deadline=deadline)

    def update_tags(self, spec: CertificateSpec) -> CertificateFacts | None:
        """Give the current version the spec's tags now, without issuing a new one; None when there is none.

        The engine's own tags on the version (managed-by, what it was issued with, a revocation) stay as
        they are: they describe that version, not the spec. A user tag no longer in the spec is removed.
        """
        check_spec(spec)  # the tag limits
        deadline = self._deadline()
        vault = self.wiring.vault(spec.vault_url)
        with self._certificate_lock(spec):
            facts = vault.certificate(spec.name, deadline=deadline)
            if facts is None:
                return None
            ours = {k: v for k, v in facts.tags.items() if k in ENGINE_TAGS}
            tags = {**dict(spec.tags), MANAGED_BY_TAG: MANAGED_BY, **ours}
            if tags == dict(facts.tags):
                return facts
            vault.update(spec.name, facts.version, tags=tags, deadline=deadline)
            self.log.info("updated the tags of %s version %s", facts.id, facts.version)
            return replace(facts, tags=tags)

    def inspect(self, vault_url: str, name: str, *, with_chain: bool = True,
                known: CertificateFacts | None = None) -> CertificateFacts | None:
        """Public facts of the current version; None when the certificate is gone (or never issued).

        One Key Vault request when no chain has to be read: ``with_chain=False`` (``pem_chain`` is then the leaf
        alone: enough for status and renewal decisions), or ``known`` facts (Pulumi state) whose thumbprint is
        still the current one, whose chain is reused. Reading a changed chain costs two requests more.
        """
        return self.wiring.vault(vault_url).certificate(name, chain=with_chain, known=known,
                                                        deadline=self._deadline())

    # -- renewal decisions ------------------------------------------------------------------------------

    def decide(self, spec: CertificateSpec, facts: CertificateFacts | None, *,
               now: datetime | None = None) -> Decision:
        """Is the version ``facts`` due for renewal under ``spec``? The CA's ARI window decides when it offers
        one (read at most once per Retry-After, see :meth:`renewal_info`), else the spec's policy;
        ``Decision.decided_by`` says which. Never raises for ARI trouble."""
        now = now or datetime.now(timezone.utc)
        lookup = self.renewal_info(spec, facts, now=now)
        return renewal_decision(facts, spec, now, ari_window=lookup.info.window if lookup.info else None,
                                ari_note=lookup.note)

    def renewal_info(self, spec: CertificateSpec, facts: CertificateFacts | None, *,
                     now: datetime | None = None) -> AriLookup:
        """The CA's renewal info for the version ``facts``, cached on the version (see :mod:`.ari`)."""
        return self._renewal_info.lookup(spec, facts, now=now)

    def delete(self, vault_url: str, name: str, *, purge: bool = False) -> None:
        """Soft-delete the certificate (and purge it when asked); a certificate already gone is not an error."""
        if not self.wiring.vault(vault_url).delete(name, purge=purge, deadline=self._deadline()):
            self.log.info("%s/certificates/%s was already gone", vault_url.rstrip("/"), name)

    # -- issuance ---------------------------------------------------------------------------------------

    def _issue_version(self, spec: CertificateSpec, names: tuple[str, ...], vault: KeyVault,
                       deadline: float, *, previous: CertificateFacts | None = None,
                       replaces: str | None = None) -> CertificateFacts:
        """A new version: order, claim (the pending operation), validate, download, check, store, merge.
        ``previous``: the current version, whose run may have left challenge values to remove first."""
        from .acme_client import DNS_PERSIST_01
        from .dns.challenges import CLEANUP_MIN_S, DnsSolver
        from .dns.persist import PersistRecords

        timings = Timings()
        tags = managed_tags(spec)
        client = self.wiring.account(spec, vault, deadline)
        # The order comes first so that the claim (the pending operation) records it: a run killed with its
        # challenge records up leaves the next run what it needs to find and remove exactly those values.
        order = client.new_order(names, profile=spec.profile, replaces=replaces, deadline=deadline)
        try:
            if spec.challenge == DNS_PERSIST_01:
                # Whether the CA offers dns-persist-01 shows only in an order's authorizations: look before
                # anything is created in Key Vault (a CA without it fails here, naming the challenges it offers).
                client.persist_challenges(order, deadline=deadline)
            timings.mark("order")
            claim = self._claims.claim(spec, names, vault, client, {**tags, RUN_TAG: this_run(order.url).tag()},
                                       deadline)
        except CertificateBusy:
            raise  # another run is issuing these names: a CA that reuses pending authorizations may share them
        except Exception:
            _give_up(client, order, deadline, self.log)
            raise
        timings.mark("kv_create")
        if claim.chain:
            # A run obtained this very certificate (Key Vault's key, our names) and could not merge it.
            self.log.info("%s/certificates/%s: merging the certificate (serial %x) an earlier run obtained but did "
                          "not merge; nothing is ordered", vault.vault_url, spec.name, claim.chain[0].serial_number)
            return self._merged(spec, names, vault, claim.chain, tags, timings, deadline, adopted=True)
        left_by = leftover_order(dict(previous.tags)) if previous is not None else None
        if previous is not None and left_by:
            self._claims.remove_stale_values(spec, client, left_by, f"the run that issued version {previous.version}",
                                      deadline)
        pending = claim.pending
        dns: DnsSolver | None = None
        try:
            solver: Any
            if spec.challenge == DNS_PERSIST_01:
                zones = DnsSolver(self.wiring.providers(spec, deadline), resolvers=spec.resolvers)
                solver = PersistRecords(lambda record: zones.servers(zones.zone_of(record)),
                                        timeout=spec.propagation_timeout_s, persist_until=spec.persist_until)
            else:
                writes: list[float] = []
                timed = {z: _TimedProvider(p, writes) for z, p in self.wiring.providers(spec, deadline).items()}
                dns = DnsSolver(timed, resolvers=spec.resolvers, propagation_timeout=spec.propagation_timeout_s)
                solver = _TimedSolver(dns, timings, writes)
            chain = client.obtain_chain(pending.csr_der, names, solver, profile=spec.profile,
                                        preferred_chain=spec.preferred_chain, order=order, replaces=replaces,
                                        deadline=deadline)
            timings.mark("finalize")
            certs = split_pem_chain(chain.fullchain_pem)
            # Before anything is written: the CA's answer must be the certificate that was asked for.
            try:
                check_issued_chain(certs, pending.csr, names)
            except ChainMismatch as e:
                raise ChainMismatch(f"{spec.vault_url.rstrip('/')}/certificates/{spec.name}: {e}; its pending "
                                    "operation (and the key Key Vault made for it) is discarded") from None
            vault.store_chain(spec.name, certs, deadline=deadline)
        except BaseException as error:
            # Nothing half-made stays behind: the pending version (and its key) goes, the name stays free, and
            # the order's unanswered authorizations are deactivated at the CA.
            self._claims.abandon(vault, spec, error, max(deadline, time.monotonic() + CLEANUP_MIN_S))
            if isinstance(error, Exception):  # Ctrl-C stops at once
                _give_up(client, order, deadline, self.log)
            if dns is not None and dns.left_behind and previous is not None:
                self._claims.record_leftovers(vault, spec, previous, order.url,
                                       max(deadline, time.monotonic() + CLEANUP_MIN_S))
            raise
        if dns is not None and dns.left_behind:
            tags = {**tags, **leftover_tags(order.url)}  # the next run on the certificate removes them
        return self._merged(spec, names, vault, certs, tags, timings, deadline)

    def _merged(self, spec: CertificateSpec, names: tuple[str, ...], vault: KeyVault,
                certs: Sequence[x509.Certificate], tags: Mapping[str, str], timings: Timings, deadline: float, *,
                adopted: bool = False) -> CertificateFacts:
        """Merge the chain into the pending version. A merge that fails leaves the operation and the kept chain
        as they are: the next run merges that chain (:meth:`_claim`), without ordering again."""
        try:
            facts = vault.merge(spec.name, certs, tags=tags, deadline=deadline)
        except (KeyVaultError, Deadline) as e:
            kept = (f"; the certificate (serial {certs[0].serial_number:x}) is issued and kept in "
                    f"{vault.vault_url}/secrets/{spec.name}{CHAIN_SUFFIX}: the next run merges it without a new "
                    "order")
            raised = (KeyVaultReadOnly if isinstance(e, KeyVaultReadOnly) else KeyVaultError)(
                f"{e.finding}{kept}", status=getattr(e, "status", None), code=getattr(e, "code", None))
            raised.retryable = True
            raise raised from None
        self._claims.released(spec)
        if dict(facts.tags) != dict(tags):  # a Key Vault that did not take the tags with the merge
            vault.update(spec.name, facts.version, tags=tags, deadline=deadline)
            facts = replace(facts, tags=tags)
        timings.mark("merge")
        self.log.info("%s %s version %s (serial %s, %s, %s) in %.3f s", "merged" if adopted else "issued", facts.id,
                      facts.version, facts.serial, plural(len(names), "name"), spec.key.description,
                      sum(timings.seconds.values()))
        self.log.debug("phases of %s: %s", facts.id, timings)
        if self._on_timings is not None and not adopted:
            self._on_timings(spec.name, dict(timings.seconds))
        return facts

    # -- helpers ----------------------------------------------------------------------------------------

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout_s

    def _caa_cache(self) -> CaaCache:
        with self._lock:
            if self._caa is None:
                from .preflight import CaaCache

                self._caa = CaaCache()
            return self._caa

    def _certificate_lock(self, spec: CertificateSpec) -> threading.Lock:
        with self._lock:
            return self._cert_locks.setdefault(claim_key(spec), threading.Lock())

    def persist_records(self, spec: CertificateSpec) -> dict[str, str]:
        """The dns-persist-01 records the spec's names need (record name -> TXT value), from the CA's issuer domain
        name (its directory's first ``caaIdentities`` entry) and the account URL; the account is registered when
        the key has none yet. An account key change that changes the account changes the values: the stack that
        writes them (the component) re-writes them."""
        from .acme_client import DNS_PERSIST_01
        from .dns.persist import records_for

        deadline = self._deadline()
        names = check_spec(spec)
        client = self.wiring.account(spec, self.wiring.vault(spec.vault_url), deadline)
        directory = client.read_directory(deadline=deadline)
        if not directory.caa_identities:
            raise PreflightError(f"the CA at {spec.acme.directory_url} publishes no issuer domain name (meta."
                                 f"caaIdentities), which a {DNS_PERSIST_01} record must name; use challenge: dns-01")
        return records_for(names, directory.caa_identities[0], client.account_url(deadline=deadline),
                           persist_until=spec.persist_until)

    def move_account_to_key(self, spec: CertificateSpec) -> str:
        """Move the spec's CA account from its secret-held key (``acme.account_key_secret``) to the Key Vault key
        ``acme.account_key.name`` by ACME account key rollover (``keyChange``): the account, its URL and its
        history stay; from then on Key Vault signs for it. Creates the key when missing. Idempotent: an account
        the key already has is left as it is. Returns the account URL.

        The secret is left in place (the CA no longer accepts its key for this account); delete it when every
        engine uses the key.
        """
        acme = spec.acme
        if acme.account_key_kind != "key":
            raise SpecError("acme.account_key.kind", "is not key, so there is no Key Vault key to move the account to",
                            "set acme.account_key: {kind: key} (and optionally name) first")
        from .account import key_from_secret, key_vault_account_key
        from .acme_client import AcmeClient

        check_spec(spec)
        deadline = self._deadline()
        vault = self.wiring.vault(spec.vault_url)
        new_key = key_vault_account_key(vault, acme.account_key_name, deadline=deadline)
        new_client = AcmeClient(acme.directory_url, new_key.jwk, alg=new_key.alg, timeout=self.timeout_s)
        already = new_client.find_account(deadline=deadline)
        if already is not None:
            self.log.info("the ACME account %s already uses the key %s", already, new_key.where)
            return already
        found = vault.get_secret_and_tags(acme.account_key_secret, deadline=deadline)
        if found is None:
            raise KeyVaultError(f"Key Vault {vault.vault_url}: there is no ACME account key secret "
                                f"{acme.account_key_secret!r} to move from; nothing to migrate (the first issuance "
                                f"registers an account for the key {new_key.where})", status=404)
        old_client = AcmeClient(acme.directory_url, key_from_secret(found[0]), timeout=self.timeout_s)
        if old_client.find_account(deadline=deadline) is None:
            raise KeyVaultError(f"the key in {vault.vault_url}/secrets/{acme.account_key_secret} has no account at "
                                f"{acme.directory_url}; nothing to migrate (the first issuance registers an account "
                                f"for the key {new_key.where})", status=404)
        url = old_client.change_key(new_key.jwk, new_key.alg, deadline=deadline)
        self.wiring.forget_accounts(vault, acme)
        self.log.info("moved the ACME account %s from the secret %s/secrets/%s to the key %s; Key Vault signs for it "
                      "from now on, and the secret can be deleted", url, vault.vault_url, acme.account_key_secret,
                      new_key.where)
        return url
