"""A small evaluator of the Azure Pipelines condition expressions the templates use, and a stage-graph runner.

Azure DevOps decides which stages run from each stage's ``condition`` (default ``succeeded()``) and its
``dependsOn`` (default: the stage before it). No agent runs here, so the test replays that decision: the
functions are those of the documented expression language (and, or, not, eq, ne, in, notIn, startsWith,
endsWith, contains, succeeded, failed, succeededOrFailed, always, canceled), string comparison is
case-insensitive as in Azure DevOps, and ``variables['X']`` / ``variables.X`` read the run's variables.
An unknown function or variable is an error, so a typo cannot make a condition look false.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.]*)|(?P<p>[(),\[\]]))")
SUCCESS = ("Succeeded", "SucceededWithIssues")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SyntaxError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _eq(a: Any, b: Any) -> bool:
    return _text(a).lower() == _text(b).lower()


@dataclass
class Context:
    variables: Mapping[str, str]
    dependency_results: Sequence[str] = ()
    failed_before: bool = False
    functions: dict[str, Callable[..., Any]] = field(init=False)

    def __post_init__(self) -> None:
        deps = list(self.dependency_results)
        self.functions = {
            "and": lambda *a: all(_truthy(x) for x in a),
            "or": lambda *a: any(_truthy(x) for x in a),
            "not": lambda a: not _truthy(a),
            "eq": _eq,
            "ne": lambda a, b: not _eq(a, b),
            "in": lambda a, *rest: any(_eq(a, r) for r in rest),
            "notin": lambda a, *rest: not any(_eq(a, r) for r in rest),
            "startswith": lambda a, b: _text(a).lower().startswith(_text(b).lower()),
            "endswith": lambda a, b: _text(a).lower().endswith(_text(b).lower()),
            "contains": lambda a, b: _text(b).lower() in _text(a).lower(),
            # With no dependencies, the status functions look at the run so far.
            "succeeded": lambda: all(r in SUCCESS for r in deps) and not (not deps and self.failed_before),
            "failed": lambda: any(r == "Failed" for r in deps) or (not deps and self.failed_before),
            "succeededorfailed": lambda: all(r in (*SUCCESS, "Failed") for r in deps),
            "always": lambda: True,
            "canceled": lambda: False,
        }


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value != ""
    return bool(value)


def evaluate(expression: str, context: Context) -> Any:
    tokens = _tokens(expression)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(want: str | None = None) -> tuple[str, str]:
        nonlocal pos
        tok = peek()
        if tok is None or (want is not None and tok[1] != want):
            raise SyntaxError(f"expected {want or 'more'} in {expression!r}")
        pos += 1
        return tok

    def value() -> Any:
        kind, text = take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if kind != "name":
            raise SyntaxError(f"unexpected {text!r} in {expression!r}")
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text.lower() == "variables" and peek() == ("p", "["):
            take("[")
            name = value()
            take("]")
            return _variable(name)
        if text.lower().startswith("variables."):
            return _variable(text.split(".", 1)[1])
        function = context.functions.get(text.lower())
        if function is None:
            raise NameError(f"unknown function {text!r} in {expression!r}")
        take("(")
        args = []
        if peek() != ("p", ")"):
            args.append(value())
            while peek() == ("p", ","):
                take(",")
                args.append(value())
        take(")")
        return function(*args)

    def _variable(name: str) -> str:
        found = {k.lower(): v for k, v in context.variables.items()}
        if name.lower() not in found:
            raise KeyError(f"variable {name!r} is not set in this run")
        return found[name.lower()]

    result = value()
    if pos != len(tokens):
        raise SyntaxError(f"trailing {tokens[pos:]} in {expression!r}")
    return result


def run_stages(stages: Sequence[Mapping[str, Any]], variables: Mapping[str, str],
               failing: frozenset[str] = frozenset()) -> dict[str, str]:
    """Each stage's result, deciding in order as Azure DevOps does; a stage in ``failing`` fails when it runs."""
    results: dict[str, str] = {}
    previous: str | None = None
    for stage in stages:
        name = stage["stage"]
        deps = stage.get("dependsOn", [previous] if previous else [])
        deps = [deps] if isinstance(deps, str) else list(deps)
        context = Context(variables, [results[d] for d in deps], failed_before="Failed" in results.values())
        runs = _truthy(evaluate(str(stage.get("condition", "succeeded()")), context))
        results[name] = ("Failed" if name in failing else "Succeeded") if runs else "Skipped"
        previous = name
    return results
