"""The CA's renewal info (ARI, RFC 9773) for a certificate version, read at most once per Retry-After.

The answer, or the absence of one (a CA without ARI, a failed read), is cached on the version as its
``acme-ari`` tag (see :mod:`.renewal`), so ``preview``, ``status`` and ``renew --due`` in any process ask the
CA at most once per certificate per Retry-After, and a steady read costs one Key Vault request. Within a
process the answers are also remembered, so a failing CA is not asked on every call. Only a CA the stack
configures is asked (:func:`.renewal.trusted_directory`). Nothing here raises: ARI trouble never blocks a
renewal, the lifetime policy decides instead and the note says why.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Mapping

from cryptography import x509

from .errors import UntrustedDirectory, one_line
from .keyvault import is_managed
from .model import CertificateFacts, CertificateSpec
from .renewal import (
    TAG_ARI,
    TAG_DIRECTORY,
    NoRenewalInfo,
    RenewalInfo,
    ari_from_tags,
    ari_recheck_at,
    ari_tag,
    no_ari_from_tags,
    no_ari_tag,
    trusted_directory,
)
from .timefmt import when
from .wiring import Wiring

ARI_TIMEOUT_S = 10.0  # one renewal-info read; ARI trouble must never hold up a decision for long
ARI_FAILURE_RECHECK_S = 300.0  # after a failed read, the policy decides for this long before asking again


@dataclass(frozen=True)
class AriLookup:
    """What :meth:`RenewalInfoReader.lookup` found: the CA's answer (maybe cached), or why there is none.

    ``tags``: the version's tags after the engine cached a new answer in them (None when it wrote nothing),
    so a caller that keeps the facts (the provider's state) can keep the cache too."""

    info: RenewalInfo | None
    note: str = ""
    tags: Mapping[str, str] | None = None


class RenewalInfoReader:
    """Reads and caches renewal info through the engine's :class:`.wiring.Wiring` (vaults, directory clients)."""

    def __init__(self, wiring: Wiring, log: logging.Logger) -> None:
        self.wiring, self.log = wiring, log
        self._lock = threading.Lock()
        # (directory, serial) -> (ask again after, answer): one CA request per Retry-After within this process
        # too, and a failed read is not retried on every call.
        self._remembered: dict[tuple[str, str], tuple[datetime, AriLookup]] = {}

    def lookup(self, spec: CertificateSpec, facts: CertificateFacts | None, *,
               now: datetime | None = None) -> AriLookup:
        """The CA's renewal info for the version ``facts`` (RFC 9773), asked of the CA that issued it.

        Cached on the version (tag ``acme-ari``) until the CA's Retry-After has passed, so ``preview``,
        ``status`` and ``renew --due`` ask the CA at most once per certificate per Retry-After period whatever
        process runs them; ``facts`` may be old (the provider's state): the version's current tags are read
        before asking the CA. Without ARI, or when asking fails, ``info`` is None (or the last answer, while a
        failure lasts) and ``note`` says why; that absence is cached on the version too (for
        :data:`ARI_FAILURE_RECHECK_S` after a failure, the default recheck when the CA offers no ARI), so a steady
        read costs one Key Vault request either way. Nothing here raises: ARI trouble never blocks a renewal.
        """
        if facts is None or not facts.pem_chain:
            return AriLookup(None)
        now = now or datetime.now(timezone.utc)
        try:
            # The same rule as revocation: a tag anyone with tag rights can edit must not send our requests,
            # on every preview and status, to a CA the stack does not configure.
            directory = trusted_directory(spec, facts.tags, facts.id)
        except UntrustedDirectory as e:
            self.log.warning("%s; the renewal policy decides", one_line(e))
            return AriLookup(None, f"its {TAG_DIRECTORY} tag names a CA this stack does not configure")
        cached = ari_from_tags(facts.tags)
        if cached is not None and cached.fresh(now):
            return AriLookup(cached)
        absent = no_ari_from_tags(facts.tags)
        if absent is not None and absent.fresh(now):
            return AriLookup(None, absent.note(directory))
        key = (directory, facts.serial)
        with self._lock:
            remembered = self._remembered.get(key)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        deadline = time.monotonic() + min(ARI_TIMEOUT_S, self.wiring.timeout_s)
        lookup, until = self._ask(spec, facts, directory, cached, now, deadline)
        with self._lock:
            self._remembered[key] = (until, lookup)
        return lookup

    def _ask(self, spec: CertificateSpec, facts: CertificateFacts, directory: str, cached: RenewalInfo | None,
             now: datetime, deadline: float) -> tuple[AriLookup, datetime]:
        vault = self.wiring.vault(spec.vault_url)
        tags: Mapping[str, str] | None = None
        try:
            if is_managed(facts):
                # Another process may have asked already; and a cache write must not put back old tags.
                tags = vault.version_tags(spec.name, facts.version, deadline=deadline)  # None: version gone
                current = ari_from_tags(tags or {})
                if current is not None and current.fresh(now):
                    return AriLookup(current, tags=tags), current.next_check
                absent = no_ari_from_tags(tags or {})
                if absent is not None and absent.fresh(now):
                    return AriLookup(None, absent.note(directory), tags=tags), absent.next_check
            client = self.wiring.directory_client(directory)
            answer = None
            if client.read_directory(deadline=deadline).renewal_info:
                leaf = x509.load_pem_x509_certificates(facts.pem_chain.encode())[0]
                answer = client.renewal_info(leaf, deadline=deadline)
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the policy decides instead
            note = f"the CA's renewal info could not be read ({one_line(e)})"
            self.log.warning("%s version %s: %s; the renewal policy decides", facts.id, facts.version, note)
            failed = NoRenewalInfo(NoRenewalInfo.FAILED, now + timedelta(seconds=ARI_FAILURE_RECHECK_S))
            # The last window, while it lasts, still beats the policy: keep it and record nothing over it.
            written = self._cache(spec, facts, tags, no_ari_tag(failed), deadline) if cached is None else None
            return AriLookup(cached, note, tags=written), failed.next_check
        if answer is None:
            absent = NoRenewalInfo(NoRenewalInfo.NO_ARI, ari_recheck_at(now, None))
            written = self._cache(spec, facts, tags, no_ari_tag(absent), deadline)
            return AriLookup(None, absent.note(directory), tags=written), absent.next_check
        info = RenewalInfo(*answer.window, next_check=ari_recheck_at(now, answer.retry_after_s))
        self.log.info("%s version %s: the CA suggests renewal between %s and %s%s", facts.id, facts.version,
                      when(info.start), when(info.end),
                      f" ({answer.explanation_url})" if answer.explanation_url else "")
        return AriLookup(info, tags=self._cache(spec, facts, tags, ari_tag(info), deadline)), info.next_check

    def _cache(self, spec: CertificateSpec, facts: CertificateFacts, tags: Mapping[str, str] | None,
               value: str, deadline: float) -> Mapping[str, str] | None:
        """Write ``value`` as the version's ``acme-ari`` tag over its current ``tags`` (None: a version this engine
        does not manage, whose tags it leaves alone). Returns the tags written, None when nothing was."""
        if tags is None or time.monotonic() >= deadline:
            return None
        written = {**tags, TAG_ARI: value}
        try:
            self.wiring.vault(spec.vault_url).update(spec.name, facts.version, tags=written, deadline=deadline)
        except Exception as e:  # noqa: BLE001 - only the cache is lost: the next run asks the CA again
            self.log.warning("%s version %s: could not cache the CA's renewal info in its tags (%s)",
                             facts.id, facts.version, one_line(e))
            return None
        return written
