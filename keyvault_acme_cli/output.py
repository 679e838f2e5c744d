"""How the CLI writes for people: one date format, tables that fit the terminal, colours by state.

Tables fit the terminal's width (100 columns when the output is not a terminal, or ``COLUMNS``): a column
of free text is shortened first, then the least needed columns are left out, in an order each table gives.
Colours only on a terminal, and never with ``NO_COLOR`` set (no-color.org); padding is measured on the
plain text, so colours never shift a column.
"""
from __future__ import annotations

import os
import shutil
from typing import Sequence, TextIO

from keyvault_acme.timefmt import DATE_FORMAT, when  # noqa: F401 - the CLI's tables use the engine's one format

DEFAULT_WIDTH = 100
MIN_TEXT = 12  # a shortened free-text column keeps at least this many characters

_RED, _YELLOW, _GREEN, _RESET = "\033[31m", "\033[33m", "\033[32m", "\033[0m"
STATE_COLOURS = {"missing": _RED, "revoked": _RED, "disabled": _RED, "expired": _RED, "error": _RED,
                 "overdue": _RED, "due": _YELLOW, "outdated": _YELLOW, "valid": _GREEN}


def width_of(stream: TextIO) -> int:
    # COLUMNS first, then the terminal's size; 100 when neither says (a pipe, a file, CI logs).
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def colours_for(stream: TextIO) -> bool:
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def fit_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, width: int, drop: Sequence[str] = (),
              shorten: Sequence[str] = (), state_column: str | None = None, colour: bool = False) -> str:
    """Lines of ``rows`` under ``header`` in at most ``width`` columns.

    ``shorten``: free-text columns cut (with "...") before anything is dropped; ``drop``: columns left out,
    in this order, while the table is still too wide. ``state_column``'s cells are coloured by state.
    """
    columns = list(header)
    cells = [list(r) for r in rows]
    limits = {c: max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)}

    def total() -> int:
        return sum(limits[c] for c in columns) + 2 * (len(columns) - 1)

    for name in shorten:
        if total() > width and name in columns:
            limits[name] = max(MIN_TEXT, len(name), limits[name] - (total() - width))
    for name in drop:
        if total() <= width:
            break
        if name in columns:
            columns.remove(name)
    index = [list(header).index(c) for c in columns]

    def cell(text: str, column: str) -> str:
        limit = limits[column]
        return text if len(text) <= limit else text[:limit - 3] + "..."

    lines = []
    for n, row in enumerate([list(header), *cells]):
        parts = []
        for c, i in zip(columns, index):
            text = cell(row[i], c)
            padding = " " * (limits[c] - len(text))
            if colour and n > 0 and c == state_column and row[i] in STATE_COLOURS:
                text = STATE_COLOURS[row[i]] + text + _RESET
            parts.append(text + padding)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
