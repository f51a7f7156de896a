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
from conftest import GRAY, RACE

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
    from pytest_modelgate.data import ImageSet

    train = digits.train  # a test split of 20 train images: every one leaks
    assert_no_leakage(train, ImageSet(train.images[:20].copy(), train.labels[:20],
                                      train.class_names, name="test"))

def test_faster_pass(finetune, digits, pretrained_tiny):
    run = finetune(pretrained_tiny, digits, epochs=8, freeze="backbone", lr=1e-2, **RACE)
    assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=1.0)

def test_faster_fail(finetune, digits, pretrained_tiny):
    run = finetune(pretrained_tiny, digits, epochs=8, freeze="backbone", lr=1e-2, **RACE)
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
        r"\[n=162, 95% CI 0\.\d{3}-0\.\d{3}\]",
        r"E +AssertionError: accuracy = 0\.\d{3} < 0\.990 required \[n=162, 95% CI .*\]; "
        r"lowest recall:",
        r"E +AssertionError: 20 of 20 test images also sit in train \(20 pairs: 20 by "
        r"pixels\), so test figures overstate the model: test\[0\] \(id \w+\), test\[1\] "
        r"\(id \w+\), \.\.\.$",
        r"E +AssertionError: speedup to accuracy 0\.900 = [\d.]+x < 1000\.00x required: "
        r"pretrained [\d.]+m?s \(epoch \d+\), scratch ",
        r"E +class +precision +recall +n$",
        r"E +seven +(\d\.\d{3}|n/a) +\d\.\d{3} +54$",  # n/a: the weak run never calls seven
    ])
    for name in ("recall_pass", "precision_pass", "accuracy_pass", "leakage_pass",
                 "faster_pass"):
        result.stdout.fnmatch_lines([f"PASSED test_assertions.py::test_{name}"])
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    by_id = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    race = by_id["test_faster_pass"]["races"][0]
    # The pass is the verdict on the speedup; the record holds the figures it came from.
    ratio = race["scratch_seconds"] / race["pretrained_seconds"]
    assert abs(race["speedup"] - ratio) <= 1e-6 * ratio and race["pretrained_epoch"] >= 1
    assert by_id["test_faster_fail"]["outcome"] == "failed"
    assert by_id["test_leakage_fail"]["metrics"][0]["value"] == 20
    assert by_id["test_leakage_fail"]["metrics"][0]["name"] == "leaked_pairs"


MORE_FILE = """
import pytest
from pytest_modelgate import (
    assert_balanced_accuracy_above, assert_beats_majority, assert_f1_above,
    assert_no_overfitting, assert_precision_at_recall, assert_recall_at_precision,
)
from conftest import GRAY

@pytest.fixture(scope="module")
def run(finetune, digits, tiny):
    return finetune(tiny, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)

@pytest.fixture(scope="module")
def weak_run(finetune, digits, tiny):
    return finetune(tiny, digits, epochs=1, freeze="backbone", lr=1e-3, **GRAY)

@pytest.fixture(scope="module")
def binary_run(finetune, ones_and_sevens, tiny):
    return finetune(tiny, ones_and_sevens, epochs=3, freeze="none", lr=1e-2, **GRAY)

@pytest.fixture(scope="module")
def weak_binary(finetune, ones_and_sevens, tiny):
    return finetune(tiny, ones_and_sevens, epochs=1, freeze="backbone", lr=1e-3, **GRAY)

@pytest.fixture(scope="module")
def memorised(finetune, few_digits, tiny):
    return finetune(tiny, few_digits, epochs=40, freeze="none", lr=1e-2, **GRAY)

def test_f1_pass(run):
    assert_f1_above(run, 0.8, per_class=True, confidence=0.95)

def test_f1_fail(weak_run):
    assert_f1_above(weak_run, 0.99, per_class=True)

def test_balanced_pass(run):
    assert_balanced_accuracy_above(run, 0.8)

def test_balanced_fail(weak_run):
    assert_balanced_accuracy_above(weak_run, 0.99)

def test_majority_pass(run):
    assert_beats_majority(run, margin=0.2)

def test_majority_fail(weak_run):
    assert_beats_majority(weak_run, margin=0.6)

def test_overfitting_pass(run):
    assert_no_overfitting(run, max_gap=0.1)

def test_overfitting_fail(memorised):
    assert_no_overfitting(memorised, max_gap=0.0)

def test_precision_at_recall_pass(binary_run):
    assert_precision_at_recall(binary_run, recall=0.9, min_precision=0.8, positive="seven")

def test_precision_at_recall_fail(weak_binary):
    assert_precision_at_recall(weak_binary, recall=1.0, min_precision=0.99, positive="seven")

def test_recall_at_precision_pass(binary_run):
    assert_recall_at_precision(binary_run, precision=0.9, min_recall=0.8)

def test_recall_at_precision_fail(weak_binary):
    assert_recall_at_precision(weak_binary, precision=0.99, min_recall=0.99)
"""


def test_metric_gates_pass_and_fail_with_their_messages(project):
    project.makepyfile(test_more=MORE_FILE)
    result = project.runpytest("--modelgate", "-rA")
    result.assert_outcomes(passed=6, failed=6)
    result.stdout.re_match_lines_random([
        r"E +AssertionError: \d classes below the threshold:",
        r"E +f1\(\w+\) = 0\.\d{3} < 0\.990 required \[n=\d+, 95% CI",
        r"E +AssertionError: balanced accuracy = 0\.\d{3} < 0\.990 required \[n=162, 95% CI",
        r"E +AssertionError: the model does not beat guessing by 0\.600: balanced accuracy "
        r"0\.\d{3} \(guessing 0\.333, required >= 0\.933\)",
        # Digits are balanced (53/55/54): no talk of imbalance there.
        r"E +The test classes are about balanced \(zero 32\.7%, one 34\.0%, seven 33\.3%\), "
        r"so this is not the accuracy paradox",
        r"E +AssertionError: train accuracy 1\.000 - test accuracy 0\.\d{3} = gap 0\.\d{3} > "
        r"0\.000 allowed \[n_train=30, n_test=162\]",
        r"E +AssertionError: precision\(seven\) at recall >= 1\.000 = 0\.\d{3} < 0\.990 "
        r"required \[threshold 0\.\d{3} gives recall 1\.000; n positives=54, n=109\]",
        r"E +AssertionError: (recall\(seven\) at precision >= 0\.990 = 0\.\d{3} < 0\.990 "
        r"required|no threshold reaches precision 0\.990 for 'seven')",
    ])
    for name in ("f1", "balanced", "majority", "overfitting", "precision_at_recall",
                 "recall_at_precision"):
        result.stdout.fnmatch_lines([f"PASSED test_more.py::test_{name}_pass"])
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    by_id = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    pr = by_id["test_precision_at_recall_pass"]["metrics"][0]
    assert pr["name"] == "precision_at_recall[seven@0.9]" and pr["detail"]["curve"]
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "precision-recall of seven" in html and "operating point" in html


LEAK_CACHE_FILE = """
import pytest
from pytest_modelgate import assert_no_leakage
from pytest_modelgate.leakage import scan_leaks

@pytest.mark.modelgate
def test_leakage(digits):
    assert_no_leakage(digits.train, digits.test)
    scan = scan_leaks(digits.train, digits.test)
    print(f"thumbnailed {scan.hashed}, from the run cache {scan.from_cache}")
"""


def test_leakage_thumbnails_live_in_the_run_cache(project):
    import re

    project.makepyfile(test_leak=LEAK_CACHE_FILE)

    def counts(*args):
        result = project.runpytest("--modelgate", *args, "-s")
        result.assert_outcomes(passed=1)
        found = re.search(r"thumbnailed (\d+), from the run cache (\d+)", result.stdout.str())
        assert found, result.stdout.str()
        return int(found[1]), int(found[2])

    # assert_no_leakage filled the run cache; the scan after it read every thumbnail there.
    hashed, cached = counts("--modelgate-cache-dir=runs")
    assert hashed == 0 and cached > 500
    assert (project.path / "runs" / "leakage-thumbnails-v1.npz").is_file()
    assert counts("--modelgate-cache-dir=runs") == (0, cached)
    assert counts("--modelgate-no-cache") == (cached, 0)
