"""The real local services the integration tests run against, as context managers.

One DNS world for Pebble: Pebble resolves through exactly one server, so it resolves through our
BIND 9, and BIND forwards the zones of any other world (the Azure emulator's authoritative DNS) to
that world's server (``forward_zones``). One Pebble per test session then validates names in both
worlds. The emulator's zones must be known when BIND starts, so start the emulator first.

Tests never talk to the internet: clients find Pebble's (and the emulator's) TLS CA through
``REQUESTS_CA_BUNDLE`` pointing at :func:`write_ca_bundle`'s file, and ``NO_PROXY`` keeps loopback
off any proxy.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import certifi

from emulator.bind import Bind
from emulator.pebble import Pebble

if TYPE_CHECKING:
    from emulator.server import Emulator

# Zones BIND 9 serves (RFC 2136 + TSIG). The second one is a CNAME-delegation target.
BIND_ZONE = "rfc2136.test"
DELEGATION_ZONE = "delegated.test"
BIND_ZONES = (BIND_ZONE, DELEGATION_ZONE)


@contextlib.contextmanager
def bind_server(zones: Iterable[str] = BIND_ZONES,
                forward_zones: Mapping[str, tuple[str, int]] | None = None) -> Iterator[Bind]:
    with Bind(zones=zones, forward_zones=forward_zones) as bind:
        yield bind


# An external account binding key Pebble knows (binding stays optional): for stacks with acme.eab_kid/eab_hmac.
EAB_KID, EAB_HMAC = "kid-1", "c2VjcmV0LWhtYWMta2V5"


@contextlib.contextmanager
def pebble_server(bind: Bind, **kwargs) -> Iterator[Pebble]:
    """Pebble validating DNS-01 through ``bind`` (and whatever BIND forwards)."""
    kwargs.setdefault("eab_keys", {EAB_KID: EAB_HMAC})
    with Pebble(dns_server=bind.address, **kwargs) as pebble:
        yield pebble


def write_ca_bundle(path: Path, extra_ca_paths: Iterable[str]) -> str:
    """The public roots (certifi) plus the local services' TLS CAs, as one PEM file for REQUESTS_CA_BUNDLE."""
    parts = [Path(certifi.where()).read_text()]
    parts += [Path(p).read_text() for p in extra_ca_paths]
    path.write_text("\n".join(part.strip() + "\n" for part in parts))
    return str(path)


def loopback_env(ca_bundle: str) -> dict[str, str]:
    """Environment that makes every HTTPS client trust the local CAs and reach loopback directly."""
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost", "::1"]))
    return {"REQUESTS_CA_BUNDLE": ca_bundle, "SSL_CERT_FILE": ca_bundle, "NO_PROXY": no_proxy,
            "no_proxy": no_proxy}


# -- the Azure emulator (added by the engine's Azure side) ------------------------------------------------
# Azure DNS zones the emulator serves over ARM and on its authoritative DNS server, in two subscriptions
# (zones are addressed by ARM resource id, so a zone in another subscription must work the same).
AZURE_RESOURCE_GROUP = "dns-rg"
AZURE_ZONES = {"azure.test": "00000000-0000-0000-0000-00000000a001",
               "other-sub.test": "00000000-0000-0000-0000-00000000b002"}


# A zone of the emulator's Cloudflare stand-in (api.cloudflare.com), served by its DNS server like the Azure zones.
CLOUDFLARE_ZONE = "cloudflare.test"


def azure_zone_id(zone: str) -> str:
    return (f"/subscriptions/{AZURE_ZONES[zone]}/resourceGroups/{AZURE_RESOURCE_GROUP}"
            f"/providers/Microsoft.Network/dnszones/{zone}")


@contextlib.contextmanager
def emulator_server(*, own_process: bool = False) -> Iterator["Emulator"]:
    """The emulator with :data:`AZURE_ZONES` created (start it before BIND, which forwards those zones).

    ``own_process``: run it as ``python -m emulator`` (the benchmark: Azure is remote, not in our GIL)."""
    from emulator.external import EmulatorProcess
    from emulator.server import Emulator

    with (EmulatorProcess() if own_process else Emulator()) as emu:
        for zone, subscription in AZURE_ZONES.items():
            emu.admin.add_zone(zone, subscription, AZURE_RESOURCE_GROUP)
        emu.admin.add_cloudflare_zone(CLOUDFLARE_ZONE)
        yield emu
