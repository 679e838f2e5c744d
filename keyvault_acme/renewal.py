"""Should this certificate be (re-)issued now? A chain of small pure policies, cert-manager style.

Each policy looks at the public facts of the current certificate, the desired spec and the clock
(passed in, never read here) and either stays silent or returns a :class:`Decision` whose ``reason``
is a short CamelCase word for machines and ``message`` a sentence for people. The first policy that
speaks wins. The engine records what it issued with in tags (:func:`issued_with_tags`), so a change
of CA, profile or key settings is seen even though a certificate does not carry them.

When the CA offers ARI (RFC 9773), its suggested window decides the renewal moment (a stable point inside
it; a window already over means the CA asks for renewal now: ``CARequestedRenewal``); without ARI, or when
asking failed, the spec's lifetime policy decides. Every timing decision says which one decided
(:attr:`Decision.decided_by`). The CA's answer is cached on the certificate version as the ``acme-ari`` tag
(:func:`ari_tag`, :func:`ari_from_tags`), so reading it again waits for the CA's Retry-After; so is the absence
of an answer (:class:`NoRenewalInfo`), so a CA without ARI costs no extra request per read either.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Callable, ClassVar, Mapping, Optional, Sequence

from .errors import UntrustedDirectory
from .model import CertificateFacts, CertificateSpec, RenewalPolicy
from .names import normalize_names
from .timefmt import when as readable

DEFAULT_FRACTION_REMAINING = 1 / 3

TAG_DIRECTORY = "acme-directory"
TAG_PROFILE = "acme-profile"
TAG_KEY = "acme-key"
TAG_REVOKED = "acme-revoked"  # the reason, when we revoked this version
TAG_ARI = "acme-ari"  # the CA's last ARI answer for this version: "<start> <end> <next check>"
#                        or, when it gave none, "none <why> <next check>" (see NoRenewalInfo)

DECIDED_BY_ARI = "ari"  # the CA's suggested window (RFC 9773)
DECIDED_BY_POLICY = "policy"  # the spec's lifetime policy (renewal.days_before_expiry / fraction_remaining)

# How often the CA's renewal info is read again: its Retry-After, kept within these bounds (RFC 9773 4.3 asks
# clients to bound it), and the default when the CA sends none.
ARI_MIN_RECHECK = timedelta(minutes=1)
ARI_MAX_RECHECK = timedelta(days=1)
ARI_DEFAULT_RECHECK = timedelta(hours=6)
# A point in the window is never later than this fraction of the lifetime before expiry (unless the whole window
# is): a window ending at expiry would otherwise let a renewal start with no time left to retry a failure.
ARI_LATEST_FRACTION_REMAINING = 0.1


class Reason(StrEnum):
    """Why a certificate is (or is not) re-issued, cert-manager's condition reasons. The renewal chain, the
    resource diff (:mod:`keyvault_acme.resource_diff`) and the CLI's status column all name them from here;
    each is also its plain string, as outputs, logs and JSON carry it."""

    DOES_NOT_EXIST = "DoesNotExist"
    REVOKED = "Revoked"
    DISABLED = "Disabled"
    NAMES_CHANGED = "NamesChanged"
    KEY_CHANGED = "KeyChanged"
    ISSUER_CHANGED = "IssuerChanged"
    PROFILE_CHANGED = "ProfileChanged"
    EXPIRED = "Expired"
    CA_REQUESTED_RENEWAL = "CARequestedRenewal"  # the CA's renewal information (ARI) says so
    RENEWING = "Renewing"
    UP_TO_DATE = "UpToDate"
    # A change to the Pulumi resource rather than to the certificate (resource_diff.plan_change):
    MOVED = "Moved"  # another vault or name: a new certificate replaces this one
    UNKNOWN = "Unknown"  # settings not known until other resources are updated (a preview)
    SETTINGS_CHANGED = "SettingsChanged"  # recorded in place; the next renewal uses them


@dataclass(frozen=True)
class Decision:
    """The verdict: ``reissue`` or not, why (``reason``), in words (``message``), and when renewal is due."""

    reissue: bool
    reason: Reason
    message: str
    renew_at: Optional[datetime] = None
    # Who set the renewal moment: DECIDED_BY_ARI or DECIDED_BY_POLICY; "" when the spec or the certificate's
    # state decided (names changed, missing, revoked...).
    decided_by: str = ""


@dataclass(frozen=True)
class RenewalInfo:
    """The CA's ARI answer for one certificate version: its suggested window, and when to ask again."""

    start: datetime
    end: datetime
    next_check: datetime

    @property
    def window(self) -> tuple[datetime, datetime]:
        return self.start, self.end

    def fresh(self, now: datetime) -> bool:
        return now < self.next_check


@dataclass(frozen=True)
class NoRenewalInfo:
    """The CA gave no renewal info for a version when last asked, and when to ask again.

    ``why`` is :attr:`NO_ARI` (the CA offers none) or :attr:`FAILED` (asking failed: an error, an answer that
    could not be read, a certificate the CA does not know)."""

    NO_ARI: ClassVar[str] = "no-ari"
    FAILED: ClassVar[str] = "failed"

    why: str
    next_check: datetime

    def fresh(self, now: datetime) -> bool:
        return now < self.next_check

    def note(self, directory: str) -> str:
        """Why the policy decides, for the decision's message."""
        if self.why == self.NO_ARI:
            return f"the CA at {directory} offers no renewal info (ARI)"
        return f"the CA's renewal info could not be read when last asked; asking again after {readable(self.next_check)}"


@dataclass(frozen=True)
class Inputs:
    facts: Optional[CertificateFacts]
    spec: CertificateSpec
    now: datetime
    ari_window: Optional[tuple[datetime, datetime]] = None
    ari_note: str = ""  # why there is no window, when the CA was asked for one and gave none


Policy = Callable[[Inputs], Optional[Decision]]


def renew_after(not_before: datetime, not_after: datetime, policy: RenewalPolicy = RenewalPolicy()) -> datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` becomes due.

    Default: when a third of its lifetime is left (day 60 of 90, day 30 of 45, day 4 of 6). A
    ``days_before_expiry`` as long as the whole lifetime would renew at once, forever; then the
    default applies instead (as cert-manager does), so one policy is safe for 6-day and 90-day certs.
    """
    lifetime = not_after - not_before
    if policy.days_before_expiry is not None:
        before = timedelta(days=policy.days_before_expiry)
        if before < lifetime:
            return not_after - before
        return not_after - lifetime * DEFAULT_FRACTION_REMAINING
    fraction = policy.fraction_remaining if policy.fraction_remaining is not None else DEFAULT_FRACTION_REMAINING
    return not_after - lifetime * fraction


def ari_renewal_time(window: tuple[datetime, datetime], serial: str) -> datetime:
    """A point inside the CA's suggested window (RFC 9773), stable per certificate.

    The RFC asks for a random point so renewals spread out; deriving it from the serial spreads them
    the same way while every run (preview, refresh, update) agrees on the same moment.
    """
    start, end = window
    if end <= start:
        return start
    fraction = int.from_bytes(hashlib.sha256(serial.encode()).digest()[:8], "big") / 2**64
    return start + (end - start) * fraction


def due_at(facts: CertificateFacts, spec: CertificateSpec,
           ari_window: Optional[tuple[datetime, datetime]] = None) -> datetime:
    """The renewal moment (see :func:`renewal_moment`)."""
    return renewal_moment(facts, spec, ari_window)[0]


def renewal_moment(facts: CertificateFacts, spec: CertificateSpec,
                   ari_window: Optional[tuple[datetime, datetime]] = None) -> tuple[datetime, str]:
    """When the version becomes due, and who decided (:data:`DECIDED_BY_ARI` or :data:`DECIDED_BY_POLICY`).

    With the CA's ARI window: a stable point inside it, kept out of the last tenth of the lifetime when the
    window allows. A renewal policy the spec sets explicitly still holds as the latest moment (the owner asked
    for at least that much time left); the default policy only decides without ARI.
    """
    policy_at = renew_after(facts.not_before, facts.not_after, spec.renewal)
    if ari_window is None:
        return policy_at, DECIDED_BY_POLICY
    start, end = ari_window
    latest = facts.not_after - (facts.not_after - facts.not_before) * ARI_LATEST_FRACTION_REMAINING
    ari_at = max(start, min(ari_renewal_time(ari_window, facts.serial), latest))
    explicit = spec.renewal.days_before_expiry is not None or spec.renewal.fraction_remaining is not None
    if explicit and policy_at < ari_at:
        return policy_at, DECIDED_BY_POLICY
    return ari_at, DECIDED_BY_ARI


def ari_recheck_at(now: datetime, retry_after_s: Optional[float]) -> datetime:
    """When to ask the CA for renewal info again: after its Retry-After, bounded (RFC 9773 4.3)."""
    wait = ARI_DEFAULT_RECHECK if retry_after_s is None else timedelta(seconds=retry_after_s)
    return now + min(max(wait, ARI_MIN_RECHECK), ARI_MAX_RECHECK)


def _tag_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def ari_tag(info: RenewalInfo) -> str:
    """The ``acme-ari`` tag value (well under Key Vault's 256 characters)."""
    return " ".join(_tag_time(t) for t in (info.start, info.end, info.next_check))


def no_ari_tag(absence: NoRenewalInfo) -> str:
    """The ``acme-ari`` tag value recording that the CA gave no answer (:func:`no_ari_from_tags` reads it)."""
    return f"none {absence.why} {_tag_time(absence.next_check)}"


def no_ari_from_tags(tags: Mapping[str, str]) -> Optional[NoRenewalInfo]:
    """The recorded absence of an ARI answer for a version, or None (an answer, no tag, or one unreadable)."""
    parts = tags.get(TAG_ARI, "").split()
    if len(parts) != 3 or parts[0] != "none" or parts[1] not in (NoRenewalInfo.NO_ARI, NoRenewalInfo.FAILED):
        return None
    try:
        next_check = datetime.strptime(parts[2], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return NoRenewalInfo(parts[1], next_check)


def ari_from_tags(tags: Mapping[str, str]) -> Optional[RenewalInfo]:
    """The cached ARI answer of a version, or None (no tag, or one this version cannot read)."""
    try:
        start, end, next_check = (datetime.strptime(p, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
                                  for p in tags.get(TAG_ARI, "").split())
    except ValueError:
        return None
    return RenewalInfo(start, end, next_check)


def issued_with_tags(spec: CertificateSpec) -> dict[str, str]:
    """Tags the engine writes on each version it issues, read back by the policies below."""
    return {TAG_DIRECTORY: spec.acme.directory_url, TAG_PROFILE: spec.profile or "", TAG_KEY: recorded_key(spec)}


def recorded_key(spec: CertificateSpec) -> str:
    """The key settings as the ``acme-key`` tag records them (the label, HSM protection, whether it is exportable)."""
    return spec.key.description + (" exportable" if spec.key.exportable else "")


# -- the policies, in the order they are asked -------------------------------------------------------
def certificate_missing(i: Inputs) -> Optional[Decision]:
    if i.facts is None:
        return Decision(True, Reason.DOES_NOT_EXIST, "Issuing: the certificate does not exist in Key Vault")
    return None


def revoked(i: Inputs) -> Optional[Decision]:
    assert i.facts is not None
    reason = i.facts.revoked_reason or i.facts.tags.get(TAG_REVOKED)
    if reason:
        return Decision(True, Reason.REVOKED, f"Re-issuing: the current version was revoked ({reason})")
    return None


def disabled(i: Inputs) -> Optional[Decision]:
    assert i.facts is not None
    if not i.facts.enabled:
        return Decision(True, Reason.DISABLED, "Re-issuing: the current version is disabled in Key Vault")
    return None


def names_changed(i: Inputs) -> Optional[Decision]:
    assert i.facts is not None
    want = set(normalize_names(i.spec.dns_names))
    have = {n.lower().rstrip(".") for n in i.facts.names}
    if want != have:
        parts = []
        if want - have:
            parts.append("adding " + ", ".join(sorted(want - have)))
        if have - want:
            parts.append("removing " + ", ".join(sorted(have - want)))
        return Decision(True, Reason.NAMES_CHANGED, "Re-issuing: DNS names changed (" + "; ".join(parts) + ")")
    return None


def _recorded_differs(i: Inputs, tag: str, want: str, reason: Reason, what: str) -> Optional[Decision]:
    assert i.facts is not None
    have = i.facts.tags.get(tag)
    # No tag: a certificate we did not issue (adopted); there is nothing to compare with.
    if have is not None and have != want:
        return Decision(True, reason, f"Re-issuing: {what} changed from {have or 'none'!r} to {want or 'none'!r}")
    return None


def key_changed(i: Inputs) -> Optional[Decision]:
    return _recorded_differs(i, TAG_KEY, recorded_key(i.spec), Reason.KEY_CHANGED, "key settings")


def ca_changed(i: Inputs) -> Optional[Decision]:
    return _recorded_differs(i, TAG_DIRECTORY, i.spec.acme.directory_url, Reason.ISSUER_CHANGED, "ACME directory")


def profile_changed(i: Inputs) -> Optional[Decision]:
    return _recorded_differs(i, TAG_PROFILE, i.spec.profile or "", Reason.PROFILE_CHANGED, "ACME profile")


def expired(i: Inputs) -> Optional[Decision]:
    assert i.facts is not None
    if i.now >= i.facts.not_after:
        when, by = renewal_moment(i.facts, i.spec, i.ari_window)
        return Decision(True, Reason.EXPIRED, f"Renewing: the certificate expired at {readable(i.facts.not_after)}",
                        renew_at=when, decided_by=by)
    return None


def ca_requested(i: Inputs) -> Optional[Decision]:
    """A suggested window already over: the CA moved it into the past to have the certificate replaced now
    (RFC 9773 4.2: e.g. before a mass revocation)."""
    if i.ari_window is not None and i.ari_window[1] <= i.now:
        start, end = i.ari_window
        return Decision(True, Reason.CA_REQUESTED_RENEWAL,
                        f"Renewing: the CA asked for renewal now (its ARI window {readable(start)} to "
                        f"{readable(end)} is over)", renew_at=start, decided_by=DECIDED_BY_ARI)
    return None


def due(i: Inputs) -> Optional[Decision]:
    assert i.facts is not None
    when, by = renewal_moment(i.facts, i.spec, i.ari_window)
    if by == DECIDED_BY_ARI:
        source = "the CA's ARI window"
    elif i.ari_window is not None:
        source = "the renewal policy, earlier than the CA's ARI window"
    else:
        source = "the renewal policy" + (f"; {i.ari_note}" if i.ari_note else "")
    if i.now >= when:
        return Decision(True, Reason.RENEWING, f"Renewing: {source} made it due at {readable(when)}", renew_at=when,
                        decided_by=by)
    return Decision(False, Reason.UP_TO_DATE, f"Up to date: renewal due at {readable(when)} ({source})", renew_at=when,
                    decided_by=by)


DEFAULT_CHAIN: Sequence[Policy] = (certificate_missing, revoked, disabled, names_changed, key_changed, ca_changed,
                                   profile_changed, expired, ca_requested, due)


def renewal_decision(facts: Optional[CertificateFacts], spec: CertificateSpec, now: datetime, *,
                     ari_window: Optional[tuple[datetime, datetime]] = None, ari_note: str = "",
                     chain: Sequence[Policy] = DEFAULT_CHAIN) -> Decision:
    """Evaluate the policy chain; the first policy that has an opinion decides.

    ``now`` must be timezone-aware like the facts' dates. ``ari_window`` is the CA's suggested
    renewal window (start, end) when it offers ARI; without it the spec's renewal policy decides, and
    ``ari_note`` (why there is no window: the CA offers no ARI, asking failed) goes into the message.
    """
    inputs = Inputs(facts, spec, now, ari_window, ari_note)
    for policy in chain:
        decision = policy(inputs)
        if decision is not None:
            return decision
    return Decision(False, Reason.UP_TO_DATE, "Up to date")


def trusted_directory(spec: CertificateSpec, tags: Mapping[str, str], what: str) -> str:
    """The CA that issued a version, to revoke it or ask it for renewal info: the one its ``acme-directory`` tag
    names, when that is one the spec configures (``acme.directory_url`` or ``acme.previous_directories``); the
    spec's CA when the tag is missing.

    Raises UntrustedDirectory naming both otherwise; nothing is sent anywhere then."""
    tagged = tags.get(TAG_DIRECTORY)
    if not tagged:
        return spec.acme.directory_url
    trusted = spec.acme.trusted_directories()
    if tagged.startswith("https://") and tagged.rstrip("/") in {url.rstrip("/") for url in trusted}:
        return tagged
    shown = tagged if len(tagged) <= 200 else tagged[:200] + "..."
    raise UntrustedDirectory(
        f"{what} is tagged {TAG_DIRECTORY}={shown!r}, which is not a CA this stack configures (acme.directory_url "
        f"{spec.acme.directory_url}" + (f", acme.previous_directories {', '.join(spec.acme.previous_directories)}"
                                        if spec.acme.previous_directories else "") +
        "); nothing was sent to any CA and the version is unchanged. If that CA issued it, add its directory "
        "URL to acme.previous_directories; otherwise someone changed the tag: restore it")
