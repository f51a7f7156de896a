"""scikit-learn's own tests of its classification metrics, run with this package's
functions in their place: every test that uses one of them passes, single-label and
multilabel alike (multilabel indicator matrices, dense and sparse, samplewise averages,
multilabel confusion matrices, Hamming loss). Tests that use none of them are deselected:
they test functions this package does not implement (jaccard_score, zero_one_loss,
log_loss, classification_report, ...)."""

from __future__ import annotations

from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")

SUITE = Path(sklearn.__file__).parent / "metrics" / "tests" / "test_classification.py"

SWAP_PLUGIN = '''
"""Rebinds the test module's metric functions to pytest-modelgate's and keeps the tests that
use them."""
import inspect

import pytest

import pytest_modelgate.metrics as ours

SWAPPED = ("precision_recall_fscore_support", "precision_score", "recall_score", "f1_score",
           "fbeta_score", "accuracy_score", "balanced_accuracy_score", "matthews_corrcoef",
           "multilabel_confusion_matrix", "hamming_loss")


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        try:
            source = inspect.getsource(item.function)
        except (TypeError, OSError, AttributeError):
            source = ""
        (keep if any(name in source for name in SWAPPED) else drop).append(item)
    for item in keep:
        for name in SWAPPED:
            setattr(item.module, name, getattr(ours, name))
    items[:] = keep
    config.hook.pytest_deselected(items=drop)

'''


@pytest.mark.skipif(not SUITE.exists(), reason=f"scikit-learn ships no tests at {SUITE}")
def test_scikit_learns_own_metric_tests_pass_with_our_functions(pytester):
    pytester.makepyfile(modelgate_sklearn_swap=SWAP_PLUGIN)
    result = pytester.runpytest("-p", "modelgate_sklearn_swap", "-p", "no:cacheprovider",
                                "-p", "no:randomly", "-q", "-rfx", str(SUITE))
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("error", 0) == 0, \
        result.stdout.str()[-4000:]
    # scikit-learn 1.9.1: 133 tests (74 single-label, 59 multilabel or multilabel-only
    # functions); the selection grows and shrinks a little with scikit-learn's version.
    assert outcomes["passed"] >= 120, outcomes
    assert not outcomes.get("xfailed") and not outcomes.get("skipped"), outcomes
