"""Seed replicas of a baseline update: the seed each replica's runs take, which runs did
not take it, and what the baseline keeps of a replica (end to end in
tests/plugin/test_seeds_e2e.py)."""

from __future__ import annotations

import json

import pytest

from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.replicas import (
    replica_failed,
    replica_record,
    replica_seed,
    runs_without_seeds,
    unseeded_runs,
)


def test_replica_zero_is_the_run_itself_and_replica_r_shifts_the_seed_by_r():
    assert replica_seed(0, 0) == 0
    assert replica_seed(42, 0) == 42  # the run a plain --modelgate session trains
    assert [replica_seed(3, r) for r in range(5)] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize(("seed", "replica", "message"), [
    (-1, 1, "seed must be a non-negative integer as --modelgate-seed takes, got -1"),
    ("0", 1, "seed must be a non-negative integer as --modelgate-seed takes, got '0'"),
    (True, 1, "seed must be a non-negative integer"),
    (0, -1, r"replica must be a non-negative integer \(0 is the test's own run\), got -1"),
    (0, 1.0, "replica must be a non-negative integer"),
])
def test_a_bad_seed_or_replica_names_the_argument(seed, replica, message):
    with pytest.raises(ModelGateError, match=message):
        replica_seed(seed, replica)


def run(seed, seconds=1.0):
    return {"config": {"seed": seed, "lr": 0.01}, "cached": False, "seconds": seconds,
            "history": [{"epoch": 1}], "summary": {"accuracy": 0.9}}


def test_runs_that_kept_replica_zeros_configuration_did_not_take_the_seed():
    first = {"runs": {"tiny (scratch)": run(0), "big (pretrained)": run(0)}}
    seeded = {"runs": {"tiny (scratch)": run(1, seconds=2.0), "big (pretrained)": run(1)}}
    assert unseeded_runs(first, seeded) == []
    fixture_run = {"runs": {"tiny (scratch)": run(1), "big (pretrained)": run(0)}}
    assert unseeded_runs(first, fixture_run) == ["big (pretrained)"]
    assert unseeded_runs(first, {"runs": {}}) == []  # failed before training anything
    assert unseeded_runs(first, {"runs": {"new (scratch)": run(0)}}) == []


def test_a_replica_record_keeps_metrics_used_samples_and_seeds_only():
    record = {
        "metrics": [{"name": "accuracy", "value": 0.9, "samples": "k1", "detail": {"x": 1}},
                    {"name": "speedup", "value": 2.0, "samples": None, "detail": None}],
        "samples": {"k1": {"n": 3}, "k2": {"n": 3}},
        "runs": {"tiny (scratch)": run(2)},
        "races": [{"chart": "big"}],
    }
    kept = replica_record(record, 2, error="assert False")
    assert kept == {
        "offset": 2,
        "metrics": [{"name": "accuracy", "value": 0.9, "samples": "k1"},
                    {"name": "speedup", "value": 2.0, "samples": None}],
        "samples": {"k1": {"n": 3}},
        "runs": {"tiny (scratch)": {"seed": 2, "cached": False, "seconds": 1.0}},
        "error": "assert False",
    }
    json.dumps(kept)  # travels in the xdist report as JSON


def test_the_warnings_name_the_test_the_offset_the_error_and_the_fix():
    text = replica_failed("t.py::test_gate", 2, "recall = 0.81 < 0.85 required")
    assert text.startswith("t.py::test_gate: seed replica +2 (each run's seed + 2) failed: "
                           "recall = 0.81 < 0.85 required; the baseline keeps what it "
                           "recorded before the failure.")
    assert "sits inside seed noise" in text
    text = runs_without_seeds("t.py::test_gate", ["tiny (scratch)"], 3)
    assert text.startswith("t.py::test_gate: recorded with one seed, not 3: its run(s) "
                           "tiny (scratch) did not take the replica seeds")
    assert text.endswith("Call finetune in the test body, or have the fixture return a "
                         "function that the test calls, to record them over several seeds")
