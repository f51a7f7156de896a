"""The option parsers, as argparse and the ini file call them (end to end in
tests/plugin/test_gating.py and tests/plugin/test_seeds_e2e.py)."""

from __future__ import annotations

import argparse

import pytest

from pytest_modelgate.options import INI_PARSERS, parse_baseline_seeds, parse_inconclusive


@pytest.mark.parametrize(("text", "seeds"), [("1", 1), ("5", 5), ("12", 12)])
def test_baseline_seeds_are_a_count_of_at_least_one(text, seeds):
    assert parse_baseline_seeds(text) == seeds


@pytest.mark.parametrize(("text", "message"), [
    ("0", "the baseline needs at least 1 seed, got 0"),
    ("-1", "the baseline needs at least 1 seed, got -1"),
    ("five", "'five' is not a number of seeds, like 5"),
    ("2.5", "'2.5' is not a number of seeds, like 5"),
    ("", "'' is not a number of seeds, like 5"),
    ("2", "2 seeds give the seed test one degree of freedom: it would call even large drops "
          "noise, where one seed's per-image test catches them; use 1, or 3 or more"),
    ("101", "101 seeds would train every gate 101 times; at most 100"),
])
def test_a_bad_number_of_seeds_says_what_was_read(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_baseline_seeds(text)


def test_inconclusive_is_warn_or_fail():
    assert parse_inconclusive("warn") == "warn"
    assert parse_inconclusive("fail") == "fail"
    with pytest.raises(argparse.ArgumentTypeError,
                       match="'error' is not one of warn, fail: warn keeps an inconclusive "
                             "drop a warning, fail makes it fail the test"):
        parse_inconclusive("error")


def test_the_ini_keys_read_as_their_options_do():
    assert INI_PARSERS["modelgate_baseline_seeds"] is parse_baseline_seeds
    assert INI_PARSERS["modelgate_inconclusive"] is parse_inconclusive
