from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.metrics import (
    accuracy,
    classification_summary,
    confusion_matrix,
    metric_spec,
    per_class,
    wilson_interval,
)


@pytest.mark.parametrize("seed", range(5))
def test_matches_scikit_learn_with_absent_classes(seed):
    rng = np.random.default_rng(seed)
    k = 6
    y_true = rng.integers(0, k - 1, size=200)        # class 5 never occurs in y_true
    y_pred = rng.integers(0, k, size=200)
    y_pred[y_pred == 3] = 2                          # class 3 never predicted
    cm = confusion_matrix(y_true, y_pred, k)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(k)))
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=range(k), zero_division=0
    )
    pc = per_class(cm)
    np.testing.assert_allclose(pc["precision"], p)
    np.testing.assert_allclose(pc["recall"], r)
    np.testing.assert_allclose(pc["f1"], f)
    np.testing.assert_array_equal(pc["support"], s)
    assert accuracy(cm) == pytest.approx(skm.accuracy_score(y_true, y_pred))


def test_wilson_interval_known_value_and_edges():
    lo, hi = wilson_interval(45, 50)
    assert (round(lo, 4), round(hi, 4)) == (0.7864, 0.9565)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73
    with pytest.raises(ModelGateError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)


def test_summary_is_json_ready():
    s = classification_summary(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    assert s["confusion_matrix"] == [[1, 0], [1, 1]]
    assert s["per_class"][1] == {"label": "b", "precision": 1.0, "recall": 0.5,
                                 "f1": pytest.approx(2 / 3), "support": 2, "predicted": 1,
                                 "tp": 1}


@pytest.mark.parametrize(
    ("y_true", "y_pred", "k", "message"),
    [
        ([0, 1], [0], 2, "differ in length"),
        ([0, 2], [0, 1], 2, r"y_true holds labels \[2\] outside 0..1"),
        ([0, 1], [0, -1], 2, "y_pred holds labels"),
        ([[0, 1]], [[0, 1]], 2, "must be 1-d"),
        ([0.5, 1], [0, 1], 2, "integer class indices"),
    ],
)
def test_bad_labels_are_named(y_true, y_pred, k, message):
    with pytest.raises(ModelGateError, match=message):
        confusion_matrix(np.array(y_true), np.array(y_pred), k)


def test_unknown_metric_lists_known_ones():
    assert metric_spec("recall[defect]").higher_is_better
    assert not metric_spec("leaked_pairs").higher_is_better
    with pytest.raises(ModelGateError, match="unknown metric 'recal'.*known metrics: accuracy"):
        metric_spec("recal")
