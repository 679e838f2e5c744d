"""A run of the engine in its own process, so a test can kill it (SIGKILL) or let it fail and exit: ``python -m
tests.engine.run_issue '<json>'`` issues one certificate with the environment's Azure credentials, like the CLI.

The JSON holds what the spec needs (see :func:`spec_from`); the exit code is 0 when issued, 1 with the error
on stderr otherwise.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import AcmeAccount, AzureDnsZone, CertificateSpec, Rfc2136Zone, SecretRef


def spec_from(d: dict[str, Any]) -> CertificateSpec:
    zones = tuple(AzureDnsZone(z["resource_id"]) if "resource_id" in z else
                  Rfc2136Zone(zone=z["zone"], server=z["server"], tsig_key_name=z["tsig_key_name"],
                              tsig_secret=SecretRef(z["tsig_secret"])) for z in d["zones"])
    return CertificateSpec(vault_url=d["vault_url"], name=d["name"], dns_names=tuple(d["dns_names"]), zones=zones,
                           acme=AcmeAccount(directory_url=d["directory_url"]), resolvers=tuple(d["resolvers"]),
                           propagation_timeout_s=d.get("propagation_timeout_s", 20.0))


def spec_json(spec: CertificateSpec) -> str:
    zones = [{"resource_id": z.resource_id} if isinstance(z, AzureDnsZone) else
             {"zone": z.zone, "server": z.server, "tsig_key_name": z.tsig_key_name,
              "tsig_secret": z.tsig_secret.secret_id} for z in spec.zones]
    return json.dumps({"vault_url": spec.vault_url, "name": spec.name, "dns_names": list(spec.dns_names),
                       "zones": zones, "directory_url": spec.acme.directory_url, "resolvers": list(spec.resolvers),
                       "propagation_timeout_s": spec.propagation_timeout_s})


def main() -> int:
    settings = json.loads(sys.argv[1])
    engine = Engine(timeout_s=float(settings.get("timeout_s", 600.0)))
    try:
        facts = engine.issue(spec_from(settings))
    except Exception as e:  # noqa: BLE001 - the parent reads the error
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(facts.serial)
    return 0


if __name__ == "__main__":
    sys.exit(main())
