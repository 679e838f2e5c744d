"""Tables for people: fit the width by shortening free text, then dropping the least needed columns; colours
never move a column; one date format."""
from __future__ import annotations

import argparse
import io
from datetime import datetime, timezone

import pytest

from keyvault_acme_cli import cli
from keyvault_acme_cli.output import DATE_FORMAT, fit_table, when

HEADER = ("NAME", "NOTES", "EXTRA", "STATE")
ROWS = [("www", "a long free text column that goes on and on", "x" * 20, "valid"),
        ("api", "short", "y" * 20, "expired")]


def test_a_table_that_fits_is_left_alone():
    lines = fit_table(HEADER, ROWS, width=200).splitlines()
    assert lines[1] == "www   a long free text column that goes on and on  xxxxxxxxxxxxxxxxxxxx  valid"


def test_free_text_is_shortened_before_a_column_is_dropped():
    lines = fit_table(HEADER, ROWS, width=60, shorten=("NOTES",), drop=("EXTRA",)).splitlines()
    assert lines[0].split() == list(HEADER) and max(map(len, lines)) <= 60
    assert "..." in lines[1]
    lines = fit_table(HEADER, ROWS, width=30, shorten=("NOTES",), drop=("EXTRA",)).splitlines()
    assert lines[0].split() == ["NAME", "NOTES", "STATE"] and max(map(len, lines)) <= 30


def test_colours_do_not_move_columns():
    plain = fit_table(HEADER, ROWS, width=200, state_column="STATE").splitlines()
    coloured = fit_table(HEADER, ROWS, width=200, state_column="STATE", colour=True).splitlines()
    assert coloured[1] == plain[1].replace("valid", "\033[32mvalid\033[0m")
    assert coloured[2] == plain[2].replace("expired", "\033[31mexpired\033[0m")
    assert coloured[0] == plain[0]  # the header is never coloured


def test_one_date_format():
    moment = datetime(2026, 12, 5, 13, 4, 5, tzinfo=timezone.utc)
    assert when(moment) == "2026-12-05 13:04:05Z" == moment.strftime(DATE_FORMAT)
    assert cli._utc(moment) == when(moment)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, confirmed", [("www\n", True), ("yes\n", False), ("", False)])
def test_key_compromise_needs_the_certificates_name_typed(monkeypatch, capsys, answer, confirmed):
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    ctx = argparse.Namespace(args=argparse.Namespace(yes=False, reason="keyCompromise"))
    assert cli._confirmed(ctx, "www") is confirmed  # type: ignore[arg-type]
    assert "consumers keep serving a revoked certificate" in capsys.readouterr().err


def test_yes_and_other_reasons_do_not_ask(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: asking would fail
    for yes, reason in ((True, "keyCompromise"), (False, "superseded")):
        assert cli._confirmed(argparse.Namespace(args=argparse.Namespace(yes=yes, reason=reason)), "www")  # type: ignore[arg-type]
