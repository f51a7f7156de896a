"""Settings precedence: one order for the call, the marker, the command line and the ini."""

from __future__ import annotations

from pytest_modelgate.settings import resolve


def test_the_first_layer_that_sets_a_value_wins_and_none_means_not_set():
    assert resolve("cpu", "cuda", "mps", default="auto") == "cpu"
    assert resolve(None, "cuda", "mps", default="auto") == "cuda"
    assert resolve(None, None, default="auto") == "auto"
    assert resolve(None) is None


def test_false_and_zero_are_values_not_gaps():
    assert resolve(0, 7, default=1) == 0
    assert resolve(None, False, True) is False
