"""``keyvault-acme:renewer``: the opt-in in-Azure renewer of a stack (a scheduled Container Apps Job).

Renewal then no longer depends on a pipeline staying alive (GitHub disables scheduled workflows of quiet
repositories after 60 days): the job runs ``keyvault-acme renew --due`` on its own schedule, as the issuer
identity, reading this very stack file. Parsed and checked here, with the rest of the stack file, so a bad
schedule or image is refused before anything is created.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from keyvault_acme.config import settings
from keyvault_acme.errors import SpecError

SETTINGS = ("schedule", "image", "registry", "timeout_minutes")
DEFAULT_SCHEDULE = "0 */6 * * *"  # four runs a day: a missed run still leaves days before a 6-day cert expires
# Five cron fields (minute hour day month weekday) of digits, ranges, lists and steps, as Container Apps takes.
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
# registry/repository[:tag][@sha256:digest]; a tag or digest is required, and "latest" is not a version.
_IMAGE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                    r"(@sha256:[0-9a-f]{64})?$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?$")


@dataclass(frozen=True)
class RenewerConfig:
    schedule: str
    image: str  # the image built from the repository's Dockerfile, by tag or digest
    registry: str | None = None  # a private registry the job pulls from with the issuer identity (AcrPull)
    timeout_minutes: int = 30


def parse_renewer(value: Any) -> RenewerConfig | None:
    """The renewer's settings; None when the stack does not ask for one."""
    if value is None or value is False:
        return None
    d = settings(value, "renewer", SETTINGS)
    schedule = str(d.get("schedule") or DEFAULT_SCHEDULE)
    fields = schedule.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) and _in_range(f, lo, hi)
                                   for f, (lo, hi) in zip(fields, _CRON_RANGES)):
        raise SpecError("renewer.schedule", f"{schedule!r} is not a five-field cron expression",
                        f"write minute hour day month weekday, e.g. {DEFAULT_SCHEDULE!r} (every 6 hours, UTC)")
    image = d.get("image")
    if not isinstance(image, str) or not image:
        raise SpecError("renewer.image", "is required",
                        "build the repository's Dockerfile, push it, and set e.g. myregistry.azurecr.io/keyvault-acme:0.1.0")
    if not _IMAGE.fullmatch(image) or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
        raise SpecError("renewer.image", f"{image!r} is not a registry/repository image with a tag or digest",
                        "write e.g. myregistry.azurecr.io/keyvault-acme:0.1.0 (a version tag or @sha256: digest)")
    if image.rsplit("/", 1)[-1].split("@")[0].endswith(":latest"):
        raise SpecError("renewer.image", "uses the tag latest, which changes under a running schedule",
                        "pin a version tag or an @sha256: digest")
    registry = d.get("registry")
    if registry is not None and (not isinstance(registry, str) or not _REGISTRY.fullmatch(registry)):
        raise SpecError("renewer.registry", f"{registry!r} is not a registry host name",
                        "write the login server, e.g. myregistry.azurecr.io")
    if registry and not image.startswith(registry + "/"):
        raise SpecError("renewer.registry", f"{registry} is not where renewer.image {image} comes from",
                        "set renewer.registry to the image's registry, or remove it for a public image")
    timeout = d.get("timeout_minutes", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 5 <= timeout <= 1440:
        raise SpecError("renewer.timeout_minutes", f"{timeout!r} is not a whole number of minutes from 5 to 1440",
                        "leave it out (30) or give e.g. 60 for a stack with many certificates")
    return RenewerConfig(schedule=" ".join(fields), image=image, registry=registry, timeout_minutes=timeout)


def _in_range(field: str, lo: int, hi: int) -> bool:
    return all(lo <= int(n) <= hi for n in re.findall(r"(?<![/\d])\d+", field))


def check_renewer_needs(renewer: RenewerConfig | None, *, monitoring_enabled: bool, issuer_existing: bool,
                        issuer_resource_id: str | None) -> None:
    """What the renewer needs from the rest of the stack file, named before anything is created."""
    if renewer is None:
        return
    if not monitoring_enabled:
        raise SpecError("renewer", "needs monitoring: its logs, and the renewal-overdue alert that reads them, "
                        "live in the stack's Log Analytics workspace", "remove monitoring.enabled: false")
    if issuer_existing and not issuer_resource_id:
        raise SpecError("issuer.resource_id", "is required with a renewer and an existing issuer identity",
                        "give the identity's ARM id (/subscriptions/.../userAssignedIdentities/NAME): the job runs as it")


# Settings the job's CLI never reads (it reads only the certificates) and that may hold secrets: alert webhook
# URLs are credentials, and a Container Apps secret's value is a plain input in Pulumi's state.
NOT_FOR_THE_JOB = frozenset({"alerts"})


def stack_document(values: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The stack file the job reads, rebuilt from the stack's own config values, without the settings in
    :data:`NOT_FOR_THE_JOB` (the other settings hold no secrets: the parser refuses secret values in them)."""
    return {"config": {f"{namespace}:{k}": v for k, v in sorted(values.items()) if k not in NOT_FOR_THE_JOB}}


MOUNT = "/etc/keyvault-acme"  # where the job's stack file secret is mounted (read-only, a tmpfs)


def stack_file_name(stack_name: str) -> str:
    return f"Pulumi.{stack_name}.yaml"


def job_command(stack_name: str) -> list[str]:
    """What the job runs: renew what is due, one JSON line per certificate for the workspace (the
    renewal-overdue alert reads each certificate's next renewal date from them)."""
    return ["keyvault-acme", "--config", f"{MOUNT}/{stack_file_name(stack_name)}", "renew", "--due", "--json"]
