"""DNS names as a certificate wants them: one normal form, checked before anything is created.

Pure functions, no I/O. Every rejection is a :class:`SpecError` naming the offending name and the fix.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Sequence

import idna

from .errors import SpecError, shown

MAX_NAMES = 100  # Let's Encrypt's limit per order; profiles may lower it
MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
CHALLENGE_LABEL = "_acme-challenge"

_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def is_wildcard(name: str) -> bool:
    return name.startswith("*.")


def base_name(name: str) -> str:
    """The name a wildcard covers (``*.example.com`` -> ``example.com``); other names unchanged."""
    return name[2:] if is_wildcard(name) else name


def challenge_name(name: str) -> str:
    """Where the DNS-01 TXT record for ``name`` lives: ``_acme-challenge.<name without *.>``."""
    return f"{CHALLENGE_LABEL}.{base_name(name)}"


def normalize_name(name: str, field: str = "dns_names") -> str:
    """Lower-case A-label form without trailing dot, or SpecError.

    Unicode names become punycode (IDNA 2008 with UTS 46 mapping); the only wildcard allowed is a
    whole leftmost ``*`` label above a registrable-looking name (``*.example.com``, not ``*.com``).
    """
    if not isinstance(name, str) or not name.strip():
        raise SpecError(field, f"{shown(name)} is not a DNS name", "write a name like www.example.com")
    raw = name.strip()
    text = raw.rstrip(".").lower()
    wildcard = is_wildcard(text)
    rest = base_name(text)
    if "*" in rest:
        raise SpecError(field, f"{raw!r} has a '*' that is not the whole leftmost label",
                        "a wildcard may only be the leftmost label, e.g. *.example.com")
    try:
        ipaddress.ip_address(rest)
    except ValueError:
        pass
    else:
        raise SpecError(field, f"{raw!r} is an IP address", "DNS-01 certifies DNS names only; use a name")
    if not rest.isascii():
        try:
            rest = idna.encode(rest, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise SpecError(field, f"{raw!r} is not a valid internationalized name ({e})",
                            "check the spelling or give the punycode (xn--) form") from None
    labels = rest.split(".")
    if len(labels) < 2:
        raise SpecError(field, f"{raw!r} has a single label",
                        "use a fully qualified name like www.example.com" if not wildcard
                        else "a wildcard needs at least two labels below it, e.g. *.example.com")
    for label in labels:
        if not label:
            raise SpecError(field, f"{raw!r} has an empty label", "remove the doubled or leading dot")
        if len(label) > MAX_LABEL_LENGTH:
            raise SpecError(field, f"{raw!r} has a label longer than {MAX_LABEL_LENGTH} characters",
                            "shorten that label")
        if not _LDH.fullmatch(label):
            raise SpecError(field, f"{raw!r} has the label {label!r}, which is not letters, digits and inner hyphens",
                            "use only a-z, 0-9 and '-' (not at a label's start or end)")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError:
                raise SpecError(field, f"{raw!r} has an invalid punycode label {label!r}",
                                "give the Unicode form or a valid xn-- label") from None
    if labels[-1].isdigit():
        raise SpecError(field, f"{raw!r} ends in an all-numeric label", "use a name under a real top-level domain")
    normal = ("*." if wildcard else "") + ".".join(labels)
    if len(normal) > MAX_NAME_LENGTH:
        raise SpecError(field, f"{raw!r} is longer than {MAX_NAME_LENGTH} characters", "use a shorter name")
    return normal


def normalize_names(names: Iterable[str], field: str = "dns_names", limit: int = MAX_NAMES) -> tuple[str, ...]:
    """Normalise every name, in order; reject an empty list, duplicates and more than ``limit`` names."""
    if isinstance(names, str):
        raise SpecError(field, "must be a list of names, got one string", f"write {field}: [{names}]")
    result: list[str] = []
    seen: dict[str, str] = {}
    for original in names:
        normal = normalize_name(original, field)
        if normal in seen:
            raise SpecError(field, f"{original!r} is listed twice (as {seen[normal]!r} too)", "list each name once")
        seen[normal] = original
        result.append(normal)
    if not result:
        raise SpecError(field, "is empty", "list at least one DNS name")
    if len(result) > limit:
        raise SpecError(field, f"has {len(result)} names; the CA accepts at most {limit} per certificate",
                        f"split them over several certificates of at most {limit} names")
    return tuple(result)


def zone_for(name: str, zones: Iterable[str], field: str = "dns_names") -> str:
    """The longest configured zone that contains ``name`` (its base name, for a wildcard)."""
    target = base_name(name.lower().rstrip("."))
    candidates = [z.lower().rstrip(".") for z in zones]
    best = max((z for z in candidates if target == z or target.endswith("." + z)), key=len, default=None)
    if best is None:
        known = ", ".join(sorted(candidates)) or "none"
        raise SpecError(field, f"{name} is in no configured zone (zones: {known})",
                        "add the DNS zone that contains it to zones, or remove the name")
    return best


def plural(count: int, noun: str) -> str:
    """``1 name``, ``2 names``: log lines and messages that count things."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def counted(items: Sequence[str], noun: str, shown: int = 3) -> str:
    """``2 names (a, b)``; a long list ends in ``and 97 more``, so a 100-name order stays one log line."""
    head = ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")
    return f"{plural(len(items), noun)} ({head})"
