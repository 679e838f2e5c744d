"""``Engine.check``: every precondition of issuing one certificate, checked without creating anything.

Steps, in order (:data:`STEPS`): the spec (offline); credentials (a token for each service needed); the
vault (reachable, and we may read the certificate and the account key's secret); the CA's directory;
the profile; every zone writable; every zone's NS delegation (for dns-persist-01 instead of these two: every
name's persistent record served by every server); CAA for every name. A failed step gives
one :class:`~keyvault_acme.model.CheckResult` with what was seen and the fix; steps that need what a
failed step provides are left out rather than failing again for the same reason.

Nothing is written anywhere: "zones writable" asks ARM's permissions API for the TXT record sets the
challenges would use (Azure DNS), or has the RFC 2136 server answer its SOA and accept a TSIG-signed
update holding only a prerequisite (it changes nothing).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .account import key_from_secret, key_vault_account_key
from .acme_client import DNS_PERSIST_01, AcmeClient
from .dns import persist
from .dns.base import Challenge, ChecksWritable, DnsProvider, KnowsDelegation
from .dns.challenges import DnsSolver
from .dns.propagation import by_server, ns_names, resolver_servers
from .dns.registry import zone_type
from .errors import (
    CREDENTIALS_HINT,
    AccountKeyRefused,
    CaaForbidsCa,
    KeyVaultAcmeError,
    PreflightError,
    SpecError,
    one_line,
)
from .keyvault import CHAIN_SUFFIX, is_managed
from .model import CertificateSpec, CheckResult, Zone
from .names import counted, zone_for
from .preflight import caa_lookup, check_caa, check_spec
from .timefmt import when
from .wiring import Wiring

if TYPE_CHECKING:
    from .acme_client import DirectoryInfo

STEPS = ("spec", "credentials", "vault", "CA directory", "profile", "zones writable", "NS delegation",
         "dns-persist-01 record", "CAA", "leftovers")
TOKEN_SCOPES = {"Key Vault": "https://vault.azure.net/.default",
                "Azure Resource Manager": "https://management.azure.com/.default"}


def finding(error: BaseException) -> str:
    """:func:`one_line` without the error's hint: a check result shows the hint once, as its fix."""
    text = error.finding if isinstance(error, KeyVaultAcmeError) else str(error)
    return " ".join(text.split()) or type(error).__name__


def ns_verdict(zone: str, expected: Iterable[str], source: str, served: Mapping[str, Iterable[str]]) -> CheckResult:
    """Pure: does every server in ``served`` (who -> NS names) serve the NS set ``source`` lists for ``zone``?
    Names compare without trailing dots and case."""
    def norm(names: Iterable[str]) -> list[str]:
        return sorted({n.rstrip(".").lower() for n in names})

    want = norm(expected)
    for who, names in served.items():
        got = norm(names)
        if got != want:
            return CheckResult(
                "NS delegation", False,
                f"{zone}: {who} serves NS {', '.join(got)}, but {source} lists {', '.join(want)}",
                f"delegate {zone} to {', '.join(want)} at its registrar or parent zone (the CA resolves "
                f"through the delegation)")
    return CheckResult("NS delegation", True, f"{zone}: {', '.join(served)} serve{'s' if len(served) == 1 else ''}"
                                              f" the NS set {source} lists ({', '.join(want)})")


class Checks:
    """The steps for one spec, through the engine's :class:`~keyvault_acme.wiring.Wiring` (the same clients an
    issuance uses); :meth:`run` is ``Engine.check``."""

    def __init__(self, wiring: Wiring, spec: CertificateSpec, deadline: float) -> None:
        self.wiring, self.spec, self.deadline = wiring, spec, deadline

    def run(self) -> tuple[CheckResult, ...]:
        try:
            names = check_spec(self.spec)
        except SpecError as e:
            return (CheckResult("spec", False, f"{e.field}: {e.problem}", e.fix),)
        results = [CheckResult("spec", True, f"{counted(list(names), 'name')} in "
                                             f"{counted([z.name for z in self.spec.zones], 'zone')}")]
        credentials = self.credentials()
        results.append(credentials)
        vault = self.vault() if credentials.ok else None
        if vault is not None:
            results.append(vault)
        directory, result = self.directory()
        results.append(result)
        if directory is not None:
            results.append(self.profile(directory))
        if self.spec.challenge == DNS_PERSIST_01:
            # Nothing is written: instead of write rights, the stack's records must be served everywhere.
            providers = self.wiring.providers(self.spec, self.deadline)
            if directory is not None:
                results += self.persist_records(names, directory, providers)
        else:
            providers, problems = self.providers(azure=credentials.ok)
            results += problems
            writable, used = self.zones_writable(names, providers)
            results += writable
            results += self.delegation({z: p for z, p in providers.items() if z in used})
        if directory is not None and providers:
            results.append(self.caa(names, directory, providers))
        if self.spec.challenge == DNS_PERSIST_01:
            results.append(CheckResult("leftovers", True, "dns-persist-01 writes no challenge record to leave behind"))
        elif vault is not None and vault.ok and directory is not None:
            results.append(self.leftovers(providers))
        return tuple(results)

    # -- steps ------------------------------------------------------------------------------------------

    def credentials(self) -> CheckResult:
        arm = self._azure_zones() and self.spec.challenge != DNS_PERSIST_01  # dns-persist-01 never calls ARM
        needed = ["Key Vault"] + (["Azure Resource Manager"] if arm else [])
        try:
            credential = self.wiring.credential()
            for service in needed:
                credential.get_token(TOKEN_SCOPES[service])
        except Exception as e:  # noqa: BLE001 - whatever the credential chain raises is the finding
            return CheckResult("credentials", False, one_line(e), CREDENTIALS_HINT)
        return CheckResult("credentials", True, f"{type(credential).__name__} has tokens for {' and '.join(needed)}")

    def vault(self) -> CheckResult:
        spec = self.spec
        secret = spec.acme.account_key_secret
        in_key = spec.acme.account_key_kind == "key"
        try:
            vault = self.wiring.vault(spec.vault_url)
            facts = vault.certificate(spec.name, deadline=self.deadline)
            vault.refuse_foreign_secret(f"{spec.name}{CHAIN_SUFFIX}", deadline=self.deadline)
            if in_key:
                account = self._account_key(vault)
            else:
                account = bool(vault.secret_versions(secret, deadline=self.deadline))
                vault.refuse_foreign_secret(secret, deadline=self.deadline)
        except Exception as e:  # noqa: BLE001 - 403, unreachable vault, bad URL: each is the finding
            fix = getattr(e, "hint", "") or "check the vault URL, the network and the identity's Key Vault roles"
            return CheckResult("vault", False, finding(e), fix)
        if facts is not None and not is_managed(facts):
            return CheckResult("vault", False, f"{facts.id} exists and is not managed by keyvault-acme",
                               "choose another certificate name, or tag it managed-by=keyvault-acme to adopt it")
        current = (f"current version {facts.version}, valid until {when(facts.not_after)}" if facts
                   else "not issued yet")
        key = "exists" if account else "will be created at the first issuance"
        where = (f"key {spec.acme.account_key_name} (Key Vault signs)" if in_key else f"secret {secret}")
        return CheckResult("vault", True, f"{spec.vault_url}: certificate {spec.name} {current}; ACME account key "
                                          f"{where} {key}")

    def _account_key(self, vault: Any) -> bool:
        """Whether the account's Key Vault key exists (and may be one); raises when it may not."""
        try:
            vault.signing_key(self.spec.acme.account_key_name, create=False, deadline=self.deadline)
        except AccountKeyRefused as e:
            if e.status == 404:
                return False
            raise
        return True

    def directory(self) -> tuple["DirectoryInfo | None", CheckResult]:
        url = self.spec.acme.directory_url
        try:
            directory = self.wiring.directory_client(url).read_directory(deadline=self.deadline)
        except Exception as e:  # noqa: BLE001 - unreachable, untrusted TLS, not an ACME directory
            return None, CheckResult("CA directory", False, f"{url}: {one_line(e)}",
                                     "check acme.directory_url, the network and the CA bundle")
        if directory.external_account_required and not (self.spec.acme.eab_kid and self.spec.acme.eab_hmac):
            return directory, CheckResult("CA directory", False, f"{url} requires external account binding",
                                          "set acme.eab_kid and acme.eab_hmac (a Key Vault secret reference)")
        identities = ", ".join(directory.caa_identities) or "none listed"
        return directory, CheckResult("CA directory", True, f"{url}: CAA identities {identities}; renewal info "
                                                            f"{'offered' if directory.renewal_info else 'not offered'}")

    def profile(self, directory: "DirectoryInfo") -> CheckResult:
        offered = ", ".join(sorted(directory.profiles)) or "none"
        profile, count = self.spec.profile, len(self.spec.dns_names)
        try:
            directory.check_profile(profile, count)
        except PreflightError as e:
            fix = ("split the certificate, or choose a profile that allows more names" if profile in directory.profiles
                   or not profile else "set profile to an offered one, or remove it")
            return CheckResult("profile", False, one_line(e), fix)
        limit = f"{count} of at most {directory.name_limit(profile)} names"
        if not profile:
            return CheckResult("profile", True, f"none requested: the CA's default (offered: {offered}); {limit}")
        return CheckResult("profile", True, f"{profile}: {directory.profiles[profile]}; {limit}")

    def providers(self, *, azure: bool) -> tuple[dict[str, Any], list[CheckResult]]:
        """A provider per zone; a zone whose provider cannot be built (its TSIG secret unreadable) is a
        "zones writable" failure. Azure zones need working credentials."""
        providers: dict[str, Any] = {}
        problems = []
        for zone in self.spec.zones:
            if zone_type(zone).uses_azure_resource_manager and not azure:
                continue
            try:
                providers[zone.name] = self.wiring.provider(zone, self.spec, self.deadline)
            except Exception as e:  # noqa: BLE001 - e.g. the TSIG secret is missing or not readable
                problems.append(CheckResult("zones writable", False, f"{zone.name}: {finding(e)}",
                                            getattr(e, "fix", "") or getattr(e, "hint", "")))
        return providers, problems

    def zones_writable(self, names: Sequence[str], providers: dict[str, Any]) -> tuple[list[CheckResult], set[str]]:
        """Results per zone a challenge would be written in, and the zones that matter (the names' own and
        those their ``_acme-challenge`` CNAMEs point into)."""
        zones = [z.name for z in self.spec.zones]
        names = self._names_in(names, providers)
        used = {zone_for(n, zones) for n in names}
        if not names:
            return [], used
        solver = DnsSolver(providers, resolvers=self.spec.resolvers)
        try:  # where the challenges would be written, after CNAME delegation
            placements = solver.place([Challenge(n, "") for n in names])
        except KeyVaultAcmeError as e:
            return [CheckResult("zones writable", False, finding(e), getattr(e, "fix", "") or e.hint)], used
        records: dict[str, list[str]] = {}
        for p in placements:
            records.setdefault(p.zone, [])
            if p.record not in records[p.zone]:
                records[p.zone].append(p.record)
        return [self._writable(providers[zone], zone, sorted(recs)) for zone, recs in records.items()], \
            used | set(records)

    def _writable(self, provider: DnsProvider, zone: str, records: list[str]) -> CheckResult:
        if not isinstance(provider, ChecksWritable):
            return CheckResult("zones writable", True, f"{zone}: not checked (its provider cannot tell without "
                                                       "writing); the first challenge shows")
        try:
            found = provider.writable(zone, records, deadline=self.deadline)
        except KeyVaultAcmeError as e:
            return CheckResult("zones writable", False, f"{zone}: {finding(e)}", e.hint)
        return CheckResult("zones writable", found.ok, found.detail, found.fix)

    def delegation(self, providers: dict[str, Any]) -> list[CheckResult]:
        results = []
        for zone, provider in providers.items():
            if not isinstance(provider, KnowsDelegation):
                continue  # the provider cannot say which servers the zone should be delegated to
            try:
                expected, source = provider.delegation(zone, deadline=self.deadline)
                resolvers = by_server(resolver_servers(self.spec.resolvers))
                served = ({who: ns_names(zone, addresses) for who, addresses in resolvers.items()} if resolvers
                          else {"public DNS": ns_names(zone)})
            except KeyVaultAcmeError as e:
                results.append(CheckResult("NS delegation", False, f"{zone}: {one_line(e)}",
                                           "delegate the zone, or set resolvers to servers that answer for it"))
                continue
            results.append(ns_verdict(zone, expected, source, served))
        return results

    def persist_records(self, names: Sequence[str], directory: "DirectoryInfo",
                        providers: dict[str, Any]) -> list[CheckResult]:
        """dns-persist-01: every name's ``_validation-persist`` record, as each authoritative server (or resolver)
        serves it, names this CA and the account. Reads DNS and looks the account up; registers nothing."""
        step = "dns-persist-01 record"
        try:
            account_url = self._existing_account_url()
        except Exception as e:  # noqa: BLE001 - the key unreadable, the CA unreachable: each is the finding
            return [CheckResult(step, False, f"cannot look the ACME account up: {one_line(e)}",
                                getattr(e, "hint", "") or "check the account key's Key Vault roles and the CA")]
        if account_url is None:
            return [CheckResult(step, False, "the account key has no account at the CA yet, and the records must "
                                             "name the account URL",
                                "deploy the stack: it registers the account and writes the records")]
        solver = DnsSolver(providers, resolvers=self.spec.resolvers)
        expected = persist.records_for(names, (directory.caa_identities or ("<issuer domain name>",))[0],
                                       account_url, persist_until=self.spec.persist_until)
        results = []
        for record, value in expected.items():
            wildcard = any(n.startswith("*.") and persist.record_name(n) == record for n in names)
            identifier = ("*." if wildcard else "") + record.removeprefix(persist.LABEL + ".")
            try:
                servers = tuple(solver.servers(solver.zone_of(record)))
                missing = persist.findings([persist.PersistExpectation(identifier, directory.caa_identities, servers)],
                                           account_url)
            except KeyVaultAcmeError as e:
                results.append(CheckResult(step, False, f"{record}: {one_line(e)}", e.hint))
                continue
            if missing:
                shown = "; ".join(f"{server}: {problem}" for _, server, problem in missing[:3])
                results.append(CheckResult(step, False, f"{record}: not served as needed by "
                                                        f"{counted(sorted({str(m[1]) for m in missing}), 'server')}: "
                                                        f"{shown}", f"publish {record} TXT {value!r} (the stack does)"))
            else:
                results.append(CheckResult(step, True, f"{record}: served by every server "
                                                       f"({counted(sorted(str(s) for s in servers), 'server')})"))
        return results

    def _existing_account_url(self) -> str | None:
        """The account URL of the spec's key at its CA, or None when there is no key or no account yet (nothing
        is created: neither the key nor the account)."""
        acme = self.spec.acme
        vault = self.wiring.vault(self.spec.vault_url)
        if acme.account_key_kind == "key":
            if not self._account_key(vault):
                return None
            key = key_vault_account_key(vault, acme.account_key_name, deadline=self.deadline)
            jwk, alg = key.jwk, key.alg
        else:
            found = vault.get_secret_and_tags(acme.account_key_secret, deadline=self.deadline)
            if found is None:
                return None
            jwk, alg = key_from_secret(found[0]), None
        return AcmeClient(acme.directory_url, jwk, alg=alg, timeout=self.wiring.timeout_s).find_account(
            deadline=self.deadline)

    def caa(self, names: Sequence[str], directory: "DirectoryInfo", providers: dict[str, Any]) -> CheckResult:
        identities = directory.caa_identities
        checked = self._names_in(names, providers)
        try:
            check_caa(checked, identities, caa_lookup(DnsSolver(providers, resolvers=self.spec.resolvers)))
        except CaaForbidsCa as e:
            return CheckResult("CAA", False, one_line(e), "let the CA issue there, or remove the name")
        except KeyVaultAcmeError as e:
            return CheckResult("CAA", False, finding(e), e.hint)
        allowed = f"this CA ({', '.join(identities)})" if identities else "any CA whose identity is not excluded"
        return CheckResult("CAA", True, f"{counted(list(checked), 'name')}: CAA lets {allowed} issue")

    def leftovers(self, providers: dict[str, Any]) -> CheckResult:
        """Challenge values a run that stopped (killed, crashed) left in DNS: found from the ACME order its
        pending operation records (:mod:`.runs`), so only values this engine wrote count. Read-only: the
        order is read at the CA and the records are asked of the zones' servers."""
        from datetime import datetime, timezone

        from .dns.propagation import query, txt_values
        from .runs import RUN_TAG, RunRecord, creator_gone, leftover_order, process_alive, this_run

        spec = self.spec
        try:
            vault = self.wiring.vault(spec.vault_url)
            props = vault.pending_properties(spec.name, deadline=self.deadline)
            record = RunRecord.parse((props.tags or {}).get(RUN_TAG)) if props is not None else None
            if props is None or record is None or not record.order_url:
                # No run stopped mid-way; one that finished may still have failed to clean up (its version says).
                current = vault.certificate(spec.name, chain=False, deadline=self.deadline)
                order_url = leftover_order(dict(current.tags)) if current is not None else None
                if current is None or order_url is None:
                    return CheckResult("leftovers", True, "no run left challenge values it knows of")
                who = f"the run that issued version {current.version}"
            elif not creator_gone(record, props.created_on, datetime.now(timezone.utc), self.wiring.timeout_s,
                                  host=this_run().host, alive=process_alive):
                return CheckResult("leftovers", True, f"{record.describe()} is issuing this certificate (since "
                                                      f"{when(props.created_on)}); its records are its own")
            else:
                order_url, who = record.order_url, f"{record.describe()}, which stopped,"
            client = self.wiring.account(spec, vault, self.deadline)
            values = client.challenge_values(order_url, deadline=self.deadline)
            solver = DnsSolver(providers, resolvers=spec.resolvers)
            placements = solver.place([Challenge(i, v) for i, v in values])
            live = sorted({p.record for p in placements
                           if any(p.value in txt_values(query(p.record, "TXT", server), p.record)
                                  for server in solver.servers(p.zone))})
        except Exception as e:  # noqa: BLE001 - a leftover we cannot look for is reported, not raised
            return CheckResult("leftovers", False, f"could not look for challenge values left by an earlier run: "
                                                   f"{finding(e)}", getattr(e, "hint", "") or "run check again")
        if not live:
            return CheckResult("leftovers", True, f"{who} left no challenge values in DNS")
        return CheckResult("leftovers", False, f"{who} left challenge values of its order {order_url} at "
                                               f"{counted(live, 'TXT record')}",
                           "issue or renew this certificate: the next run removes exactly those values")

    def _azure_zones(self) -> list[Zone]:
        return [z for z in self.spec.zones if zone_type(z).uses_azure_resource_manager]

    def _names_in(self, names: Sequence[str], providers: dict[str, Any]) -> list[str]:
        """The names whose zone has a provider (Azure zones have none when credentials failed)."""
        zones = [z.name for z in self.spec.zones]
        return [n for n in names if zone_for(n, zones) in providers]
