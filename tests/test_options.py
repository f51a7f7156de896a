"""The option parsers, as argparse and the ini file call them (end to end in
tests/plugin/test_gating.py and tests/plugin/test_seeds_e2e.py)."""

from __future__ import annotations

import argparse

import pytest

from pytest_modelgate.options import (
    INI_PARSERS,
    SECRET_INI,
    parse_baseline_seeds,
    parse_cache_location,
    parse_inconclusive,
    parse_size,
)


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
    assert INI_PARSERS["modelgate_cache"] is parse_cache_location
    assert INI_PARSERS["modelgate_cache_max_size"] is parse_size
    assert "modelgate_cache" in SECRET_INI  # a bad value is not echoed: it may hold a secret


@pytest.mark.parametrize(("text", "size"), [
    ("123", 123), ("500MB", 500 * 10**6), ("2GB", 2 * 10**9), ("2 gb", 2 * 10**9),
    ("1.5GiB", int(1.5 * 2**30)), ("10KiB", 10240), ("1TB", 10**12), ("64B", 64)])
def test_a_cache_size_is_bytes_or_a_number_with_a_unit(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("2 gigs", "'2 gigs' is not a size: use bytes or a number with KB, MB, GB or TB"),
    ("-1GB", "'-1GB' is not a size"),
    ("", "'' is not a size"),
    ("0MB", "the cache's size must be above 0 bytes, got '0MB'"),
])
def test_a_bad_cache_size_says_what_was_read(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_size(text)


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "gs://b/p", "az://container/p",
                                 "file:///srv/cache", "runs", "/srv/cache",
                                 "abfs://container@account.dfs.core.windows.net/p"])
def test_a_cache_location_is_a_folder_or_a_url(url):
    assert parse_cache_location(url) == url


def test_credentials_in_a_cache_url_are_refused_and_not_repeated():
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        parse_cache_location("s3://AKIAXYZ:wJalrXUtnFEMIK7MDENG@bucket/runs")
    message = str(raised.value)
    assert "wJalrXUtnFEMIK7MDENG" not in message and "AKIAXYZ" not in message
    assert message.startswith("the URL holds credentials (user:password@)")
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message


@pytest.mark.parametrize(("url", "message"), [
    ("s3://bucket/runs?token=S3KR1T", "the URL has a query"),
    ("file://tmp/x", "three slashes"),
    ("file://u:S3KR1T@/tmp/x", "the URL holds credentials"),
])
def test_cache_urls_that_would_mislead_are_refused(url, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message) as raised:
        parse_cache_location(url)
    assert "S3KR1T" not in str(raised.value)
