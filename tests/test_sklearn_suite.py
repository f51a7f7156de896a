"""scikit-learn's own tests of its classification metrics, run with this package's
functions in their place: every one passes, except those that give multilabel indicator
input, which this package refuses with a ModelGateError saying so (reported as xfailed,
and only when that refusal is what stopped them)."""

from __future__ import annotations

from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")

SUITE = Path(sklearn.__file__).parent / "metrics" / "tests" / "test_classification.py"

SWAP_PLUGIN = '''
"""Rebinds the test module's metric functions to pytest-modelgate's, keeps the tests that
use them, and reports a test stopped by the multilabel refusal as xfailed."""
import inspect

import pytest

import pytest_modelgate.metrics as ours
from pytest_modelgate.errors import ModelGateError

SWAPPED = ("precision_recall_fscore_support", "precision_score", "recall_score", "f1_score",
           "fbeta_score", "accuracy_score", "balanced_accuracy_score", "matthews_corrcoef")


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


def _refused_multilabel(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModelGateError) and "multilabel indicator input" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and call.excinfo is not None and \\
            _refused_multilabel(call.excinfo.value):
        report.outcome = "skipped"
        report.wasxfail = "multilabel input refused with ModelGateError"
'''


@pytest.mark.skipif(not SUITE.exists(), reason=f"scikit-learn ships no tests at {SUITE}")
def test_scikit_learns_own_metric_tests_pass_with_our_functions(pytester):
    pytester.makepyfile(modelgate_sklearn_swap=SWAP_PLUGIN)
    result = pytester.runpytest("-p", "modelgate_sklearn_swap", "-p", "no:cacheprovider",
                                "-p", "no:randomly", "-q", "-rfx", str(SUITE))
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("error", 0) == 0, \
        result.stdout.str()[-4000:]
    # scikit-learn 1.9: 74 single-label tests, 51 stopped by multilabel input; the
    # selection grows and shrinks a little with scikit-learn's version.
    assert outcomes["passed"] >= 60, outcomes
    xfailed = [line for line in result.outlines if line.startswith("XFAIL")]
    assert len(xfailed) == outcomes.get("xfailed", 0)
    assert all("multilabel input refused" in line for line in xfailed), xfailed
