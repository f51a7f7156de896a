"""Labels as users have them, through every assertion that takes predictions: strings,
bools, negative integers, names matched to class_names, and mixes scikit-learn accepts."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_modelgate import (
    ModelGateError,
    Predictions,
    assert_accuracy_above,
    assert_balanced_accuracy_above,
    assert_beats_majority,
    assert_f1_above,
    assert_fbeta_above,
    assert_no_overfitting,
    assert_precision_above,
    assert_precision_at_recall,
    assert_recall_above,
    assert_recall_at_precision,
)

# 12 samples: 8 negatives (2 called positive), 4 positives (1 found): precision and recall
# of the positive class 1/3 and 1/4. As index pattern: 0 = negative.
TRUE = [0] * 8 + [1] * 4
PRED = [0] * 6 + [1, 1] + [1, 0, 0, 0]
GOOD = TRUE
SCORES = np.array([0.1] * 8 + [0.9, 0.4, 0.3, 0.2])

# name: (negative, positive, class_names=, the class names the run shows)
KINDS = {
    "strings": ("ok", "defect", None, ("defect", "ok")),
    "bools": (False, True, None, ("False", "True")),
    "negative ints": (-1, 1, None, ("-1", "1")),
    "names in class_names": ("ok", "defect", ["ok", "defect"], ("ok", "defect")),
    "ints with floats": (0, 1.0, None, ("0", "1")),
}


def _labels(kind, pattern):
    negative, positive, _, _ = KINDS[kind]
    return np.array([positive if v else negative for v in pattern], dtype=object).tolist()


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    return request.param


def _run(kind, pred=PRED, train=None):
    names = KINDS[kind][2]
    true = _labels(kind, TRUE)
    if kind == "ints with floats":   # y_true ints, y_pred whole floats, as scikit-learn takes
        true, pred_values = [int(v) for v in TRUE], [float(v) for v in pred]
    else:
        pred_values = _labels(kind, pred)
    if names is None and train is None:
        return true, pred_values          # the tuple form
    return Predictions.from_arrays(true, pred_values, class_names=names, train=train)


def test_class_names_come_from_class_names_or_the_sorted_labels(kind):
    p = Predictions.from_arrays(*_run(kind)) if isinstance(_run(kind), tuple) else _run(kind)
    assert p.class_names == KINDS[kind][3]
    positive = KINDS[kind][3].index(str(KINDS[kind][1]).replace("1.0", "1"))
    assert p.y_true.tolist() == [positive if v else 1 - positive for v in TRUE]


def test_threshold_gates_pass_and_fail_naming_the_label_as_written(kind):
    positive = KINDS[kind][1]
    label = 1 if kind == "ints with floats" else positive
    shown = KINDS[kind][3][1 if kind != "strings" else 0]
    for gate, kwargs in ((assert_recall_above, {}), (assert_precision_above, {}),
                         (assert_f1_above, {}), (assert_fbeta_above, {"beta": 2})):
        gate(_run(kind, pred=GOOD), 0.9, label=label, **kwargs)
        with pytest.raises(AssertionError) as failed:
            gate(_run(kind), 0.9, label=label, **kwargs)
        assert f"({shown}) = " in str(failed.value), (gate.__name__, str(failed.value))
        gate(_run(kind, pred=GOOD), 0.9, per_class=True, **kwargs)
        with pytest.raises(AssertionError, match=rf"\b{shown}\b"):
            gate(_run(kind), 0.9, per_class=True, **kwargs)
    assert_accuracy_above(_run(kind), 0.5)
    with pytest.raises(AssertionError, match=r"accuracy = 0.583 < 0.900"):
        assert_accuracy_above(_run(kind), 0.9)
    assert_balanced_accuracy_above(_run(kind, pred=GOOD), 0.9)
    with pytest.raises(AssertionError, match=r"balanced accuracy = 0.500 < 0.900"):
        assert_balanced_accuracy_above(_run(kind), 0.9)
    assert_beats_majority(_run(kind, pred=GOOD))
    with pytest.raises(AssertionError):
        assert_beats_majority(_run(kind, pred=[0] * 12))


def test_overfitting_and_operating_point_gates_take_labels_as_written(kind):
    names = KINDS[kind][2]
    true = _labels(kind, TRUE) if kind != "ints with floats" else TRUE
    good = _labels(kind, GOOD) if kind != "ints with floats" else [float(v) for v in GOOD]
    assert_no_overfitting(Predictions.from_arrays(true, good, class_names=names,
                                                  train=(true, good)))
    with pytest.raises(AssertionError, match=r"train accuracy 1.000 - test accuracy 0.583 = gap"):
        assert_no_overfitting(_run(kind, train=(true, good)), max_gap=0.1)
    # Scores: the positive class's column, in the order of the run's classes.
    classes = KINDS[kind][3]
    positive = str(KINDS[kind][1]).replace("1.0", "1")
    column = classes.index(positive)
    scores = np.zeros((12, 2))
    scores[:, column], scores[:, 1 - column] = SCORES, 1 - SCORES
    p = Predictions.from_arrays(true, scores=scores, class_names=list(classes)) \
        if names is None else Predictions.from_arrays(true, scores=scores, class_names=names)
    assert_recall_at_precision(p, precision=0.9, min_recall=0.9, positive=positive)
    assert_precision_at_recall(p, recall=1.0, min_precision=0.9, positive=positive)
    with pytest.raises(AssertionError, match=positive):
        assert_recall_at_precision(
            Predictions.from_arrays(true, scores=scores[:, ::-1].copy(),
                                    class_names=list(classes)),
            precision=0.9, min_recall=0.9, positive=positive)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: assert_recall_above((["ok", "defect"], [0, 1]), 0.5),
     r"Mix of label input types \(string and number\).*class_names="),
    (lambda: assert_recall_above((["ok", "defect"], ["ok", "ok"]), 0.5, label="fault"),
     r"label='fault' is not a class of this run; classes are \['defect', 'ok'\]"),
    (lambda: Predictions.from_arrays(["ok", "fault"], ["ok", "ok"], class_names=["ok", "bad"]),
     r"y_true holds labels \['fault'\] that are not in class_names \['ok', 'bad'\]"),
    (lambda: Predictions.from_arrays(["ok", "bad"], scores=[[0.2, 0.8], [0.6, 0.4]]),
     r"y_pred comes from the columns of scores: pass class_names="),
    # Multilabel matrices are gated (tests/test_multilabel.py); half a matrix is not.
    (lambda: assert_recall_above((np.eye(3, dtype=int), np.arange(3)), 0.5),
     r"y_true is a multilabel \(3, 3\) 0/1 matrix but y_pred has shape \(3,\)"),
    (lambda: assert_accuracy_above(([0.5, 1.0], [0, 1]), 0.5), r"continuous is not supported"),
    (lambda: assert_accuracy_above((["ok", None], ["ok", "ok"]), 0.5),
     r"y_true holds None: every sample needs a label"),
    (lambda: assert_accuracy_above(([1.0, float("nan")], [1, 1]), 0.5),
     r"y_true holds NaN or infinite values"),
    (lambda: assert_fbeta_above((["a", "b"], ["a", "b"]), 0.5, beta=0),
     r"beta must be a positive number \(2 weighs recall higher, 0.5 precision\), got 0"),
    (lambda: assert_fbeta_above((["a", "b"], ["a", "b"]), 0.5, beta="2"),
     r"beta must be a positive number"),
])
def test_bad_labels_get_a_clear_error(call, message):
    with pytest.raises(ModelGateError, match=message):
        call()


def test_bools_mixed_with_integers_take_label_true():
    """scikit-learn takes bool y_true with 0/1 y_pred; the classes are then "0" and "1",
    and label=True names "1"."""
    y_true, y_pred = [True, True, False, False], [1, 0, 0, 0]
    with pytest.raises(AssertionError, match=r"recall\(1\) = 0.500 < 0.900"):
        assert_recall_above((y_true, y_pred), 0.9, label=True)
