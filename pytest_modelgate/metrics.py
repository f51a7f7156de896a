"""Classification metrics on plain numpy arrays, with Wilson intervals.

Pure and light: numpy and the standard library only, so the assertions and the report can use
it without importing a framework. Semantics follow scikit-learn (``zero_division=0``: a class
never predicted has precision 0, a class absent from ``y_true`` has recall 0), and the tests
check every function against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from .errors import ModelGateError, user_error_frames

# Re-exported: the specs live in a numpy-free module so the plugin loads light.
from .specs import METRICS, MetricSpec, metric_spec  # noqa: F401

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def _check_labels(y: np.ndarray, num_classes: int, argname: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = sorted({int(v) for v in y if v < 0 or v >= num_classes})[:5]
        raise ModelGateError(
            f"{argname} holds labels {bad} outside 0..{num_classes - 1}; "
            f"pass labels as class indices into class_names"
        )


def as_label_array(y: Sequence[int] | np.ndarray, argname: str) -> np.ndarray:
    """Validate and convert a 1-d sequence of integer class indices."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ModelGateError(f"{argname} must be 1-d class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ModelGateError(f"{argname} must hold integer class indices, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix with rows = true class, columns = predicted class.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    y_true, y_pred = _same_length(y_true, y_pred)
    if num_classes < 1:
        raise ModelGateError(f"num_classes must be at least 1, got {num_classes}")
    _check_labels(y_true, num_classes, "y_true")
    _check_labels(y_pred, num_classes, "y_pred")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix (zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support.astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "predicted": predicted.astype(np.int64), "tp": tp.astype(np.int64)}


def accuracy(cm: np.ndarray) -> float:
    """Fraction of samples on the diagonal."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``(0.0, 1.0)`` when ``n`` is 0.

    Example:
        >>> lo, hi = wilson_interval(45, 50)
        >>> round(lo, 3), round(hi, 3)
        (0.786, 0.957)
    """
    if not 0 < confidence < 1:
        raise ModelGateError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def classification_summary(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Everything the assertions and the report show about one set of predictions.

    Returns a JSON-ready dict: ``n``, ``accuracy``, ``confusion_matrix`` (lists),
    ``class_names`` and ``per_class`` (one dict per class with precision, recall, f1, support).
    """
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    pc = per_class(cm)
    rows = []
    for i, name in enumerate(class_names):
        rows.append({
            "label": str(name),
            "precision": float(pc["precision"][i]),
            "recall": float(pc["recall"][i]),
            "f1": float(pc["f1"][i]),
            "support": int(pc["support"][i]),
            "predicted": int(pc["predicted"][i]),
            "tp": int(pc["tp"][i]),
        })
    return {
        "n": int(cm.sum()),
        "accuracy": accuracy(cm),
        "class_names": [str(c) for c in class_names],
        "confusion_matrix": cm.tolist(),
        "per_class": rows,
    }


# --- scikit-learn compatible functional API --------------------------------------------

AVERAGES = (None, "micro", "macro", "weighted", "binary")


def _zero_division_value(zero_division: float | str) -> float:
    if zero_division == "warn":
        return 0.0
    if isinstance(zero_division, (int, float)) and (
        zero_division in (0, 1) or math.isnan(zero_division)
    ):
        return float(zero_division)
    raise ModelGateError(
        f"zero_division must be 0, 1, nan or 'warn' (as in scikit-learn), got {zero_division!r}"
    )


def _same_length(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = as_label_array(y_true, "y_true")
    p = as_label_array(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ModelGateError(
            f"y_true and y_pred differ in length ({len(t)} vs {len(p)}); "
            "pass one prediction per test sample"
        )
    return t, p


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _same_length(y_true, y_pred)
    if t.size == 0:
        raise ModelGateError("y_true and y_pred are empty: a metric needs at least one sample")
    if min(t.min(), p.min()) < 0:
        raise ModelGateError("labels must be non-negative class indices")
    return t, p


def _sufficient_stats(y_true, y_pred, labels) -> tuple[np.ndarray, ...]:
    """tp, predicted and true counts per label (scikit-learn's multilabel confusion view)."""
    t, p = _pair(y_true, y_pred)
    if labels is None:
        labels = np.union1d(t, p)
    else:
        labels = as_label_array(labels, "labels")
        if labels.size == 0 or labels.min() < 0 or len(np.unique(labels)) != len(labels):
            raise ModelGateError("labels must be distinct non-negative class indices")
    k = int(max(t.max(), p.max(), labels.max())) + 1
    cm = confusion_matrix(t, p, k)
    tp = np.diag(cm)[labels]
    return tp, cm.sum(axis=0)[labels], cm.sum(axis=1)[labels], labels


def _divide(num: np.ndarray, den: np.ndarray, zero_value: float) -> np.ndarray:
    out = np.full(num.shape, zero_value, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanaverage(values: np.ndarray, weights: np.ndarray | None) -> float:
    mask = np.isnan(values)
    if values.size == 0 or mask.all():
        return float("nan")
    if weights is None:
        return float(np.mean(values[~mask]))
    w = weights[~mask].astype(np.float64)
    if w.sum() == 0:
        return float(np.mean(values[~mask]))
    return float(np.average(values[~mask], weights=w))


def precision_recall_fscore_support(
    y_true, y_pred, *, labels=None, average: str | None = None, pos_label: int = 1,
    zero_division: float | str = 0.0,
):
    """Precision, recall, F1 and support, as ``sklearn.metrics.precision_recall_fscore_support``.

    ``average=None`` gives arrays per label (``labels`` or the labels present); ``"micro"``,
    ``"macro"``, ``"weighted"`` and ``"binary"`` give floats and no support.
    """
    if average not in AVERAGES:
        raise ModelGateError(f"average must be one of {AVERAGES}, got {average!r}")
    zero = _zero_division_value(zero_division)
    if average == "binary":
        present = np.union1d(*_pair(y_true, y_pred))
        if len(present) > 2:
            raise ModelGateError(
                f"average='binary' needs two classes, found {len(present)}; choose 'macro', "
                "'micro' or 'weighted'"
            )
        labels = [pos_label]
    tp, pred_sum, true_sum, _ = _sufficient_stats(y_true, y_pred, labels)
    if average == "micro":
        tp, pred_sum, true_sum = (np.array([a.sum()]) for a in (tp, pred_sum, true_sum))
    precision = _divide(tp, pred_sum, zero)
    recall = _divide(tp, true_sum, zero)
    f1 = _divide(2.0 * tp, (true_sum + pred_sum).astype(np.float64), zero)
    if average is None:
        return precision, recall, f1, true_sum
    weights = true_sum if average == "weighted" else None
    return (_nanaverage(precision, weights), _nanaverage(recall, weights),
            _nanaverage(f1, weights), None)


def precision_score(y_true, y_pred, **kwargs):
    """Precision; keywords as ``precision_recall_fscore_support`` (``average`` default binary)."""
    kwargs.setdefault("average", "binary")
    return precision_recall_fscore_support(y_true, y_pred, **kwargs)[0]


def recall_score(y_true, y_pred, **kwargs):
    """Recall; keywords as ``precision_recall_fscore_support`` (``average`` default binary)."""
    kwargs.setdefault("average", "binary")
    return precision_recall_fscore_support(y_true, y_pred, **kwargs)[1]


def f1_score(y_true, y_pred, **kwargs):
    """F1; keywords as ``precision_recall_fscore_support`` (``average`` default binary)."""
    kwargs.setdefault("average", "binary")
    return precision_recall_fscore_support(y_true, y_pred, **kwargs)[2]


def accuracy_score(y_true, y_pred) -> float:
    """Share of exact matches."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def _cm_of(y_true, y_pred) -> np.ndarray:
    t, p = _pair(y_true, y_pred)
    return confusion_matrix(t, p, int(max(t.max(), p.max())) + 1)


def balanced_accuracy_from_cm(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes that occur; works on one matrix or a stack (..., K, K)."""
    support = cm.sum(axis=-1)
    recall = np.diagonal(cm, axis1=-2, axis2=-1) / np.where(support > 0, support, 1)
    present = support > 0
    return (recall * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def mcc_from_cm(cm: np.ndarray) -> np.ndarray:
    """Matthews correlation (multi-class, Gorodkin) from one matrix or a stack (..., K, K)."""
    # Sums on the integer matrix, floats only for the (..., K) margins.
    t_sum = cm.sum(axis=-1).astype(np.float64)
    p_sum = cm.sum(axis=-2).astype(np.float64)
    correct = np.trace(cm, axis1=-2, axis2=-1).astype(np.float64)
    n = p_sum.sum(axis=-1)
    cov_tp = correct * n - (t_sum * p_sum).sum(axis=-1)
    cov_pp = n**2 - (p_sum * p_sum).sum(axis=-1)
    cov_tt = n**2 - (t_sum * t_sum).sum(axis=-1)
    denom = cov_pp * cov_tt
    return np.where(denom > 0, cov_tp / np.sqrt(np.where(denom > 0, denom, 1)), 0.0)


def macro_f1_from_cm(cm: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Macro F1 over ``present`` classes (default: those in truth or predictions), zero_division 0.

    Works on one matrix or a stack (..., K, K).
    """
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    denom = cm.sum(axis=-1) + cm.sum(axis=-2)
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    if present is None:
        present = denom > 0
    return (f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def average_from_cm(cm: np.ndarray, kind: str, average: str,
                    present: np.ndarray | None = None) -> np.ndarray:
    """Averaged precision, recall or F1 from one matrix or a stack (..., K, K), zero_division 0.

    ``present`` marks the classes a macro or weighted average runs over (default: those in
    the truth or the predictions of each matrix), as scikit-learn with ``labels=None``.
    """
    cm = np.asarray(cm)
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    pred = cm.sum(axis=-2).astype(np.float64)
    true = cm.sum(axis=-1).astype(np.float64)
    if present is None:
        present = (pred + true) > 0
    if average == "micro":
        tp, pred, true = ((a * present).sum(axis=-1) for a in (tp, pred, true))
    den = {"precision": pred, "recall": true, "f1": pred + true}[kind]
    num = 2 * tp if kind == "f1" else tp
    values = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    if average == "micro":
        return values
    weights = present * (true if average == "weighted" else 1.0)
    total = weights.sum(axis=-1)
    plain = (values * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
    return np.where(total > 0, (values * weights).sum(axis=-1) / np.where(total > 0, total, 1),
                    plain)


def balanced_accuracy_score(y_true, y_pred) -> float:
    """Mean per-class recall over classes present in ``y_true`` (scikit-learn's definition)."""
    return float(balanced_accuracy_from_cm(_cm_of(y_true, y_pred)))


def matthews_corrcoef(y_true, y_pred) -> float:
    """Matthews correlation coefficient, multi-class; 0 when undefined (as scikit-learn)."""
    return float(mcc_from_cm(_cm_of(y_true, y_pred)))


# --- intervals ---------------------------------------------------------------------------

def wilson_intervals(successes: np.ndarray | int, n: np.ndarray | int,
                     confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson intervals; ``(0, 1)`` where ``n`` is 0."""
    if not 0 < confidence < 1:
        raise ModelGateError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n = np.asarray(n, dtype=np.float64)
    safe = np.where(n > 0, n, 1)
    p = np.asarray(successes, dtype=np.float64) / safe
    denom = 1 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / denom
    lo = np.where(n > 0, np.clip(centre - half, 0, 1), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0, 1), 1.0)
    return lo, hi


BOOTSTRAP_CHUNKS = 4  # fixed, so results do not depend on how many threads draw them


def bootstrap_confusion(cm: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Resampled confusion matrices, shape (n_resamples, K, K).

    A metric of a confusion matrix depends on the samples only through the cell counts, so
    resampling n samples with replacement is exactly a multinomial draw over the cells with
    the observed shares: one draw per cell and resample instead of n index lookups. Empty
    cells stay empty and cost nothing. The resamples come in a fixed number of chunks, each
    from its own seeded generator, drawn on threads (numpy releases the GIL while drawing),
    so the result depends on ``seed`` alone.
    """
    if n_resamples < 1:
        raise ModelGateError(f"n_resamples must be positive, got {n_resamples}")
    cm = np.asarray(cm)
    n = int(cm.sum())
    if n == 0:
        raise ModelGateError("cannot bootstrap an empty confusion matrix")
    flat = cm.ravel()
    cells = np.flatnonzero(flat)
    shares = flat[cells] / n
    sizes = [len(c) for c in np.array_split(np.arange(n_resamples), BOOTSTRAP_CHUNKS) if len(c)]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))

    def draw(i: int) -> np.ndarray:
        return np.random.default_rng(seeds[i]).multinomial(n, shares, size=sizes[i])

    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = min(len(sizes), os.cpu_count() or 1)
    if workers > 1 and len(cells) * n_resamples > 1_000_000:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(draw, range(len(sizes))))
    else:
        parts = [draw(i) for i in range(len(sizes))]
    out = np.zeros((n_resamples, flat.size), dtype=np.int64)
    out[:, cells] = np.concatenate(parts)
    return out.reshape(n_resamples, *cm.shape)


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Central percentile interval of bootstrap values."""
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def classification_report(y_true, y_pred, class_names: Sequence[str], *,
                          confidence: float = 0.95, n_resamples: int = 1000,
                          seed: int = 0) -> dict:
    """Per-class figures with Wilson intervals, and macro F1, balanced accuracy and MCC with
    seeded bootstrap intervals over the confusion matrix.

    Example:
        >>> r = classification_report([0, 1, 1, 0], [0, 1, 0, 0], ["a", "b"], n_resamples=200)
        >>> round(r["balanced_accuracy"]["value"], 3)
        0.75
    """
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    pc = per_class(cm)
    r_lo, r_hi = wilson_intervals(pc["tp"], pc["support"], confidence)
    p_lo, p_hi = wilson_intervals(pc["tp"], pc["predicted"], confidence)
    n = int(cm.sum())
    a_lo, a_hi = wilson_intervals(np.trace(cm), n, confidence)
    boot = bootstrap_confusion(cm, n_resamples, seed)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    out = {"n": n, "confusion_matrix": cm,
           "accuracy": {"value": accuracy(cm), "interval": (float(a_lo), float(a_hi))},
           "per_class": {"label": list(class_names), "precision": pc["precision"],
                         "precision_interval": (p_lo, p_hi), "recall": pc["recall"],
                         "recall_interval": (r_lo, r_hi), "f1": pc["f1"],
                         "support": pc["support"]}}
    for name, fn in (("f1_macro", lambda c: macro_f1_from_cm(c, present)),
                     ("balanced_accuracy", balanced_accuracy_from_cm), ("mcc", mcc_from_cm)):
        out[name] = {"value": float(fn(cm)),
                     "interval": percentile_interval(fn(boot), confidence)}
    return out


# --- binary operating points -------------------------------------------------------------

def precision_recall_curve(y_true_binary, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds over every distinct score, as scikit-learn's
    ``precision_recall_curve`` (decreasing recall; the last point is precision 1, recall 0).
    """
    y = np.asarray(y_true_binary).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ModelGateError("y_true and scores must be 1-d and of the same length")
    if not y.any():
        raise ModelGateError("no positive samples: a precision-recall curve needs at least one")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.array([], dtype=np.int64)
    ends = np.r_[distinct, len(s) - 1]
    tps = np.cumsum(y)[ends]
    fps = (ends + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    # Reversed to increasing thresholds, as scikit-learn returns them.
    return (np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], s[ends][::-1])
