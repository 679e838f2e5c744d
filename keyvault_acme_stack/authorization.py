"""Which DNS names a workload may hold: an allowlist of suffix and exact-name rules.

One pure check shared by the platform team's policy pack, the component at preview and the CLI, so a
name is refused with the same words wherever it is tried. A suffix rule ``example.com`` covers the
name itself and every name below it on a label boundary (``www.example.com``, ``*.example.com``), never
``badexample.com``; an exact rule covers one name (``*.example.com`` as an exact rule covers only the
wildcard).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from keyvault_acme.errors import NameNotAuthorized, SpecError
from keyvault_acme.names import normalize_name


def normalize(name: str, field: str = "dns_names") -> str:
    """The one normal form names and rules are compared in (lower-case A-labels, no trailing dot)."""
    return normalize_name(name, field)


@dataclass(frozen=True)
class Allowlist:
    suffixes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A suffix rule is written either way: "example.com" or ".example.com" (or "*.example.com").
        object.__setattr__(self, "suffixes", tuple(
            normalize(s.strip().removeprefix("*").removeprefix("."), "allowlist.suffixes") for s in self.suffixes))
        object.__setattr__(self, "names", tuple(normalize(n, "allowlist.names") for n in self.names))

    @property
    def empty(self) -> bool:
        return not (self.suffixes or self.names)

    def rule_for(self, name: str) -> str | None:
        """The rule that allows ``name`` (e.g. ``suffix example.com``), or None."""
        n = normalize(name)
        for exact in self.names:
            if n == exact:
                return f"name {exact}"
        for suffix in self.suffixes:
            if n == suffix or n.endswith("." + suffix):
                return f"suffix {suffix}"
        return None

    def describe(self) -> str:
        parts = []
        if self.suffixes:
            parts.append("suffixes " + ", ".join(self.suffixes))
        if self.names:
            parts.append("names " + ", ".join(self.names))
        return "; ".join(parts) or "no rules (nothing is allowed)"


def allowlist_from_dict(data: Mapping[str, Any] | None, field: str = "allowlist") -> Allowlist:
    data = data or {}
    if not isinstance(data, Mapping):
        raise SpecError(field, "must be a mapping", f"write {field}: {{suffixes: [example.com], names: [www.example.org]}}")
    unknown = set(data) - {"suffixes", "names"}
    if unknown:
        raise SpecError(f"{field}.{sorted(unknown)[0]}", "unknown setting", "use only suffixes and names")
    out: dict[str, tuple[str, ...]] = {}
    for key in ("suffixes", "names"):
        value = data.get(key) or []
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SpecError(f"{field}.{key}", "must be a list of DNS names", f"write {field}.{key}: [example.com]")
        if not all(isinstance(v, str) for v in value):
            raise SpecError(f"{field}.{key}", "every entry must be a string", "quote each DNS name")
        out[key] = tuple(value)
    return Allowlist(**out)


def unauthorized(names: Iterable[str], allowlist: Allowlist) -> list[str]:
    """The names no rule allows, in the order given."""
    return [n for n in names if allowlist.rule_for(n) is None]


def check_names(names: Iterable[str], allowlist: Allowlist, *, field: str = "dns_names", owner: str = "this workload") -> None:
    """Raise :class:`NameNotAuthorized` naming the first refused name and the rules it was tried against."""
    for name in unauthorized(names, allowlist):
        raise NameNotAuthorized(
            field,
            f"{normalize(name, field)} is not allowed for {owner}: it matches no allowlist rule ({allowlist.describe()})",
            "remove the name, or ask the platform team to add a suffix or name rule covering it",
        )
