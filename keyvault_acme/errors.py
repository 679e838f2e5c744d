"""Errors as classes: each says what went wrong, in whose words, and what to do about it.

No error text may carry private key material or secret values; callers may log ``str(error)``.
"""
from __future__ import annotations

import reprlib
from datetime import datetime
from typing import Any, Mapping

from .timefmt import when

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4
_SHOWN.maxlevel = 2

CREDENTIALS_HINT = ("sign in with 'az login', run with a managed identity, or set AZURE_CLIENT_ID and "
                    "AZURE_TENANT_ID for workload identity federation")


class KeyVaultAcmeError(Exception):
    """Base of every error the engine raises on purpose."""

    retryable: bool = False
    hint: str = ""

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint and self.hint not in text else text

    @property
    def finding(self) -> str:
        """What went wrong without the hint: for reports that show the hint separately, as the fix."""
        return super().__str__()

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (keyvault_acme.bulk's workers): the default pickling calls
        # ``cls(*args)``, which fails for every subclass whose __init__ takes other arguments, and the pool
        # then reports a broken process instead of the error.
        return _rebuilt, (type(self), self.args, dict(self.__dict__))


def _rebuilt(cls: type[KeyVaultAcmeError], args: tuple[Any, ...], state: dict[str, Any]) -> KeyVaultAcmeError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def shown(value: object) -> str:
    """A short repr of any input value for an error message: long strings, lists and mappings are cut, deep ones
    flattened (reprlib), so a huge or self-similar value never becomes a huge message or a long computation."""
    return _SHOWN.repr(value)


def _bounded(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class SpecError(KeyVaultAcmeError, ValueError):
    """Bad input, found before anything is created. Names the field and the fix (each part kept short)."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        field, problem, fix = _bounded(field, 200), _bounded(problem), _bounded(fix)
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}" + (f"; {fix}" if fix else ""))


class NameNotAuthorized(SpecError):
    """A DNS name outside the workload's allowlist."""


class PreflightError(KeyVaultAcmeError):
    """A check that needs the network failed before any order: CAA, zone access, delegation, CA directory."""


class CaaForbidsCa(PreflightError):
    pass


class DnsError(KeyVaultAcmeError):
    retryable = True


class DnsForbidden(DnsError):
    """The DNS service answered 403: the identity (Azure) or API token (Cloudflare) may not read or write the
    zone or record set."""

    retryable = False
    hint = "grant the identity 'DNS Zone Contributor' on the zone or a TXT record-set role"


class PropagationTimeout(DnsError):
    """The challenge record was not served by every authoritative server before the deadline."""


class KeyVaultError(KeyVaultAcmeError):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status, self.code = status, code
        super().__init__(message)


class KeyVaultReadOnly(KeyVaultError):
    """The vault rejects writes during a regional failover; retry later."""

    retryable = True
    hint = "the vault is read-only during a regional failover; retry in a few minutes"


class KeyVaultUnreachable(KeyVaultError):
    """No connection to the vault (refused, no route, name not resolved, the proxy refused) for long enough that
    waiting longer would only delay the answer: a command fails in seconds, not at the operation's deadline."""

    hint = "check the network, the proxy (HTTPS_PROXY, NO_PROXY) and the vault URL"


class KeyVaultForbidden(KeyVaultError):
    hint = "grant the identity the role named in README's permissions table on this vault"


class CertificateDeletedButRecoverable(KeyVaultError):
    """The name is held by a soft-deleted certificate (409 ObjectIsDeletedButRecoverable)."""

    hint = ("a soft-deleted certificate holds this name: recover it (az keyvault certificate recover) to keep it, "
            "or purge it (az keyvault certificate purge), then retry")


class HsmNotAvailable(KeyVaultError):
    """The vault refuses HSM-protected keys (``key.kty`` RSA-HSM / EC-HSM): it is a standard vault."""

    hint = "use a premium vault for RSA-HSM / EC-HSM keys, or set key.kty to EC or RSA (software-protected)"


class SecretRefused(KeyVaultError):
    """A secret the engine was about to read is not one it may read: it belongs to a certificate (Key Vault
    marks those ``managed``; an exportable certificate's secret holds its private key), or a secret the engine
    writes itself does not carry the engine's tag. Decided from properties, before any value is fetched."""

    hint = "rename the certificate or secret whose name collides"


class AccountKeyRefused(KeyVaultError):
    """The Key Vault key named as the ACME account key cannot be one: it belongs to a certificate, or it is not
    an EC P-256 key that may sign."""

    hint = "name a Key Vault key of its own (EC P-256, sign allowed) in acme.account_key.name"


class CertificateNotFound(KeyVaultError):
    """The Key Vault certificate does not exist (or has no issued version yet)."""


class CertificateBusy(KeyVaultAcmeError):
    """Another run (another process: a CLI next to a scheduled pulumi up) is issuing this certificate now."""

    retryable = True
    hint = "another run is issuing this certificate; retry when it has finished"


class CertificateExpired(KeyVaultAcmeError):
    """The version has expired: CAs refuse to revoke it, and no client trusts it any more."""


class CertificateMismatch(KeyVaultAcmeError):
    """Key Vault's CSR or an existing certificate does not match the spec (names, key)."""


class AcmeError(KeyVaultAcmeError):
    """An ACME problem document (RFC 8555 6.7), with the CA's own words."""

    problem_type: str = "urn:ietf:params:acme:error:serverInternal"

    def __init__(self, detail: str, *, problem_type: str | None = None, identifier: str | None = None,
                 status: int | None = None, document: Mapping[str, Any] | None = None) -> None:
        self.detail, self.identifier, self.status = detail, identifier, status
        self.document = document  # the CA's problem document as it sent it (JSON), when there was one
        if problem_type:
            self.problem_type = problem_type
        where = f" for {identifier}" if identifier else ""
        super().__init__(f"ACME {self.problem_type.rsplit(':', 1)[-1]}{where}: {detail}")


class RateLimited(AcmeError):
    retryable = True

    def __init__(self, detail: str, *, retry_after: datetime | None = None, **kw) -> None:
        self.retry_after = retry_after
        super().__init__(detail, **kw)
        later = f" after {when(retry_after)}" if retry_after else " later"
        self.hint = f"the CA's rate limit was hit; retry{later}"


class AcmeUnauthorized(AcmeError):
    hint = "the CA refused the account or authorization; check the account and that the challenge record was served"


class AccountNotBound(AcmeUnauthorized):
    """The CA refused an account that existed before external account binding was configured: a binding can only
    be given when an account is created."""

    hint = ("the account was registered without external account binding, which cannot be added to it: set "
            "acme.account_key_secret to a new secret name so a new account is registered with the binding")


class AcmeDnsProblem(AcmeError):
    retryable = True
    hint = "the CA could not look up the challenge record; check NS delegation and that the zone is public"


class AcmeCaaProblem(AcmeError):
    hint = "a CAA record forbids this CA; add issue/issuewild for the CA's identity"


class RejectedIdentifier(AcmeError):
    hint = "the CA will not issue for this name; remove it from dns_names"


class BadCsr(AcmeError):
    hint = "Key Vault's CSR was refused; check key type and names against the CA's profile"


class OrderFailed(AcmeError):
    retryable = True


class InsecureUrl(KeyVaultAcmeError):
    """A request was about to go to a URL that is not https (a CA's redirect or directory named one). Refused
    before anything is sent: ACME requests carry account signatures and certificates, and an http:// hop is
    readable and changeable by anyone on the path."""

    def __init__(self, url: str, where: str = "") -> None:
        self.url = url
        shown = url if len(url) <= 200 else url[:200] + "..."
        super().__init__(f"refused to send a request to {shown}{where}: every ACME request must use https; "
                         "fix the CA's directory URL, or ask the CA why it sends clients to a URL that is not https")


class ResponseTooLarge(KeyVaultAcmeError):
    """An answer longer than any honest one (an ACME chain is a few kilobytes); reading stopped at the bound."""

    def __init__(self, url: str, limit: int) -> None:
        self.url, self.limit = url, limit
        super().__init__(f"the answer from {url[:200]} is longer than {limit} bytes, far more than any ACME answer; "
                         "refused without reading the rest")


class UntrustedDirectory(KeyVaultAcmeError):
    """A certificate's ``acme-directory`` tag names a CA the spec does not configure: revocation (which signs
    with the account key and disables the version) goes only to the configured CAs."""


class ChainMismatch(CertificateMismatch):
    """The CA's chain is not what was asked for: another key or other names in the leaf, a chain that does not
    verify. Nothing is stored or merged."""


class Deadline(KeyVaultAcmeError):
    """A wait ran past its deadline (polling an order, propagation, Key Vault retries)."""

    retryable = True


def with_note(error: KeyVaultAcmeError, note: str) -> KeyVaultAcmeError:
    """The same error (same class, same facts) with ``note`` added to its message."""
    if isinstance(error, AcmeError):
        kw: dict = dict(problem_type=error.problem_type, identifier=error.identifier, status=error.status)
        if isinstance(error, RateLimited):
            kw["retry_after"] = error.retry_after
        return type(error)(f"{error.detail}; {note}", **kw)
    if isinstance(error, SpecError):
        return type(error)(error.field, error.problem, f"{error.fix}; {note}" if error.fix else note)
    if isinstance(error, KeyVaultError):
        return type(error)(f"{error}; {note}", status=error.status, code=error.code)
    try:
        return type(error)(f"{error}; {note}")
    except TypeError:  # a class with other arguments: the note still reaches the reader
        return KeyVaultAcmeError(f"{error}; {note}")


def one_line(error: BaseException) -> str:
    """An error as one line (its text's whitespace collapsed), for logs and messages; its class when it has none."""
    return " ".join(str(error).split()) or type(error).__name__
