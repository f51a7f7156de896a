"""Each assertion passing and failing through a real ``pytest --modelgate`` run."""

from __future__ import annotations

import json

ASSERTION_FILE = """
import pytest
from pytest_modelgate import (
    assert_accuracy_above, assert_faster_than_scratch, assert_no_leakage,
    assert_precision_above, assert_recall_above,
)
from pytest_modelgate.data import Splits
from conftest import GRAY

@pytest.fixture(scope="module")
def run(finetune, digits, tiny):
    return finetune(tiny, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)

@pytest.fixture(scope="module")
def weak_run(finetune, digits, tiny):
    # Random conv features and one epoch of a head: a model that must fail the gates.
    return finetune(tiny, digits, epochs=1, freeze="backbone", lr=1e-3, **GRAY)

def test_recall_pass(run):
    assert_recall_above(run, 0.8, label="seven")

def test_recall_fail(weak_run):
    assert_recall_above(weak_run, 0.99, label="seven")

def test_precision_pass(run):
    assert_precision_above(run, 0.8)

def test_precision_fail(weak_run):
    assert_precision_above(weak_run, 0.99)

def test_accuracy_pass(run):
    assert_accuracy_above(run, 0.8)

def test_accuracy_fail(weak_run):
    assert_accuracy_above(weak_run, 0.99)

@pytest.mark.modelgate
def test_leakage_pass(digits):
    assert_no_leakage(digits.train, digits.test)

@pytest.mark.modelgate
def test_leakage_fail(digits):
    assert_no_leakage(digits.train, digits.train)

def test_faster_pass(finetune, digits, pretrained_tiny):
    run = finetune(pretrained_tiny, digits, epochs=8, freeze="backbone", lr=1e-2, **GRAY)
    assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=1.0)

def test_faster_fail(finetune, digits, pretrained_tiny):
    run = finetune(pretrained_tiny, digits, epochs=8, freeze="backbone", lr=1e-2, **GRAY)
    assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=1000)
"""


def test_each_assertion_passes_and_fails_with_its_message(project):
    project.makepyfile(test_assertions=ASSERTION_FILE)
    result = project.runpytest("--modelgate", "-rA")
    result.assert_outcomes(passed=5, failed=5)
    result.stdout.re_match_lines_random([
        r"E +AssertionError: recall\(seven\) = 0\.\d{3} < 0\.990 required \[n=54, 95% CI "
        r"0\.\d{3}-\d\.\d{3}\]; lowest recall: ",
        r"E +AssertionError: precision \(macro over classes\) = 0\.\d{3} < 0\.990 required "
        r"\[n=162\]",
        r"E +AssertionError: accuracy = 0\.\d{3} < 0\.990 required \[n=162, 95% CI .*\]; "
        r"lowest recall:",
        r"E +AssertionError: 377 of 377 test images also sit in train \(377 pairs\); test "
        r"figures overstate the model:",
        r"E +AssertionError: speedup to accuracy 0\.900 = [\d.]+x < 1000\.00x required: "
        r"pretrained [\d.]+m?s \(epoch \d+\), scratch ",
        r"E +class +precision +recall +n$",
        r"E +seven +\d\.\d{3} +\d\.\d{3} +54$",
    ])
    for name in ("recall_pass", "precision_pass", "accuracy_pass", "leakage_pass",
                 "faster_pass"):
        result.stdout.fnmatch_lines([f"PASSED test_assertions.py::test_{name}"])
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    by_id = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    race = by_id["test_faster_pass"]["races"][0]
    assert race["speedup"] >= 1.0 and race["pretrained_seconds"] < race["scratch_seconds"]
    assert by_id["test_faster_fail"]["outcome"] == "failed"
    assert by_id["test_leakage_fail"]["metrics"][0]["value"] == 377
    assert by_id["test_leakage_fail"]["metrics"][0]["name"] == "leaked_pairs"
