"""Classification metrics on plain numpy arrays, with Wilson intervals.

Pure and light: numpy and the standard library only, so the assertions and the report can use
it without importing a framework. Semantics follow scikit-learn (``zero_division=0``: a class
never predicted has precision 0, a class absent from ``y_true`` has recall 0), and the tests
check every function against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .errors import ModelGateError


@dataclass(frozen=True)
class MetricSpec:
    """What a metric means: its direction, bounds and default tolerance for baselines.

    ``default_tolerance`` is the allowed worsening against a baseline: absolute when
    ``relative`` is False (``0.02`` = two points of recall), a fraction of the baseline
    value when True (``0.5`` = half the baseline speedup).
    """

    name: str
    higher_is_better: bool
    lower: float | None = 0.0
    upper: float | None = 1.0
    default_tolerance: float = 0.02
    relative: bool = False


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", higher_is_better=True),
        MetricSpec("recall", higher_is_better=True),
        MetricSpec("precision", higher_is_better=True),
        # Wall-clock ratios are noisy between machines and runs: a loose, relative tolerance.
        MetricSpec("speedup", higher_is_better=True, upper=None, default_tolerance=0.5,
                   relative=True),
        MetricSpec("leaked_pairs", higher_is_better=False, upper=None, default_tolerance=0.0),
    )
}


def metric_spec(name: str) -> MetricSpec:
    """Return the spec for a metric name such as ``"recall"`` or ``"recall[defect]"``."""
    base = name.split("[", 1)[0]
    try:
        return METRICS[base]
    except KeyError:
        known = ", ".join(sorted(METRICS))
        raise ModelGateError(f"unknown metric {base!r}; known metrics: {known}") from None


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
    y_true = as_label_array(y_true, "y_true")
    y_pred = as_label_array(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ModelGateError(
            f"y_true and y_pred differ in length ({len(y_true)} vs {len(y_pred)}); "
            "pass one prediction per test sample"
        )
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
