from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from pytest_modelgate import metrics as mg
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
    with pytest.raises(ModelGateError, match="unknown metric 'recal'; did you mean 'recall'\\? "
                                             "Known metrics: accuracy, balanced_accuracy"):
        metric_spec("recal")


# --- scikit-learn compatible API, property-tested against scikit-learn ----------------------





@st.composite
def label_pairs(draw, max_classes=6):
    k = draw(st.integers(2, max_classes))
    n = draw(st.integers(1, 40))
    y_true = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return np.array(y_true), np.array(y_pred), k


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@settings(max_examples=300, deadline=None)
@given(data=label_pairs(), average=st.sampled_from([None, "micro", "macro", "weighted"]),
       zero_division=st.sampled_from([0.0, 1.0, np.nan]), use_labels=st.booleans())
def test_prf_matches_scikit_learn(data, average, zero_division, use_labels):
    y_true, y_pred, k = data
    labels = list(range(k)) if use_labels else None  # range(k): some classes may be absent
    ours = mg.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                              zero_division=zero_division)
    ref = _sk(skm.precision_recall_fscore_support, y_true, y_pred, labels=labels,
              average=average, zero_division=zero_division)
    for a, b in zip(ours[:3], ref[:3], strict=True):
        np.testing.assert_allclose(a, b, equal_nan=True)
    if average is None:
        np.testing.assert_array_equal(ours[3], ref[3])


# Labels as users have them: negative integers, strings, bools.
UNIVERSES = {"ints": [-3, -1, 0, 2, 7, 9], "strings": ["bee", "ant", "wasp", "ok", "defect", "b"],
             "bools": [False, True]}


@st.composite
def any_labels(draw):
    kind = draw(st.sampled_from(sorted(UNIVERSES)))
    universe = UNIVERSES[kind]
    k = draw(st.integers(1, len(universe)))
    chosen = universe[:k]
    n = draw(st.integers(1, 30))
    y_true = draw(st.lists(st.sampled_from(chosen), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.sampled_from(chosen), min_size=n, max_size=n))
    weights = draw(st.none() | st.lists(st.integers(0, 3), min_size=n, max_size=n)
                   .filter(any))
    return np.array(y_true), np.array(y_pred), universe, weights


def _outcome(fn, *args, **kwargs):
    """The value, or the error, and the warnings (category names and messages) of a call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn(*args, **kwargs)
        except ValueError as exc:   # a ModelGateError is one
            value = ("raised", type(exc).__name__)
    return value, sorted((type(w.message).__name__, str(w.message)) for w in caught)


def _raised(value) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)


def _same(ours, ref):
    if _raised(ref) or _raised(ours):
        assert _raised(ours) and _raised(ref), (ours, ref)
        return
    if isinstance(ref, tuple):
        for a, b in zip(ours, ref, strict=True):
            _same(a, b)
        return
    if ref is None:
        assert ours is None
        return
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(ref, dtype=float),
                               equal_nan=True)


@settings(max_examples=600, deadline=None)
@given(data=any_labels(), average=st.sampled_from([None, "binary", "micro", "macro",
                                                     "weighted"]),
       zero_division=st.sampled_from(["warn", 0.0, 1.0, np.nan]),
       beta=st.sampled_from([1.0, 2.0, 0.5, 0.0, np.inf]), use_labels=st.booleans(),
       pos_index=st.integers(0, 5), default_pos=st.booleans())
def test_any_labels_match_scikit_learn_values_errors_and_warnings(
        data, average, zero_division, beta, use_labels, pos_index, default_pos):
    """Every single-label case scikit-learn accepts gives its numbers and its warnings (the
    same category name and message; UndefinedMetricWarning is scikit-learn's own class when
    it is loaded), and what it refuses is a ValueError here too (a ModelGateError)."""
    y_true, y_pred, universe, weights = data
    labels = universe if use_labels else None
    pos_label = 1 if default_pos else universe[pos_index % len(universe)]
    kwargs = dict(labels=labels, average=average, zero_division=zero_division,
                  pos_label=pos_label, sample_weight=weights)
    for name in ("precision_recall_fscore_support", "fbeta_score"):
        extra = {"beta": beta}
        ours = _outcome(getattr(mg, name), y_true, y_pred, **extra, **kwargs)
        ref = _outcome(getattr(skm, name), y_true, y_pred, **extra, **kwargs)
        if _raised(ref[0]):
            assert _raised(ours[0]), (name, ours, ref)
            continue
        _same(ours[0], ref[0])
        assert ours[1] == ref[1], name
    for name in ("precision_score", "recall_score", "f1_score"):
        ours, ref = (_outcome(getattr(m, name), y_true, y_pred, **kwargs) for m in (mg, skm))
        if _raised(ref[0]):
            assert _raised(ours[0]), (name, ours, ref)
            continue
        _same(ours[0], ref[0])
        assert ours[1] == ref[1], name
    for name, extra in (("accuracy_score", {"normalize": bool(pos_index % 2)}),
                        ("balanced_accuracy_score", {"adjusted": bool(pos_index % 2)}),
                        ("matthews_corrcoef", {})):
        ours, ref = (_outcome(getattr(m, name), y_true, y_pred, sample_weight=weights, **extra)
                     for m in (mg, skm))
        _same(ours[0], ref[0])
        assert ours[1] == ref[1], name


def test_undefined_metric_warnings_are_scikit_learns_category_when_it_is_loaded():
    import sklearn.exceptions

    with pytest.warns(sklearn.exceptions.UndefinedMetricWarning) as caught:
        mg.precision_score([0, 1, 1], [0, 0, 0])
    assert isinstance(caught[0].message, mg.UndefinedMetricWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=sklearn.exceptions.UndefinedMetricWarning)
        assert mg.precision_score([0, 1, 1], [0, 0, 0]) == 0.0


@settings(max_examples=200, deadline=None)
@given(data=label_pairs(max_classes=2))
def test_binary_average_matches_scikit_learn(data):
    y_true, y_pred, _ = data
    for ours, ref in ((mg.precision_score, skm.precision_score),
                      (mg.recall_score, skm.recall_score), (mg.f1_score, skm.f1_score)):
        assert ours(y_true, y_pred, zero_division=0) == pytest.approx(
            _sk(ref, y_true, y_pred, zero_division=0))


@settings(max_examples=300, deadline=None)
@given(data=label_pairs())
def test_accuracy_balanced_accuracy_mcc_match_scikit_learn(data):
    y_true, y_pred, _ = data
    assert mg.accuracy_score(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert mg.balanced_accuracy_score(y_true, y_pred) == pytest.approx(
        _sk(skm.balanced_accuracy_score, y_true, y_pred))
    assert mg.matthews_corrcoef(y_true, y_pred) == pytest.approx(
        _sk(skm.matthews_corrcoef, y_true, y_pred))


@settings(max_examples=200, deadline=None)
@given(data=label_pairs(), kind=st.sampled_from(["precision", "recall", "f1"]),
       average=st.sampled_from(["micro", "macro", "weighted"]))
def test_averages_from_confusion_matrix_match_scikit_learn(data, kind, average):
    y_true, y_pred, k = data
    cm = mg.confusion_matrix(y_true, y_pred, k)
    fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[kind]
    ref = _sk(fn, y_true, y_pred, average=average, zero_division=0)
    assert float(mg.average_from_cm(cm, kind, average)) == pytest.approx(ref)
    # A stack of matrices gives one value per matrix.
    assert mg.average_from_cm(np.stack([cm, cm]), kind, average) == pytest.approx([ref, ref])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 1000))
def test_precision_recall_curve_matches_scikit_learn(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0] = 1
    scores = rng.integers(0, 6, n) / 5
    for ours, ref in zip(mg.precision_recall_curve(y, scores),
                         skm.precision_recall_curve(y, scores), strict=True):
        np.testing.assert_allclose(ours, ref)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mg.precision_recall_fscore_support([0, 1], [0, 1], average="mean"),
         "average has to be one of"),
        (lambda: mg.precision_recall_fscore_support([0, 1], [0, 1], zero_division=2),
         "zero_division must be 0, 1, nan or 'warn'"),
        (lambda: mg.fbeta_score([0, 1], [0, 1], beta=-1), "beta must be a number >= 0"),
        (lambda: mg.precision_score([0, 1, 2], [0, 1, 2]),
         r"Target is multiclass but average='binary'. Please choose another average"),
        (lambda: mg.recall_score(["a", "b"], ["a", "b"]),
         r"pos_label=1 is not a valid label. It should be one of \['a', 'b'\]"),
        (lambda: mg.accuracy_score([], []), "empty"),
        (lambda: mg.accuracy_score([0, 1], [0]), "differ in length"),
        (lambda: mg.accuracy_score(["a", "b"], [0, 1]),
         r"Mix of label input types \(string and number\)"),
        (lambda: mg.accuracy_score([0.5, 1], [0, 1]), "continuous is not supported"),
        (lambda: mg.accuracy_score([0, 1], [0, 1], sample_weight=[1]),
         r"sample_weight has shape \(1,\); pass one weight per sample"),
        (lambda: mg.f1_score([0, 1], [0, 1], average="samples"),
         "Samplewise metrics are not available outside of multilabel classification"),
        (lambda: mg.accuracy_score(np.zeros((3, 2, 2)), np.zeros((3, 2, 2))), "must be 1-d"),
        (lambda: mg.bootstrap_confusion(np.zeros((2, 2), int)), "empty confusion matrix"),
        (lambda: mg.precision_recall_curve([0, 0], [0.1, 0.2]), "no positive samples"),
    ],
)
def test_bad_metric_arguments(call, message):
    with pytest.raises(ModelGateError, match=message):
        call()


def test_bootstrap_is_seeded_and_exact_in_distribution():
    cm = np.array([[50, 5], [10, 35]])
    a = mg.bootstrap_confusion(cm, 2000, seed=1)
    assert a.shape == (2000, 2, 2) and (a.sum(axis=(1, 2)) == 100).all()
    np.testing.assert_array_equal(a, mg.bootstrap_confusion(cm, 2000, seed=1))
    # Multinomial over cells = resampling samples: cell means match the observed counts.
    np.testing.assert_allclose(a.mean(axis=0), cm, rtol=0.05)


def test_classification_report_intervals_bracket_their_values():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.integers(0, 4, 500))
    report = mg.classification_report(y_true, y_pred, list("abcd"), n_resamples=500)
    for key in ("accuracy", "f1_macro", "balanced_accuracy", "mcc"):
        lo, hi = report[key]["interval"]
        assert lo < report[key]["value"] < hi
    assert report["f1_macro"]["value"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro"))
    lo, hi = report["per_class"]["recall_interval"]
    assert (lo < report["per_class"]["recall"]).all() and (report["per_class"]["recall"] < hi).all()
    again = mg.classification_report(y_true, y_pred, list("abcd"), n_resamples=500)
    assert again["mcc"]["interval"] == report["mcc"]["interval"]


def test_wilson_intervals_vectorised_match_scalar():
    lo, hi = mg.wilson_intervals(np.array([45, 0, 3]), np.array([50, 0, 3]))
    assert (lo[0], hi[0]) == pytest.approx(wilson_interval(45, 50))
    assert (lo[1], hi[1]) == (0.0, 1.0)
    assert hi[2] == 1.0


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_one_class_figures_match_scikit_learn(beta):
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    y_pred[y_pred == 2] = 1                                # class 2 never predicted
    cm = confusion_matrix(y_true, y_pred, 4)
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, beta=beta,
                                                     labels=range(4), zero_division=0)
    for i in range(4):
        assert mg.class_metric_from_cm(cm, "precision", i) == pytest.approx(p[i])
        assert mg.class_metric_from_cm(cm, "recall", i) == pytest.approx(r[i])
        assert mg.class_metric_from_cm(cm, "fbeta", i, beta) == pytest.approx(f[i])
    stack = mg.bootstrap_confusion(cm, 50, seed=1)
    np.testing.assert_array_equal(mg.class_metric_from_cm(stack, "f1", 3),
                                  [mg.class_metric_from_cm(c, "f1", 3) for c in stack])
    np.testing.assert_array_equal(per_class(cm)["f1"],
                                  [mg.class_metric_from_cm(cm, "f1", i) for i in range(4)])


def test_class_indices_checked_against_the_class_count():
    assert mg.as_label_array([0, 1.0, True], "y_true", 2).tolist() == [0, 1, 1]
    with pytest.raises(ModelGateError, match=r"y_pred holds labels \[2\] outside 0..1"):
        mg.as_label_array([0, 2], "y_pred", 2)


def test_summary_leaves_undefined_figures_as_none():
    # class 2 absent from the truth (recall and F1 undefined), class 1 never predicted
    # (precision undefined): None (JSON null, "n/a" in the report), never a made-up 0.
    s = classification_summary(np.array([0, 0, 1]), np.array([0, 2, 0]), ["a", "b", "c"])
    a, b, c = s["per_class"]
    assert a["precision"] == 0.5 and a["recall"] == 0.5
    assert (b["precision"], b["recall"], b["f1"]) == (None, 0.0, 0.0)
    assert (c["precision"], c["recall"], c["f1"]) == (0.0, None, None)


# --- multilabel indicator input, against scikit-learn ---------------------------------------

@st.composite
def indicator_pairs(draw):
    """0/1 matrices with empty rows and columns (undefined figures) as likely as not."""
    n, width = draw(st.integers(1, 12)), draw(st.integers(2, 5))
    cells = st.lists(st.integers(0, 1), min_size=n * width, max_size=n * width)
    y_true = np.array(draw(cells)).reshape(n, width)
    y_pred = np.array(draw(cells)).reshape(n, width)
    weights = draw(st.none() | st.lists(st.integers(0, 3), min_size=n, max_size=n)
                   .filter(any))
    labels = draw(st.none() | st.lists(st.integers(-1, width), max_size=width + 1))
    return y_true, y_pred, weights, labels


@settings(max_examples=250, deadline=None)
@given(data=indicator_pairs(),
       average=st.sampled_from([None, "binary", "micro", "macro", "weighted", "samples"]),
       zero_division=st.sampled_from(["warn", 0.0, 1.0, np.nan]),
       beta=st.sampled_from([1.0, 2.0, 0.5, 0.0, np.inf]), pos_label=st.sampled_from([1, 0]),
       dtype=st.sampled_from([int, bool, float]))
def test_multilabel_matches_scikit_learn_values_errors_and_warnings(
        data, average, zero_division, beta, pos_label, dtype):
    """Multilabel indicator matrices give scikit-learn's numbers, warnings (category name and
    message) and refusals: every average, labels= column subsets (in range or not), weights,
    zero_division, beta; subset accuracy, Hamming loss and the multilabel confusion matrix."""
    y_true, y_pred, weights, labels = data
    y_true, y_pred = y_true.astype(dtype), y_pred.astype(dtype)
    kwargs = dict(labels=labels, average=average, zero_division=zero_division,
                  pos_label=pos_label, sample_weight=weights)
    calls = [("precision_recall_fscore_support", {"beta": beta, **kwargs}),
             ("fbeta_score", {"beta": beta, **kwargs}), ("precision_score", kwargs),
             ("recall_score", kwargs), ("f1_score", kwargs),
             ("accuracy_score", {"sample_weight": weights, "normalize": pos_label == 1}),
             ("hamming_loss", {"sample_weight": weights}),
             ("balanced_accuracy_score", {"sample_weight": weights}),
             ("matthews_corrcoef", {"sample_weight": weights})]
    calls += [("multilabel_confusion_matrix", {"sample_weight": weights, "labels": labels,
                                               "samplewise": samplewise})
              for samplewise in (False, True)]
    for name, kw in calls:
        ours, ref = (_outcome(getattr(m, name), y_true, y_pred, **kw) for m in (mg, skm))
        if _raised(ref[0]):
            assert _raised(ours[0]), (name, ours, ref)
            continue
        _same(ours[0], ref[0])
        assert ours[1] == ref[1], name


@settings(max_examples=200, deadline=None)
@given(data=any_labels(), use_labels=st.booleans())
def test_multilabel_confusion_matrix_of_single_label_input_matches_scikit_learn(
        data, use_labels):
    y_true, y_pred, universe, weights = data
    labels = universe[::-1] if use_labels else None     # absent labels too, in their order
    ours = mg.multilabel_confusion_matrix(y_true, y_pred, sample_weight=weights, labels=labels)
    ref = skm.multilabel_confusion_matrix(y_true, y_pred, sample_weight=weights, labels=labels)
    np.testing.assert_array_equal(ours, ref)
    assert mg.hamming_loss(y_true, y_pred, sample_weight=weights) == pytest.approx(
        skm.hamming_loss(y_true, y_pred, sample_weight=weights))


def test_sparse_indicators_give_the_dense_figures():
    sparse = pytest.importorskip("scipy.sparse")
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    for make in (sparse.csr_matrix, sparse.csc_array, sparse.coo_matrix, sparse.lil_array):
        for name, kw in (("f1_score", {"average": "samples", "zero_division": 0}),
                         ("precision_score", {"average": "macro", "zero_division": 0}),
                         ("accuracy_score", {}), ("hamming_loss", {}),
                         ("multilabel_confusion_matrix", {"samplewise": True})):
            fn = getattr(mg, name)
            np.testing.assert_array_equal(fn(make(y_true), make(y_pred), **kw),
                                          fn(y_true, y_pred, **kw))


def test_multilabel_subset_accuracy_and_samples_average():
    y_true = [[1, 0, 1], [0, 1, 0]]
    y_pred = [[1, 0, 0], [0, 1, 0]]
    assert mg.accuracy_score(y_true, y_pred) == 0.5        # only the second row is all right
    assert mg.recall_score(y_true, y_pred, average="samples") == 0.75
    assert mg.hamming_loss(y_true, y_pred) == pytest.approx(1 / 6)
    p, r, f, support = mg.precision_recall_fscore_support(y_true, y_pred, labels=[2, 0],
                                                          zero_division=0)
    assert (p.tolist(), r.tolist(), support.tolist()) == ([0.0, 1.0], [0.0, 1.0], [1, 1])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mg.f1_score([[0, 1], [1]], [[0, 1], [1, 0]], average="macro"),
         r"y_true has rows of different lengths \(a sequence of label lists\): a multilabel "
         r"target is a 0/1 indicator matrix of shape \(n_samples, n_labels\)"),
        (lambda: mg.f1_score(np.array([[0, 1], [1]], dtype=object), [[0, 1], [1, 0]],
                             average="macro"), "y_true has rows of different lengths"),
        (lambda: mg.f1_score([[0, 1], [1, 0]], [[0, 2], [1, 0]], average="macro"),
         r"y_pred is a \(2, 2\) matrix holding \[2\]: multiclass-multioutput is not "
         r"supported .* Threshold scores first"),
        (lambda: mg.accuracy_score([[0, 1], [1, 0]], [[0, 0.7], [1, 0]]),
         r"y_pred is a \(2, 2\) matrix holding \[0.7\]"),
        (lambda: mg.hamming_loss([["a", "b"], ["b", "a"]], [["a", "b"], ["b", "a"]]),
         r"y_true is a \(2, 2\) matrix holding \['a', 'b', 'b'\]"),
        (lambda: mg.f1_score([[0, 1], [1, 0]], [[0, 1, 0], [1, 0, 0]], average="micro"),
         r"y_true has 2 label columns and y_pred 3: Multi-label binary indicator input with "
         r"different numbers of labels; pass one column per label in both"),
        (lambda: mg.f1_score([[0, 1], [1, 0]], [1, 0], average="micro"),
         r"Classification metrics can't handle a mix of multilabel-indicator and binary "
         r"targets: y_true has shape \(2, 2\), y_pred \(2,\)"),
        (lambda: mg.f1_score([[0, 1], [1, 0]], [[0, 1], [1, 0]]),
         r"Target is multilabel-indicator but average='binary'. Please choose another "
         r"average setting, one of \[None, 'micro', 'macro', 'weighted', 'samples'\]"),
        (lambda: mg.multilabel_confusion_matrix([[0, 1], [1, 0]], [[0, 1], [1, 0]],
                                                labels=[2]),
         r"All labels must be in \[0, n labels\) for multilabel targets. Got 2 > 1"),
        (lambda: mg.precision_score([[0, 1], [1, 0]], [[0, 1], [1, 0]], labels=["a"],
                                    average="macro"),
         "labels must be a 1-d list of column indices 0..1 for multilabel targets"),
        (lambda: mg.multilabel_confusion_matrix([0, 1], [1, 1], samplewise=True),
         "Samplewise metrics are not available outside of multilabel classification: "
         "average='samples' and samplewise=True need"),
        (lambda: mg.balanced_accuracy_score([[0, 1], [1, 0]], [[0, 1], [1, 0]]),
         "multilabel-indicator is not supported: balanced accuracy and the Matthews "
         "correlation are single-label metrics"),
        (lambda: mg.matthews_corrcoef([[0, 1], [1, 0]], [[0, 1], [1, 0]]),
         "multilabel-indicator is not supported"),
        (lambda: mg.accuracy_score(np.zeros((2, 0)), np.zeros((2, 0))),
         r"y_true has shape \(2, 0\): a multilabel indicator needs one column per label"),
        (lambda: mg.hamming_loss([[0, 1], [1, 0]], [[0, 1], [1, 0]], sample_weight=[[1, 2]]),
         r"Sample weights must be 1D array or scalar: sample_weight has shape \(1, 2\)"),
        (lambda: mg.accuracy_score([[0, 1], [1, 0]], [[0, 1], [1, 0]], sample_weight=2.0),
         r"sample_weight is one number \(2.0\): pass one weight per sample, shape \(2,\)"),
        (lambda: mg.hamming_loss([[0, 1], [1, 0]], [[0, 1], [1, 0]], sample_weight=[1]),
         r"inconsistent numbers of samples: \[2, 1\]"),
        (lambda: mg.accuracy_score(_csr([[1], [0]]), [1, 0]),
         "y_true is sparse with shape .*: Sparse input is only supported when targets are "
         "of multilabel type"),
        (lambda: mg.encode_labels({"y_true": np.eye(3, dtype=int)}),
         r"y_true: multilabel indicator input .* is not supported here, where one label per "
         r"sample is expected .*For multilabel gates pass both matrices to "
         r"Predictions.from_arrays"),
    ],
)
def test_bad_multilabel_input(call, message):
    with pytest.raises(ModelGateError, match=message):
        call()


def _csr(rows):
    sparse = pytest.importorskip("scipy.sparse")
    return sparse.csr_matrix(rows)

