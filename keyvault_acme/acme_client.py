"""One ACME (RFC 8555) client over certbot's ``acme`` library: account, order, DNS-01, finalize, revoke.

The library supplies the typed protocol messages, JWS signing and nonce handling; this module adds
what the engine needs on top:

* waits through :mod:`.retry` (starting at a few milliseconds, honouring Retry-After, bounded by a
  deadline) instead of the library's fixed one-second sleeps;
* badNonce, 5xx and connection errors retried; problem documents turned into the typed errors of
  :mod:`.errors` with the CA's own words (rateLimited carries its Retry-After time);
* thread safety: one client per account, shared by many concurrent orders;
* the CSR arrives as DER from Key Vault and is sent as-is: no private key is ever seen here.

:meth:`AcmeClient.obtain_chain` composes the whole issuance; the steps are public too
(:meth:`~AcmeClient.new_order`, :meth:`~AcmeClient.dns_challenges`, :meth:`~AcmeClient.validate`,
:meth:`~AcmeClient.finalize`) so a caller can persist ``Order.url`` and resume after a crash.

ARI (RFC 9773): :meth:`AcmeClient.renewal_info` reads the CA's suggested window (the engine caches it and
feeds ``renewal.renewal_decision(ari_window=...)``). An extension point the engine does not use yet (tested on
its own): resuming an order (``obtain_chain(resume_url=...)``).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ContextManager, Literal, Mapping, Optional, Protocol, Sequence, overload, runtime_checkable

import josepy as jose
import requests
from acme import challenges as acme_challenges
from acme import client as acme_client
from acme import errors as acme_errors
from acme import jws, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import errors
from .config import revocation_reason
from .dns.base import Challenge
from .model import LETS_ENCRYPT, LETS_ENCRYPT_STAGING, REVOCATION_REASONS
from .names import MAX_NAMES, counted
from .retry import DEFAULT_BACKOFF, Backoff, Waiter, parse_retry_after
from .timefmt import when
from .transport import new_session

log = logging.getLogger("keyvault_acme.acme")



def _version() -> str:
    try:
        return importlib.metadata.version("keyvault-acme")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


# RFC 8555 6.1: every request names the client; CAs (Let's Encrypt, Pebble 2.10) refuse requests without one.
USER_AGENT = f"keyvault-acme/{_version()}"
# Polls start at once and then every few milliseconds: a fast CA (Pebble) validates in about one; a
# production CA gets a handful of extra polls in the first 100 ms, then the interval doubles to the cap
# and any Retry-After it sends wins.
POLL_BACKOFF = Backoff(initial=0.005, factor=2.0, cap=5.0)
DEFAULT_TIMEOUT = 300.0  # whole issuance; production CAs answer in seconds, the rest is headroom
# No honest ACME answer comes near this: a 100-name order or certificate chain is tens of kilobytes.
MAX_RESPONSE_BYTES = 1 << 20

_PROBLEM_ERRORS: Mapping[str, type[errors.AcmeError]] = {
    "rateLimited": errors.RateLimited,
    "unauthorized": errors.AcmeUnauthorized,
    "dns": errors.AcmeDnsProblem,
    "caa": errors.AcmeCaaProblem,
    "rejectedIdentifier": errors.RejectedIdentifier,
    "badCSR": errors.BadCsr,
}


# -- what callers see -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DirectoryInfo:
    """What the CA says about itself. Optional fields are empty/None when the CA does not offer them."""

    url: str
    caa_identities: tuple[str, ...] = ()
    profiles: Mapping[str, str] = field(default_factory=dict)
    renewal_info: Optional[str] = None  # ARI endpoint (RFC 9773); None when absent (e.g. Pebble 2.4)
    terms_of_service: Optional[str] = None
    external_account_required: bool = False

    def check_profile(self, profile: Optional[str], names: Optional[int] = None) -> None:
        """PreflightError when ``profile`` is set and the CA does not offer it, or when ``names`` (how many
        the certificate has) is more than the profile allows (:meth:`name_limit`)."""
        if profile and profile not in self.profiles:
            offered = ", ".join(sorted(self.profiles)) or "none"
            raise errors.PreflightError(f"the CA at {self.url} does not offer the profile {profile!r} "
                                        f"(offered: {offered}); fix the certificate's profile")
        limit = self.name_limit(profile)
        if names is not None and names > limit:
            which = f"the profile {profile!r}" if profile else "its default profile"
            raise errors.PreflightError(f"the CA at {self.url} allows at most {limit} names per certificate with "
                                        f"{which}; this certificate has {names}: split it into several "
                                        "certificates or choose another profile")

    def name_limit(self, profile: Optional[str]) -> int:
        """How many names one certificate of ``profile`` may have: what the CA publishes for it, else 100."""
        published = PUBLISHED_NAME_LIMITS.get(self.url.rstrip("/"), {})
        return published.get(profile or DEFAULT_PROFILE, MAX_NAMES)


# Name-count limits CAs publish per profile (the directory's meta.profiles carries only descriptions), by
# directory URL. Let's Encrypt's profiles page: classic 100 names, tlsserver 25; shortlived publishes none.
DEFAULT_PROFILE = "classic"  # what Let's Encrypt issues an order that names no profile
PUBLISHED_NAME_LIMITS: Mapping[str, Mapping[str, int]] = {
    url: {"classic": 100, "tlsserver": 25} for url in (LETS_ENCRYPT, LETS_ENCRYPT_STAGING)
}


@dataclass(frozen=True)
class AriAnswer:
    """The CA's renewal info for one certificate (RFC 9773): suggested window, and how long to wait before
    asking again (``retry_after_s``, None when the CA did not say)."""

    cert_id: str
    window: tuple[datetime, datetime]
    retry_after_s: Optional[float] = None
    explanation_url: Optional[str] = None


@dataclass(frozen=True)
class Order:
    """A snapshot of an ACME order. ``url`` is enough to resume it (see :meth:`AcmeClient.resume_order`)."""

    url: str
    status: str
    identifiers: tuple[str, ...]
    authorizations: tuple[str, ...]
    finalize: str
    certificate: Optional[str] = None
    profile: Optional[str] = None
    expires: Optional[datetime] = None
    replaces: Optional[str] = None  # the ARI CertID the CA recorded this order as replacing


@dataclass(frozen=True)
class DnsChallenge(Challenge):
    """A pending DNS-01 challenge: what to publish (identifier, value) and where to answer it."""

    challenge_url: str = ""
    authorization_url: str = ""


@dataclass(frozen=True)
class PersistChallenge:
    """A pending dns-persist-01 challenge: the name, the CA's issuer domain names, and where to answer it."""

    identifier: str
    issuer_domain_names: tuple[str, ...]
    challenge_url: str
    authorization_url: str


DNS_PERSIST_01 = "dns-persist-01"


@dataclass(frozen=True)
class IssuedChain:
    """The issued certificate: leaf and intermediates (PEM, public only), and where they came from."""

    leaf_pem: str
    intermediates_pem: tuple[str, ...]
    order_url: str
    certificate_url: str

    @property
    def fullchain_pem(self) -> str:
        return self.leaf_pem + "".join(self.intermediates_pem)


class ChallengeSolver(Protocol):
    """Publishes DNS-01 values until the context ends (see :class:`keyvault_acme.dns.challenges.DnsSolver`)."""

    def published(self, challenges: Sequence[Challenge], *, deadline: Optional[float] = None) -> ContextManager[Any]:
        ...


@runtime_checkable
class PersistVerifier(Protocol):
    """Returns once the dns-persist-01 records of ``challenges`` are served (they are never written here)."""

    def served(self, challenges: Sequence[PersistChallenge], account_url: str, *,
               deadline: Optional[float] = None) -> None:
        ...


# -- the network layer ------------------------------------------------------------------------------------
def _problem_document(response: requests.Response) -> Optional[messages.Error]:
    """The response's ACME problem document (RFC 8555 6.7), None when it has none."""
    try:
        body = response.json()
        return messages.Error.from_json(body) if isinstance(body, dict) and body.get("type") else None
    except (ValueError, jose.DeserializationError):
        return None


class _Problem(Exception):
    """A failed response: the problem document (when there is one), the HTTP status and Retry-After."""

    def __init__(self, problem: Optional[messages.Error], status: int, retry_after: Optional[str],
                 text: str = "") -> None:
        self.problem, self.status, self.retry_after = problem, status, retry_after
        super().__init__(str(problem) if problem else f"HTTP {status}: {text[:200]}")

    @property
    def code(self) -> Optional[str]:
        return self.problem.code if self.problem is not None else None


def acme_session() -> requests.Session:
    """An HTTP session for talking to a CA: https only (redirects included) and answers bounded in size."""
    return new_session(https_only=True, max_body=MAX_RESPONSE_BYTES)


class _Network(acme_client.ClientNetwork):
    """ClientNetwork that keeps the response facts with each error, hands out nonces thread-safely and
    uses the engine's HTTP session (:mod:`keyvault_acme.transport`)."""

    def __init__(self, *args: Any, session: Optional[requests.Session] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.close()
        # https only, redirects included, and bounded answers: see keyvault_acme.transport. A session handed in
        # (one per CA and process, see acme_session) is shared with other clients of that CA: its connection too.
        self._shared_session = session is not None
        self.session = session if session is not None else acme_session()
        self._nonce_lock = threading.Lock()

    def __del__(self) -> None:
        if not self._shared_session:  # the library closes its session when the network goes; not a shared one
            super().__del__()

    # An instance method over the library's classmethod: the library calls it on the instance, and the error's
    # nonce goes into this instance's pool. acme is pinned to one major; tests/engine/test_acme_library.py
    # fails when a release moves what this overrides.
    def _check_response(self, response: requests.Response,  # type: ignore[override]
                        content_type: Optional[str] = None) -> requests.Response:
        try:
            return super()._check_response(response, content_type=content_type)
        except messages.Error as problem:
            self._keep_nonce(response)
            raise _Problem(problem, response.status_code, response.headers.get("Retry-After")) from None
        except acme_errors.ClientError:
            if response.ok:
                raise
            # The library raises ConflictError for any 409 before reading its body, which is a problem document
            # all the same (RFC 9773's alreadyReplaced is a 409): keep the CA's type and words.
            document = _problem_document(response)
            if document is not None:
                self._keep_nonce(response)
            raise _Problem(document, response.status_code, response.headers.get("Retry-After"),
                           "" if document else response.text) from None

    def _keep_nonce(self, response: requests.Response) -> None:
        # An error response carries a fresh nonce: keep it and save a newNonce round trip.
        if self.REPLAY_NONCE_HEADER in response.headers:
            with contextlib.suppress(acme_errors.Error):
                self._add_nonce(response)

    def _get_nonce(self, url: str, new_nonce_url: str) -> str:
        with self._nonce_lock:
            if self._nonces:
                return self._nonces.pop()
        # Pool empty: fetch one for ourselves (the library's check-then-pop races between threads).
        response = self._check_response(self.head(new_nonce_url or url), content_type=None)
        nonce = response.headers.get(self.REPLAY_NONCE_HEADER)
        if not nonce:
            raise acme_errors.MissingNonce(response)
        return jws.Header._fields["nonce"].decode(nonce)


# -- the client ---------------------------------------------------------------------------------------------
class AcmeClient:
    """One ACME account at one CA; thread-safe, shared by all orders of that account.

    ``account_key`` is the account's :class:`josepy.JWK` (EC P-256/P-384 or RSA). ``eab_kid`` and
    ``eab_hmac_key`` (base64url, as CAs hand it out) bind the account to an external one when the CA
    requires it. Registration happens lazily on first use: an existing account for the key is looked
    up first (``onlyReturnExisting``), else one is created with the terms of service agreed.
    """

    def __init__(self, directory_url: str, account_key: jose.JWK, *, contact: Sequence[str] = (),
                 eab_kid: Optional[str] = None, eab_hmac_key: Optional[str] = None,
                 alg: Optional[jose.JWASignature] = None, timeout: float = DEFAULT_TIMEOUT,
                 backoff: Backoff = DEFAULT_BACKOFF, poll_backoff: Backoff = POLL_BACKOFF,
                 network_timeout: int = 30, user_agent: str = USER_AGENT,
                 directory: Optional[messages.Directory] = None, session: Optional[requests.Session] = None) -> None:
        self.directory_url = directory_url
        self.timeout = timeout
        self.backoff = backoff  # between retries of a failed request
        self.poll_backoff = poll_backoff  # between polls of an order
        self._key = account_key
        self._contact = tuple(contact)
        self._eab = (eab_kid, eab_hmac_key) if eab_kid and eab_hmac_key else None
        self._net = _Network(key=account_key, alg=alg or _signing_alg(account_key), user_agent=user_agent,
                             timeout=network_timeout, session=session)
        self._lock = threading.RLock()  # registration reads the directory under the same lock
        # ``directory``: the CA's directory as another client of this process fetched it (one fetch per process
        # and CA; it changes only with a CA release).
        self._directory: Optional[messages.Directory] = directory
        self._account_url: Optional[str] = None
        self._existing_with_eab: Optional[str] = None  # an account found by key while EAB is configured

    # -- directory and account ----------------------------------------------------------------------------
    def _dir(self, deadline: Optional[float] = None) -> messages.Directory:
        if self._directory is None:
            with self._lock:
                if self._directory is None:
                    if not self.directory_url.lower().startswith("https://"):
                        raise errors.InsecureUrl(self.directory_url, " (the ACME directory URL)")
                    directory = self._retry("read the ACME directory", lambda: messages.Directory.from_json(
                        self._net.get(self.directory_url).json()), deadline)
                    _check_directory_urls(self.directory_url, directory)
                    self._directory = directory
        return self._directory

    @property
    def directory(self) -> DirectoryInfo:
        """The CA's directory metadata (fetched once)."""
        d = self._dir()
        meta = d.meta
        renewal_info = d._jobj.get("renewalInfo")  # absent in CAs without ARI: must degrade cleanly
        return DirectoryInfo(
            url=self.directory_url,
            caa_identities=tuple(meta.caa_identities or ()),
            profiles=dict(meta.profiles or {}),
            renewal_info=renewal_info,
            terms_of_service=meta.terms_of_service,
            external_account_required=bool(meta.external_account_required),
        )

    def directory_document(self, *, deadline: Optional[float] = None) -> messages.Directory:
        """The directory as fetched (once), to hand to another client of the same CA."""
        return self._dir(deadline)

    def read_directory(self, *, deadline: Optional[float] = None) -> DirectoryInfo:
        """:attr:`directory`, fetching it (once) within ``deadline`` rather than the client's whole timeout."""
        self._dir(deadline)
        return self.directory

    def account_url(self, *, deadline: Optional[float] = None) -> str:
        """The account's URL (its ``kid``), registering the account on first call."""
        if self._account_url is None:
            with self._lock:
                if self._account_url is None:
                    url = self._register(deadline)
                    # Sign with the kid from now on; publish the URL last, as other threads read it unlocked.
                    self._net.account = messages.RegistrationResource(body=messages.Registration(), uri=url)
                    self._account_url = url
        return self._account_url

    def find_account(self, *, deadline: Optional[float] = None) -> Optional[str]:
        """The URL of the account this key already has at the CA, or None; never registers one."""
        try:
            response = self._post(self._dir(deadline)["newAccount"], messages.NewRegistration(only_return_existing=True),
                                  "look up the ACME account", deadline)
        except errors.AcmeError as e:
            if e.problem_type.rsplit(":", 1)[-1] != "accountDoesNotExist":
                raise
            return None
        log.debug("ACME account exists at %s", response.headers["Location"])
        return response.headers["Location"]

    def change_key(self, new_key: jose.JWK, new_alg: Optional[jose.JWASignature] = None, *,
                   deadline: Optional[float] = None) -> str:
        """Account key rollover (RFC 8555 7.3.5): the account moves to ``new_key``, keeping its URL (and so its
        orders, authorizations and ARI history). The inner JWS is signed by the new key, the outer by the current
        one. Returns the account URL. This client still holds the old key afterwards: make a new one."""
        deadline = self._deadline(deadline)
        url = self.account_url(deadline=deadline)
        key_change = self._dir(deadline)["keyChange"]
        payload = json.dumps({"account": url, "oldKey": self._key.public_key().to_partial_json()}).encode()
        # The inner JWS carries no nonce and no kid: the new key's jwk and the keyChange URL (7.3.5).
        inner = jws.JWS.sign(payload, key=new_key, alg=new_alg or _signing_alg(new_key), nonce=None, url=key_change)
        self._post(key_change, inner, "roll the account key over (keyChange)", deadline)
        log.info("ACME account %s now uses a new key", url)
        return url

    def _register(self, deadline: Optional[float]) -> str:
        d = self._dir(deadline)
        existing = self.find_account(deadline=deadline)
        if existing is not None:
            if self._eab:
                # Whether this account was bound when it was created is the CA's secret; if the CA refuses it,
                # the error says why (see _post).
                log.info("ACME account %s exists for this key; the configured external account binding applies "
                         "only to new accounts", existing)
                self._existing_with_eab = existing
            return existing
        if self.directory.external_account_required and not self._eab:
            raise errors.PreflightError(f"the CA at {self.directory_url} requires external account binding; "
                                        "set acme.eab_kid and acme.eab_hmac (a Key Vault secret reference)")
        eab = (messages.ExternalAccountBinding.from_data(self._key.public_key(), self._eab[0], self._eab[1], d)
               if self._eab else None)
        registration = messages.NewRegistration(
            contact=tuple(f"mailto:{c}" if ":" not in c else c for c in self._contact),
            terms_of_service_agreed=True, external_account_binding=eab)
        response = self._post(d["newAccount"], registration, "register the ACME account", deadline)
        log.info("registered ACME account %s at %s", response.headers["Location"], self.directory_url)
        return response.headers["Location"]

    # -- orders -------------------------------------------------------------------------------------------
    def new_order(self, dns_names: Sequence[str], *, profile: Optional[str] = None,
                  replaces: Optional[str] = None, deadline: Optional[float] = None) -> Order:
        """Create an order for ``dns_names``. ``profile`` must be one the directory lists.

        ``replaces``: the ARI CertID (:func:`ari_cert_id`) of the certificate this order renews (RFC 9773 5),
        sent only to a CA that offers ARI. When the CA refuses it (``alreadyReplaced``, a certificate another
        account or CA issued, one it does not know), the order is placed once more without it: a renewal is
        never blocked by ARI.
        """
        deadline = self._deadline(deadline)
        directory = self.read_directory(deadline=deadline)
        directory.check_profile(profile, len(dns_names))
        self.account_url(deadline=deadline)
        identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in dns_names]
        if replaces and directory.renewal_info:
            replacing = _NewOrder(identifiers=identifiers, profile=profile, replaces=replaces)
            try:
                # One try: a CA's refusal of `replaces` can be a 5xx (Pebble, for a CertID it never issued),
                # which must not be waited out as an outage would.
                response = self._post(self._dir()["newOrder"], replacing, "create the order", deadline,
                                      retry_server_errors=False)
                return _order(response.headers["Location"], response.json())
            except errors.AcmeError as e:
                if not _refused_replaces(e):
                    raise
                log.warning("the CA refused to let this order replace certificate %s (%s); ordering without "
                            "'replaces'", replaces, one_line_error(e))
        body = messages.NewOrder(identifiers=identifiers, profile=profile)
        response = self._post(self._dir()["newOrder"], body, "create the order", deadline)
        return _order(response.headers["Location"], response.json())

    def resume_order(self, url: str, *, deadline: Optional[float] = None) -> Order:
        """Fetch an order by URL (e.g. one persisted before a crash)."""
        self.account_url(deadline=deadline)
        return _order(url, self._get(url, "read the order", self._deadline(deadline)).json())

    def dns_challenges(self, order: Order, *, deadline: Optional[float] = None) -> list[DnsChallenge]:
        """The DNS-01 challenges still to solve (authorizations already valid, e.g. reused, need none)."""
        deadline = self._deadline(deadline)
        bodies = self._authorizations(order, deadline)
        result = []
        for url, body in zip(order.authorizations, bodies):
            authz = messages.Authorization.from_json(body)
            if authz.status == messages.STATUS_VALID:
                continue
            identifier = _identifier(authz)
            if authz.status != messages.STATUS_PENDING:
                raise _authz_error(authz, identifier)
            dns01 = next((c for c in authz.challenges if isinstance(c.chall, acme_challenges.DNS01)), None)
            if dns01 is None:
                raise errors.OrderFailed(f"the CA offers no dns-01 challenge for {identifier}", identifier=identifier)
            result.append(DnsChallenge(identifier=identifier, value=dns01.chall.validation(self._key),
                                       challenge_url=dns01.uri, authorization_url=url))
        return result

    def deactivate_pending(self, order: Order, *, deadline: Optional[float] = None) -> list[str]:
        """Deactivate the order's authorizations still pending (RFC 8555 7.5.2): an order given up before its
        challenges were answered, so it does not sit at the CA for days counting against the account's pending
        authorizations (Let's Encrypt allows 300). Valid ones stay valid for reuse; answered ones are the CA's.
        Returns the identifiers deactivated."""
        deadline = self._deadline(deadline)
        bodies = self._authorizations(order, deadline)
        done = []
        for url, body in zip(order.authorizations, bodies):
            authz = messages.Authorization.from_json(body)
            if authz.status == messages.STATUS_PENDING:
                self._post(url, messages.UpdateAuthorization(status=messages.STATUS_DEACTIVATED),
                           f"deactivate the authorization for {authz.identifier.value}", deadline)
                done.append(_identifier(authz))
        return done

    def persist_challenges(self, order: Order, *, deadline: Optional[float] = None) -> list[PersistChallenge]:
        """The dns-persist-01 challenges still to answer; PreflightError when the CA offers none for a name (there
        is no fallback to dns-01: a certificate on dns-persist-01 has no right to write DNS records)."""
        deadline = self._deadline(deadline)
        bodies = self._authorizations(order, deadline)
        result = []
        for url, body in zip(order.authorizations, bodies):
            status = body.get("status")
            name = body.get("identifier", {}).get("value", "")
            identifier = f"*.{name}" if body.get("wildcard") else name
            if status == "valid":
                continue
            if status != "pending":
                raise _authz_error(messages.Authorization.from_json(body), identifier)
            offered = [c for c in body.get("challenges", ()) if c.get("type") == DNS_PERSIST_01]
            if not offered:
                types = ", ".join(sorted({str(c.get("type")) for c in body.get("challenges", ())})) or "none"
                raise errors.PreflightError(
                    f"the CA at {self.directory_url} does not offer {DNS_PERSIST_01} for {identifier} (it offers: "
                    f"{types}); the certificate asks for challenge: {DNS_PERSIST_01}, and there is no fallback to "
                    "dns-01, which needs DNS write rights its issuer does not have. Use a CA that offers "
                    f"{DNS_PERSIST_01}, or set challenge: dns-01 (the stack then grants DNS-01 rights)")
            chall = offered[0]
            result.append(PersistChallenge(identifier=identifier,
                                           issuer_domain_names=tuple(chall.get("issuer-domain-names") or ()),
                                           challenge_url=chall["url"], authorization_url=url))
        return result

    def challenge_values(self, order_url: str, *, deadline: Optional[float] = None) -> list[tuple[str, str]]:
        """``(identifier, TXT value)`` of every DNS-01 challenge of an order this account made, whatever state its
        authorizations are in: the values a run of ours published for it. Empty when the CA no longer has it."""
        deadline = self._deadline(deadline)
        try:
            order = self.resume_order(order_url, deadline=deadline)
            bodies = self._authorizations(order, deadline)
        except errors.AcmeError as e:
            if e.status in (404, 403) or e.problem_type.endswith((":malformed", ":unauthorized")):
                return []  # expired and gone at the CA, or not this account's: nothing we can prove ours
            raise
        values = []
        for body in bodies:
            authz = messages.Authorization.from_json(body)
            identifier = _identifier(authz)
            values += [(identifier, c.chall.validation(self._key)) for c in authz.challenges
                       if isinstance(c.chall, acme_challenges.DNS01)]
        return values

    def validate(self, order: Order, challenges: Sequence[DnsChallenge | PersistChallenge], *,
                 deadline: Optional[float] = None) -> Order:
        """Tell the CA the records are live, then poll the order until every authorization is done."""
        deadline = self._deadline(deadline)
        names = counted(sorted({c.identifier for c in challenges}), "name")
        log.info("the CA is validating %s", names)
        started = time.monotonic()
        each(lambda c: self._post(c.challenge_url, acme_challenges.DNS01Response(),
                                   f"answer the challenge for {c.identifier}", deadline), challenges)
        answered = time.monotonic()
        # Polling the order (one request per round) instead of each authorization: it turns "ready"
        # when all are valid, "invalid" when one failed. The first poll waits as long as this CA recently
        # took: asking sooner only finds the order still pending.
        first_wait = VALIDATION_PACE.expected(self.directory_url)
        order, polls = self._poll(order, {"pending"}, "wait for validation", deadline, first_wait=first_wait,
                                  count=True)
        if order.status == "invalid":
            raise self._order_failure(order, deadline)
        VALIDATION_PACE.observed(self.directory_url, time.monotonic() - answered, first_poll_done=polls == 1,
                                 waited=first_wait or 0.0)
        log.info("the CA validated %s in %.1f s", names, time.monotonic() - started)
        return order

    def finalize(self, order: Order, csr_der: bytes, *, preferred_chain: Optional[str] = None,
                 deadline: Optional[float] = None) -> IssuedChain:
        """Send the CSR (DER, e.g. Key Vault's), wait for issuance and download the chain.

        ``preferred_chain`` picks, among the default and alternate chains, the first whose top
        certificate's issuer common name matches; the default chain when none does.
        """
        deadline = self._deadline(deadline)
        retry_after = first_wait = None
        finalized: Optional[float] = None  # when the CA took the CSR, if this run learns the CA's pace from it
        if order.status == "ready":
            csr = x509.load_der_x509_csr(csr_der)
            response = self._post(order.finalize, messages.CertificateRequest(csr=csr), "finalize the order", deadline)
            order = _order(order.url, response.json())
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if order.status == "processing" and retry_after is None:  # the CA sets no pace: our own, learnt
                finalized, first_wait = time.monotonic(), ISSUANCE_PACE.expected(self.directory_url)
        order, polls = self._poll(order, {"pending", "ready", "processing"}, "wait for the certificate", deadline,
                                  retry_after=retry_after, first_wait=first_wait, count=True)
        if finalized is not None and order.status == "valid":
            ISSUANCE_PACE.observed(self.directory_url, time.monotonic() - finalized,
                                   first_poll_done=polls == 1 and first_wait is not None, waited=first_wait or 0.0)
        if order.status != "valid" or not order.certificate:
            raise self._order_failure(order, deadline)
        response = self._post(order.certificate, None, "download the certificate", deadline)
        chains = [response.text]
        if preferred_chain:
            for url in self._links(response, "alternate"):
                chains.append(self._post(url, None, "download an alternate chain", deadline).text)
        try:
            chosen = _choose_chain(chains, preferred_chain)
            certs = x509.load_pem_x509_certificates(chosen.encode())
        except ValueError as e:
            raise errors.ChainMismatch(f"the CA's download from {order.certificate} is not a PEM certificate chain "
                                       f"({e})") from None
        pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in certs]
        return IssuedChain(leaf_pem=pems[0], intermediates_pem=tuple(pems[1:]), order_url=order.url,
                           certificate_url=order.certificate)

    def obtain_chain(self, csr_der: bytes, dns_names: Sequence[str], solver: ChallengeSolver | PersistVerifier, *,
                     profile: Optional[str] = None, preferred_chain: Optional[str] = None,
                     replaces: Optional[str] = None, resume_url: Optional[str] = None,
                     order: Optional[Order] = None,
                     timeout: Optional[float] = None, deadline: Optional[float] = None) -> IssuedChain:
        """The whole issuance: order -> DNS-01 for every pending authorization -> finalize -> chain.

        Records are published through ``solver`` and removed after the certificate is downloaded (once the CA
        has validated, the certificate no longer depends on DNS), whatever happens; a
        :class:`PersistVerifier` instead only checks that the dns-persist-01 records are served (nothing written).
        ``resume_url`` continues an order created earlier (after a crash) when it is still usable, ``order`` one
        just created (a dns-persist-01 preflight makes it, to see the CA offers the challenge). The whole
        issuance ends by ``deadline`` (a ``time.monotonic()`` value), else within ``timeout`` seconds.
        """
        if deadline is None:
            deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        if resume_url and order is None:
            order = self.resume_order(resume_url, deadline=deadline)
            if order.status == "invalid" or set(order.identifiers) != {n.lower() for n in dns_names}:
                order = None
        if order is None:
            order = self.new_order(dns_names, profile=profile, replaces=replaces, deadline=deadline)
        if order.status == "pending" and isinstance(solver, PersistVerifier):
            # dns-persist-01: the records are already there (the stack's); only check and answer.
            persist = self.persist_challenges(order, deadline=deadline)
            if persist:
                solver.served(persist, self.account_url(deadline=deadline), deadline=deadline)
                order = self.validate(order, persist, deadline=deadline)
            else:
                order = self._poll(order, {"pending"}, "wait for the order", deadline)
        elif order.status == "pending":
            assert not isinstance(solver, PersistVerifier)
            challenges = self.dns_challenges(order, deadline=deadline)
            if challenges:
                # Finalized and downloaded before the records come down: once the CA has validated, the
                # certificate does not depend on DNS, so a slow or failing clean-up cannot cost it.
                with solver.published(challenges, deadline=deadline):
                    order = self.validate(order, challenges, deadline=deadline)
                    return self.finalize(order, csr_der, preferred_chain=preferred_chain, deadline=deadline)
            else:
                order = self._poll(order, {"pending"}, "wait for the order", deadline)
        return self.finalize(order, csr_der, preferred_chain=preferred_chain, deadline=deadline)

    # -- revocation and renewal info ------------------------------------------------------------------------
    def revoke(self, certificate: bytes | str | x509.Certificate, reason: str = "unspecified", *,
               deadline: Optional[float] = None) -> bool:
        """Revoke with an RFC 5280 reason name (see ``model.REVOCATION_REASONS``).

        Returns False when the CA says it was already revoked (revoking is idempotent for us).
        """
        code = REVOCATION_REASONS[revocation_reason(reason, "reason", "unspecified")]
        cert = _load_cert(certificate)
        deadline = self._deadline(deadline)
        self.account_url(deadline=deadline)
        try:
            self._post(self._dir()["revokeCert"], messages.Revocation(certificate=cert, reason=code),
                       f"revoke certificate {cert.serial_number:x}", deadline)
        except errors.AcmeError as e:
            if e.problem_type.endswith(":alreadyRevoked"):
                return False
            raise
        return True

    def renewal_info(self, certificate: bytes | str | x509.Certificate, *,
                     deadline: Optional[float] = None) -> Optional["AriAnswer"]:
        """The CA's renewal info for ``certificate`` (ARI, RFC 9773): window and Retry-After; None when the CA
        has no ARI. An unsigned GET: no account is needed."""
        url = self.read_directory(deadline=deadline).renewal_info
        if not url:
            return None
        cert_id = ari_cert_id(_load_cert(certificate))
        response = self._retry("read renewal info", lambda: self._net.get(f"{url.rstrip('/')}/{cert_id}"),
                               self._deadline(deadline))
        body = response.json()
        window = messages.RenewalInfo.from_json(body).suggested_window
        if window.end <= window.start:  # RFC 9773 4.2: such a window is invalid
            raise errors.AcmeError(f"the CA's renewal info for {cert_id} has an empty window "
                                   f"({when(window.start)} to {when(window.end)})")
        return AriAnswer(cert_id=cert_id, window=(window.start, window.end),
                         retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
                         explanation_url=body.get("explanationURL"))

    # -- internals ------------------------------------------------------------------------------------------
    def _deadline(self, deadline: Optional[float]) -> float:
        return deadline if deadline is not None else time.monotonic() + self.timeout

    def _post(self, url: str, body: Any, what: str, deadline: Optional[float], *,
              retry_server_errors: bool = True) -> requests.Response:
        new_nonce = self._dir(deadline)["newNonce"]
        kid = self._account_url  # None: signed with the key itself (newAccount, lookups)

        def post() -> requests.Response:
            return self._retry(what, lambda: self._net.post(url, body, new_nonce_url=new_nonce), deadline,
                               retry_server_errors=retry_server_errors)

        try:
            return post()
        except errors.AcmeError as e:
            code = (e.problem_type or "").rsplit(":", 1)[-1]
            if kid is not None and kid == self._existing_with_eab and code in ("unauthorized", "externalAccountRequired"):
                raise errors.AccountNotBound(
                    f"{e.detail}; the account {kid} already existed at the CA for this key and was used as it is: an "
                    "external account binding can only be given when an account is created, so acme.eab_kid and "
                    "acme.eab_hmac were not applied to it. Fix: give the account a new key, a new acme.account_key_secret "
                    "name (or, with acme.account_key kind key, a new acme.account_key.name); a new account is then "
                    "registered with the binding", problem_type=e.problem_type,
                    identifier=e.identifier, status=e.status) from None
            if kid is None or code != "accountDoesNotExist":
                raise
        # The CA no longer knows the account this long-lived client registered (a CA reset, a deactivation
        # elsewhere): register the key again, once, and sign the request with the new account.
        self._account_forgotten(kid, deadline)
        return post()

    def _account_forgotten(self, kid: str, deadline: Optional[float]) -> None:
        with self._lock:
            if self._account_url == kid:  # not re-registered by another thread meanwhile
                log.warning("the CA at %s no longer knows ACME account %s (accountDoesNotExist); registering the "
                            "account key again", self.directory_url, kid)
                self._account_url = None
                self._net.account = None
            self.account_url(deadline=deadline)

    def _get(self, url: str, what: str, deadline: Optional[float]) -> requests.Response:
        return self._post(url, None, what, deadline)  # POST-as-GET (RFC 8555 6.3)

    def _retry(self, what: str, call, deadline: Optional[float], *, retry_server_errors: bool = True):
        waiter = Waiter(f"ACME: {what}", deadline=self._deadline(deadline), backoff=self.backoff)
        bad_nonces = 0
        while True:
            try:
                return call()
            except _Problem as p:
                if p.code == "badNonce":
                    log.debug("badNonce on %s; retrying with a fresh nonce", what)
                    bad_nonces += 1
                    # A fresh nonce came with the error: go again at once, but back off if it keeps happening.
                    if bad_nonces > 3 or waiter.remaining <= 0:
                        waiter.sleep(0, last_error=p)
                elif p.status >= 500 and retry_server_errors:
                    waiter.sleep(parse_retry_after(p.retry_after), last_error=p)
                elif p.problem is not None:
                    raise problem_error(p.problem, status=p.status, retry_after=p.retry_after) from None
                else:
                    raise errors.AcmeError(str(p), status=p.status) from None
            except requests.exceptions.SSLError:
                raise  # an untrusted CA certificate does not heal by waiting
            except (requests.ConnectionError, requests.Timeout) as e:
                waiter.sleep(last_error=e)

    @overload
    def _poll(self, order: Order, waiting: set[str], what: str, deadline: float, *,
              retry_after: Optional[float] = None, first_wait: Optional[float] = None,
              count: Literal[False] = False) -> Order: ...

    @overload
    def _poll(self, order: Order, waiting: set[str], what: str, deadline: float, *,
              retry_after: Optional[float] = None, first_wait: Optional[float] = None,
              count: Literal[True]) -> tuple[Order, int]: ...

    def _poll(self, order: Order, waiting: set[str], what: str, deadline: float, *,
              retry_after: Optional[float] = None, first_wait: Optional[float] = None,
              count: bool = False) -> Order | tuple[Order, int]:
        """Poll until the order leaves ``waiting``. The first poll goes at once, unless the CA has just said
        it is processing the order (asking again right away cannot find it done), when to ask
        (``retry_after``), or the caller expects it to take ``first_wait`` seconds. ``count``: also return
        how many polls it took."""
        waiter = Waiter(f"ACME: {what}", deadline=deadline, backoff=self.poll_backoff)
        polls = 0
        # The CA's own Retry-After wins over what we learnt; a learnt wait is taken as it is (it may be shorter
        # than the backoff's first step), and the backoff starts only after the first poll.
        paused = first_wait is not None and retry_after is None
        if paused:
            waiter.pause(min(first_wait or 0.0, max(0.0, waiter.remaining / 2)))
        while order.status in waiting:
            if polls or retry_after is not None or (order.status == "processing" and not paused):
                waiter.sleep(retry_after)
            polls += 1
            response = self._get(order.url, what, deadline)
            # Retry-After on a poll is the CA's pacing request: honour it on the next sleep.
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            order = _order(order.url, response.json())
        return (order, polls) if count else order

    def _authorizations(self, order: Order, deadline: float) -> list[dict[str, Any]]:
        """The order's authorizations as the CA sends them (JSON), a few read at once."""
        return each(lambda url: self._get(url, "read an authorization", deadline).json(), order.authorizations)

    def _order_failure(self, order: Order, deadline: float) -> errors.AcmeError:
        for url in order.authorizations:
            authz = messages.Authorization.from_json(self._get(url, "read an authorization", deadline).json())
            if authz.status == messages.STATUS_INVALID:
                return _authz_error(authz, _identifier(authz))
        raw = self._get(order.url, "read the order", deadline).json()
        if raw.get("error"):
            return problem_error(messages.Error.from_json(raw["error"]))
        return errors.OrderFailed(f"the order ended {order.status} without an error from the CA")

    @staticmethod
    def _links(response: requests.Response, rel: str) -> list[str]:
        from requests.utils import parse_header_links

        return [link["url"] for link in parse_header_links(response.headers.get("Link", ""))
                if link.get("rel") == rel and "url" in link]


class Pace:
    """How long each CA recently took for one step of an order (validating its challenges, issuing after
    finalize), in this process (an exponentially weighted mean per directory URL), so the first poll waits
    about that long: a CA that takes 2 s is not asked ten times on a doubling backoff from 5 ms, and one that
    takes 1 ms is asked once after about 1 ms, not after the backoff's first 5 ms.

    Only ever a first wait before polling, never a sleep in place of it: the poll decides, and the backoff
    takes over when the order is still pending. When the first poll already found the order done, the CA
    may have been quicker than the wait: the estimate is nudged below the time observed, so a CA that got
    faster is followed down as well as up."""

    WEIGHT = 0.3  # of the newest observation
    NUDGE = 0.85  # of an observation that the first poll already found done
    CAP_S = 10.0  # never wait longer than this before the first poll

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}

    def expected(self, directory_url: str) -> Optional[float]:
        with self._lock:
            seconds = self._seconds.get(directory_url)
        return None if seconds is None else min(seconds, self.CAP_S)

    def observed(self, directory_url: str, seconds: float, *, first_poll_done: bool, waited: float = 0.0) -> None:
        """``seconds`` from answering the challenges to the poll that found the order done, after a first wait
        of ``waited``. When that first poll found it done, the CA took at most the wait plus the poll's own
        round trip, maybe far less: the sample is a little under the wait alone, or the round trip would hold
        the estimate at several times itself however fast the CA is."""
        sample = waited * self.NUDGE if first_poll_done else seconds
        with self._lock:
            before = self._seconds.get(directory_url)
            self._seconds[directory_url] = sample if before is None else \
                (1 - self.WEIGHT) * before + self.WEIGHT * sample


VALIDATION_PACE = Pace()  # answering the challenges -> the order is ready (or invalid)
ISSUANCE_PACE = Pace()  # finalize -> the order is valid, with its certificate


def each(fn, items: Sequence[Any], workers: int = 8) -> list[Any]:
    """``[fn(x) for x in items]``, a few at a time when there are several (100-name orders)."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


# -- pure helpers -------------------------------------------------------------------------------------------
def problem_error(problem: messages.Error, *, status: Optional[int] = None,
                  retry_after: Optional[str] = None) -> errors.AcmeError:
    """The typed error for an ACME problem document, keeping the CA's words and the identifier."""
    code = problem.code or (problem.typ or "").rsplit(":", 1)[-1]
    identifier = problem.identifier.value if problem.identifier else None
    detail = problem.detail or problem.title or code
    for sub in problem.subproblems or ():
        sub_id = sub.identifier.value if sub.identifier else None
        identifier = identifier or sub_id
        code = code if code not in ("", "compound", "malformed") else (sub.code or code)
        detail += f"; {sub_id or ''}: {sub.detail}"
    cls = _PROBLEM_ERRORS.get(code or "", errors.AcmeError)
    kw: dict[str, Any] = dict(problem_type=problem.typ, identifier=identifier, status=status,
                              document=problem.to_partial_json())
    if cls is errors.RateLimited:
        seconds = parse_retry_after(retry_after)
        kw["retry_after"] = (datetime.now(timezone.utc) + timedelta(seconds=seconds)) if seconds is not None else None
    return cls(detail, **kw)


def _identifier(authz: messages.Authorization) -> str:
    """The name an authorization is for, as the order asked for it (``*.example.com`` for a wildcard)."""
    return ("*." if authz.wildcard else "") + authz.identifier.value


def _authz_error(authz: messages.Authorization, identifier: str) -> errors.AcmeError:
    for c in authz.challenges:
        if c.error is not None:
            err = problem_error(c.error)
            return replace_identifier(err, identifier)
    return errors.OrderFailed(f"authorization is {authz.status.name}", identifier=identifier)


def replace_identifier(err: errors.AcmeError, identifier: str) -> errors.AcmeError:
    if err.identifier:
        return err
    kw: dict[str, Any] = dict(problem_type=err.problem_type, identifier=identifier, status=err.status,
                              document=err.document)
    if isinstance(err, errors.RateLimited):
        kw["retry_after"] = err.retry_after
    return type(err)(err.detail, **kw)


def _order(url: str, body: Mapping[str, Any]) -> Order:
    o = messages.Order.from_json(dict(body))
    return Order(url=url, status=o.status.name if o.status else "pending",
                 identifiers=tuple(i.value for i in (o.identifiers or ())),
                 authorizations=tuple(o.authorizations or ()), finalize=o.finalize, certificate=o.certificate,
                 profile=o.profile, expires=o.expires, replaces=body.get("replaces"))


def _check_directory_urls(directory_url: str, directory: messages.Directory) -> None:
    """InsecureUrl when the directory names an endpoint that is not https (before any request goes there)."""
    for name, value in directory._jobj.items():
        if isinstance(value, str) and not value.lower().startswith("https://"):
            raise errors.InsecureUrl(value, f" (the ACME directory at {directory_url} lists it as {name})")


class _NewOrder(messages.NewOrder):
    """newOrder with ARI's ``replaces`` (RFC 9773 5), which certbot's ``acme`` does not model yet."""

    replaces: Optional[str] = jose.field("replaces", omitempty=True)


# Problems with which a CA refuses an order's `replaces` rather than the order: it was replaced already, another
# account or CA issued it, or the CA does not know it (Pebble answers the last with serverInternal).
_REFUSED_REPLACES = ("alreadyReplaced", "unauthorized", "malformed", "serverInternal", "conflict")


def _refused_replaces(error: errors.AcmeError) -> bool:
    code = (error.problem_type or "").rsplit(":", 1)[-1]
    return code in _REFUSED_REPLACES or (error.status is not None and error.status >= 500)


def one_line_error(error: BaseException) -> str:
    return " ".join(str(error).split())


def _choose_chain(chains: Sequence[str], preferred: Optional[str]) -> str:
    if preferred:
        for chain in chains:
            top = x509.load_pem_x509_certificates(chain.encode())[-1]
            cns = [a.value for a in top.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
            if preferred in cns:
                return chain
    return chains[0]


def _load_cert(certificate: bytes | str | x509.Certificate) -> x509.Certificate:
    if isinstance(certificate, x509.Certificate):
        return certificate
    data = certificate.encode() if isinstance(certificate, str) else certificate
    return x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----") else \
        x509.load_der_x509_certificate(data)


def ari_cert_id(cert: x509.Certificate) -> str:
    """The ARI certificate identifier (RFC 9773 4.1): base64url(AKI keyIdentifier) '.' base64url(serial)."""
    return acme_client._renewal_info_path_component(cert)


def _signing_alg(key: jose.JWK) -> jose.JWASignature:
    if isinstance(key, jose.JWKEC):
        return {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}[key.key.curve.key_size]
    if isinstance(key, jose.JWKRSA):
        return jose.RS256
    raise errors.SpecError("acme.account_key", f"unsupported account key type {type(key).__name__}",
                           "use an EC P-256/P-384 or RSA key, or pass alg")
