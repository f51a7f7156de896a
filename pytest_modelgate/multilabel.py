"""Multilabel figures: per-label binary problems and averages over labels or samples.

A multilabel target is an (n, K) 0/1 matrix with K class names (column k: the sample shows
class k), never a second data type. Each label is a binary problem of its own (its 2x2
confusion matrix, scikit-learn's ``multilabel_confusion_matrix`` layout ``[[tn, fp],
[fn, tp]]``); averages run over labels (micro, macro, weighted) or over samples
(``samples``), as scikit-learn's ``average=``, with zero_division 0 as the gates use it,
except that macro runs over the labels the samples show (as a gate's macro over classes)
and a sample with no labels and none predicted is right (1) in a samples average.

Every figure here is a function of row weights over the samples (``RowCounts``): weights of
one give the figure itself, multinomial weights a bootstrap resample of the samples, and
two prediction matrices weighted alike the paired bootstrap against a baseline, so one
evaluator serves the gate, its interval and the significance test. Pure: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelGateError, user_error_frames
from .metrics import _from_counts, accuracy_score, hamming_loss, multilabel_confusion_matrix
from .specs import MetricName

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

# The averages of a multilabel gate: over labels, or (samples) per sample, then the mean.
MULTILABEL_AVERAGES = ("micro", "macro", "weighted", "samples")


def as_indicator(y: Any, argname: str, k: int | None = None) -> np.ndarray:
    """A 0/1 indicator matrix (n, K) as int64, with a ModelGateError naming ``argname`` for
    another shape, another width or values other than 0 and 1.

    Example:
        >>> as_indicator([[1, 0], [True, True]], "y_true", 2).tolist()
        [[1, 0], [1, 1]]
    """
    arr = np.asarray(y)
    if arr.ndim != 2:
        raise ModelGateError(f"{argname} must be an (n, {k or 'classes'}) 0/1 matrix for a "
                             f"multilabel task, got shape {arr.shape}; pass one column per "
                             "class name")
    if k is not None and arr.shape[1] != k:
        raise ModelGateError(f"{argname} has {arr.shape[1]} columns but there are {k} class "
                             f"names; pass one 0/1 column per class name (shape "
                             f"({arr.shape[0]}, {k}))")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        bad = np.flatnonzero(~np.isin(arr, (0, 1)).all(axis=1)) if arr.dtype.kind in "biuf" \
            else np.array([0])
        row = int(bad[0]) if bad.size else 0
        raise ModelGateError(f"{argname} must hold 0 and 1 only (a multilabel indicator "
                             f"matrix); row {row} holds {arr[row].tolist()}: threshold "
                             "scores first (scores >= 0.5)")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class RowCounts:
    """Sufficient statistics of weighted samples: the sample rows (unique where built by
    ``bootstrap``) and weights (R, U) over them, one row of weights per resample."""

    y_true: np.ndarray   # (U, K) 0/1
    y_pred: np.ndarray   # (U, K) 0/1
    weights: np.ndarray  # (R, U)

    @classmethod
    def of(cls, y_true: np.ndarray, y_pred: np.ndarray) -> RowCounts:
        """Every sample once: the figures of the predictions themselves (R = 1)."""
        return cls(np.asarray(y_true), np.asarray(y_pred),
                   np.ones((1, len(y_true)), dtype=np.float64))

    def _sum(self, per_row: np.ndarray) -> np.ndarray:
        return self.weights @ np.asarray(per_row, dtype=np.float64)

    @property
    def n(self) -> np.ndarray:
        return self.weights.sum(axis=1)

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per resample and label: true positives, predicted, true (each (R, K))."""
        return (self._sum(self.y_true & self.y_pred), self._sum(self.y_pred),
                self._sum(self.y_true))


# Bootstrap weights are drawn in chunks of at most this many (resample, distinct row)
# cells: 16 MB of float64 at a time, whatever the test set's size.
CHUNK_CELLS = 2_000_000


def bootstrap(name: str, class_names: Sequence[str], y_true: np.ndarray,
              preds: Sequence[np.ndarray], n_resamples: int = 1000, seed: int = 0
              ) -> list[np.ndarray]:
    """A metric's values on bootstrap resamples of the samples (rows drawn with
    replacement), one array (n_resamples,) per prediction matrix in ``preds``, all scored
    on the same draws (with two matrices: a paired bootstrap).

    A figure of the samples depends on them only through how often each distinct row
    (truth and every prediction) is drawn, so a resample is a multinomial draw of weights
    over the distinct rows, drawn in chunks from one seeded generator.
    """
    t = np.asarray(y_true, dtype=np.int64)
    k = t.shape[1]
    joint = np.concatenate([t, *(np.asarray(p, dtype=np.int64) for p in preds)], axis=1)
    rows, counts = np.unique(joint, axis=0, return_counts=True)
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // len(rows))
    out: list[list[np.ndarray]] = [[] for _ in preds]
    for start in range(0, n_resamples, chunk):
        weights = rng.multinomial(n, counts / n, size=min(chunk, n_resamples - start))
        weights = weights.astype(np.float64)
        for i, values in enumerate(out):
            values.append(figure(name, class_names, RowCounts(
                rows[:, :k], rows[:, k * (i + 1):k * (i + 2)], weights)))
    return [np.concatenate(values) for values in out]


def figure(name: str, class_names: Sequence[str], rows: RowCounts) -> np.ndarray:
    """A recorded metric's value on each resample (R,), zero_division 0.

    ``accuracy`` is subset accuracy (every label of a sample right); ``recall[cat]`` (and
    precision, f1, F-beta such as ``f2``) the figure of one label, ``recall[macro]`` an
    average over the labels the samples show (macro, weighted), ``recall[micro]`` over all
    counts, ``recall[samples]`` the mean over samples (a sample with no labels and none
    predicted counts 1); ``balanced_accuracy`` and ``mcc``
    the mean over labels that show both values of each label's binary figure.
    """
    metric = MetricName.parse(name)
    base = metric.base
    kind, beta = _kind(base)
    n = rows.n
    if base == "accuracy":
        return rows._sum(np.all(rows.y_true == rows.y_pred, axis=1)) / np.maximum(n, 1)
    tp, pred, true = rows.counts()
    if base in ("balanced_accuracy", "mcc"):
        return _binary_mean(base, tp, pred, true, n[:, None])
    if metric.arg in MULTILABEL_AVERAGES:
        return _average(kind, metric.arg, rows, tp, pred, true, beta)
    j = list(class_names).index(str(metric.arg))
    return _from_counts(kind, tp[:, j], pred[:, j], true[:, j], beta)


def _kind(base: str) -> tuple[str, float]:
    if base in ("precision", "recall", "f1", "accuracy", "balanced_accuracy", "mcc"):
        return base, 1.0
    if base.startswith("f"):
        return "fbeta", float(base[1:])
    raise ModelGateError(f"no multilabel figure {base!r}")


def _average(kind: str, average: str, rows: RowCounts, tp: np.ndarray, pred: np.ndarray,
             true: np.ndarray, beta: float) -> np.ndarray:
    if average == "micro":
        return _from_counts(kind, tp.sum(1), pred.sum(1), true.sum(1), beta)
    if average == "samples":
        t, p = rows.y_true, rows.y_pred
        per_row = _from_counts(kind, (t & p).sum(1).astype(float), p.sum(1).astype(float),
                               t.sum(1).astype(float), beta)
        # A sample without labels that the model gives none is right, not 0 (scikit-learn's
        # zero_division=1 for it): else a perfect model scores below 1.
        per_row = np.where((t.sum(1) == 0) & (p.sum(1) == 0), 1.0, per_row)
        return rows._sum(per_row) / np.maximum(rows.n, 1)
    values = _from_counts(kind, tp, pred, true, beta)
    present = true > 0
    weights = present * (true if average == "weighted" else 1.0)
    return (values * weights).sum(1) / np.maximum(weights.sum(1), 1e-300)


def _binary_mean(base: str, tp: np.ndarray, pred: np.ndarray, true: np.ndarray,
                 n: np.ndarray) -> np.ndarray:
    """Mean over labels with both values present of each label's balanced accuracy or MCC."""
    fp, fn = pred - tp, true - tp
    tn = n - tp - fp - fn
    both = (true > 0) & (true < n)
    if base == "balanced_accuracy":
        tpr = tp / np.where(true > 0, true, 1)
        tnr = tn / np.where(n - true > 0, n - true, 1)
        values = (tpr + tnr) / 2
    else:
        denom = pred * true * (n - pred) * (n - true)
        values = np.where(denom > 0, (tp * tn - fp * fn) / np.sqrt(np.where(denom > 0, denom,
                                                                             1)), 0.0)
    return (values * both).sum(1) / np.maximum(both.sum(1), 1)


def multilabel_summary(y_true: np.ndarray, y_pred: np.ndarray,
                       class_names: Sequence[str]) -> dict:
    """Everything the assertions and the report show of multilabel predictions.

    JSON-ready: ``multilabel`` True, ``n``, ``accuracy`` (subset accuracy),
    ``label_accuracy`` (the share of right cells, 1 - Hamming loss), ``class_names``,
    ``label_confusion`` (per label ``[[tn, fp], [fn, tp]]``), ``per_class`` (one row per
    label with the keys of a single-label row: label, tp, predicted, support, precision,
    recall, f1; and fp, fn, tn) and ``averages`` (micro, macro, weighted, samples: each
    precision, recall, f1). An undefined per-label figure is None, as single-label rows.

    Example:
        >>> s = multilabel_summary(np.array([[1, 0], [1, 1]]), np.array([[1, 0], [0, 1]]),
        ...                        ["cat", "dog"])
        >>> s["accuracy"], s["per_class"][0]["recall"]
        (0.5, 0.5)
    """
    t = as_indicator(y_true, "y_true", len(class_names))
    p = as_indicator(y_pred, "y_pred", len(class_names))
    mcm = multilabel_confusion_matrix(t, p)
    rows = []
    for name, ((tn, fp), (fn, tp)) in zip(class_names, mcm.tolist(), strict=True):
        support, predicted = tp + fn, tp + fp
        rows.append({
            "label": str(name),
            "precision": tp / predicted if predicted else None,
            "recall": tp / support if support else None,
            "f1": 2 * tp / (support + predicted) if support else None,
            "support": support, "predicted": predicted, "tp": tp,
            "fp": fp, "fn": fn, "tn": tn,
        })
    whole = RowCounts.of(t, p)
    averages = {avg: {kind: float(figure(f"{kind}[{avg}]", class_names, whole)[0])
                      for kind in ("precision", "recall", "f1")}
                for avg in MULTILABEL_AVERAGES}
    return {
        "multilabel": True,
        "n": len(t),
        "accuracy": accuracy_score(t, p),
        "label_accuracy": 1.0 - hamming_loss(t, p),
        "class_names": [str(c) for c in class_names],
        "label_confusion": mcm.tolist(),
        "per_class": rows,
        "averages": averages,
    }
