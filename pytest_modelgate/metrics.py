"""Classification metrics on plain numpy arrays, with Wilson intervals.

Pure and light: numpy and the standard library only, so the assertions and the report can use
it without importing a framework. The functions named as scikit-learn's take its arguments
with its semantics and warnings, on labels as users have them (strings, bools, any
integers) and on multilabel 0/1 indicator matrices, and scikit-learn's own tests run
against them; the ``*_from_cm`` helpers work on
confusion matrices (and stacks of bootstrap resamples) with ``zero_division=0``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar

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


def as_label_array(y: Sequence[int] | np.ndarray, argname: str,
                   num_classes: int | None = None) -> np.ndarray:
    """Validate and convert a 1-d sequence of integer class indices (into ``num_classes``
    classes, when given).

    Example:
        >>> as_label_array([0, 1.0, True], "y_true", num_classes=2).tolist()
        [0, 1, 1]
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ModelGateError(f"{argname} must be 1-d class indices, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind not in "bf" or not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ModelGateError(
                f"{argname} must hold integer class indices, got {arr.dtype}; labels such as "
                "strings go through Predictions.from_arrays(..., class_names=...) or a "
                "(y_true, y_pred) tuple, which map them to classes"
            )
    arr = arr.astype(np.int64, copy=False)
    if num_classes is not None:
        _check_labels(arr, num_classes, argname)
    return arr


def _indices(v: np.ndarray, k: int | None) -> bool:
    """Whether labels are class indices: integers (or whole floats) from 0, below ``k``."""
    return v.dtype.kind in "iuf" and (not v.size or (v.min() >= 0 and (k is None or
                                                                        v.max() < k)))


def encode_labels(arrays: dict[str, Any], class_names: Sequence[Any] | None = None
                  ) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """Labels as users have them, as class indices, and the class names.

    Integers from 0 are indices already (into ``class_names``, or classes "0", "1", ...:
    the names returned are then None). Other labels (strings, bools, negative integers)
    are classes by their text: matched to ``class_names`` when given, else the classes are
    the sorted union of the labels of all ``arrays``, as scikit-learn orders them.
    """
    values = {name: _check_label_values(_labels_1d(y, name), name)
              for name, y in arrays.items()}
    if class_names is None:
        text = {name: _is_text(v) for name, v in values.items() if v.size}
        if len(set(text.values())) > 1:
            shown = ", ".join(f"{n} {values[n][:3].tolist()}" for n in text)
            raise ModelGateError(f"Mix of label input types (string and number): {shown}; use "
                                 "one type of label throughout, or name the classes with "
                                 "class_names= (integers then index into it)")
        if all(_indices(v, None) for v in values.values()):
            return {n: v.astype(np.int64) for n, v in values.items()}, None
        classes = np.unique(np.concatenate(list(values.values())))
        names = tuple(str(c) for c in classes.tolist())
        return {n: np.searchsorted(classes, v) for n, v in values.items()}, names
    names = tuple(str(c) for c in class_names)
    position = {name: i for i, name in enumerate(names)}
    out = {}
    for n, v in values.items():
        if _indices(v, len(names)):
            out[n] = v.astype(np.int64)
            continue
        distinct, inverse = np.unique(v, return_inverse=True)
        texts = [str(d) for d in distinct.tolist()]
        unknown = [t for t in texts if t not in position]
        if unknown and v.dtype.kind == "b" and len(names) >= 2:
            out[n] = v.astype(np.int64)   # bools beside 0/1 labels: False is 0, True is 1
            continue
        if unknown and v.dtype.kind in "iuf":
            raise ModelGateError(
                f"{n} holds labels outside the class list (0..{len(names) - 1} for "
                f"{list(names)}): {unknown[:5]}; labels are indices into class_names, or "
                "class names"
            )
        if unknown:
            raise ModelGateError(
                f"{n} holds labels {unknown[:5]} that are not in class_names {list(names)}; "
                "labels are class names, or indices 0..{} into class_names".format(len(names) - 1)
            )
        out[n] = np.array([position[t] for t in texts], dtype=np.int64)[inverse.ravel()]
    return out, names


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


def _from_counts(kind: str, tp: np.ndarray, predicted: np.ndarray, true: np.ndarray,
                 beta: float = 1.0) -> np.ndarray:
    """Precision, recall, F1 or (``kind="fbeta"``) F-beta from counts of true positives,
    predictions and true samples (arrays of one shape); 0 where undefined (zero_division=0).

    The one formula of these figures on confusion matrices: F-beta is scikit-learn's
    ``(1 + b2) tp / (b2 true + predicted)``.
    """
    if kind in ("f1", "fbeta"):
        b2 = 1.0 if kind == "f1" else float(beta) ** 2
        num, den = (1 + b2) * tp, b2 * true + predicted
    else:
        num, den = tp, {"precision": predicted, "recall": true}[kind]
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def class_metric_from_cm(cm: np.ndarray, kind: str, index: int,
                         beta: float = 1.0) -> np.ndarray:
    """Precision, recall, F1 or (``kind="fbeta"``) F-beta of class ``index`` from one matrix
    or a stack (..., K, K), zero_division 0.

    Example:
        >>> round(float(class_metric_from_cm(np.array([[3, 1], [2, 4]]), "fbeta", 1, beta=2)), 3)
        0.69
    """
    cm = np.asarray(cm)
    tp = cm[..., index, index].astype(np.float64)
    predicted = cm[..., :, index].sum(axis=-1).astype(np.float64)
    true = cm[..., index, :].sum(axis=-1).astype(np.float64)
    return _from_counts(kind, tp, predicted, true, beta)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix (zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    true = support.astype(np.float64)
    precision, recall, f1 = (_from_counts(kind, tp, predicted, true)
                             for kind in ("precision", "recall", "f1"))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "predicted": predicted.astype(np.int64), "tp": tp.astype(np.int64)}


def accuracy(cm: np.ndarray) -> float:
    """Fraction of samples on the diagonal."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def classification_summary(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Everything the assertions and the report show about one set of predictions.

    Returns a JSON-ready dict: ``n``, ``accuracy``, ``confusion_matrix`` (lists),
    ``class_names`` and ``per_class`` (one dict per class with precision, recall, f1, support).
    A figure that is undefined is None (JSON null, "n/a" in messages and the report), not
    scikit-learn's zero_division 0: precision of a class never predicted, recall and F1 of a
    class the test split has no images of.
    """
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    pc = per_class(cm)
    rows = []
    for i, name in enumerate(class_names):
        seen, called = bool(pc["support"][i]), bool(pc["predicted"][i])
        rows.append({
            "label": str(name),
            "precision": float(pc["precision"][i]) if called else None,
            "recall": float(pc["recall"][i]) if seen else None,
            "f1": float(pc["f1"][i]) if seen else None,
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


def _same_length(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = as_label_array(y_true, "y_true")
    p = as_label_array(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ModelGateError(
            f"y_true and y_pred differ in length ({len(t)} vs {len(p)}); "
            "pass one prediction per test sample"
        )
    return t, p


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
    return average_from_cm(cm, "f1", "macro", present)


def average_from_cm(cm: np.ndarray, kind: str, average: str,
                    present: np.ndarray | None = None, beta: float = 1.0) -> np.ndarray:
    """Averaged precision, recall, F1 or (``kind="fbeta"``) F-beta from one matrix or a stack
    (..., K, K), zero_division 0.

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
    values = _from_counts(kind, tp, pred, true, beta)
    if average == "micro":
        return values
    weights = present * (true if average == "weighted" else 1.0)
    total = weights.sum(axis=-1)
    plain = (values * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
    return np.where(total > 0, (values * weights).sum(axis=-1) / np.where(total > 0, total, 1),
                    plain)


# --- scikit-learn compatible functional API --------------------------------------------
#
# Classification with scikit-learn's semantics in full (labels, pos_label,
# average, zero_division, beta, warn_for, sample_weight, its warnings), on labels as users
# have them: integers (negative too), strings, bools; and multilabel 0/1 indicator matrices
# (dense, or scipy sparse made dense) where scikit-learn takes them, with its average,
# labels, samplewise and subset-accuracy semantics. scikit-learn's own tests of these
# functions run against them (tests/test_sklearn_suite.py). Written here rather than
# imported: scikit-learn is not a run-time dependency, and the plugin stays light.

# scikit-learn's average= options besides "binary" (the gates' own are specs.GATE_AVERAGES).
SKLEARN_AVERAGES = (None, "micro", "macro", "weighted", "samples")

MULTILABEL = (
    "multilabel indicator input (one 0/1 column per label) is not supported here, where "
    "one label per sample is expected (1-d y_true and y_pred). For multilabel gates pass "
    "both matrices to Predictions.from_arrays(y_true, y_pred, class_names=...); for figures, "
    "the scikit-learn style functions of pytest_modelgate.metrics "
    "(precision_recall_fscore_support, multilabel_confusion_matrix, ...) take them"
)


class UndefinedMetricWarning(UserWarning):
    """A metric is ill-defined (a class never predicted, never present) and was set to
    ``zero_division``. scikit-learn users filter it as they filter scikit-learn's: when
    scikit-learn is loaded, the warning raised is also an instance of
    ``sklearn.exceptions.UndefinedMetricWarning``."""


_BOTH: dict[type, type] = {}


def _undefined_metric_warning() -> type[Warning]:
    """This module's warning class, joined with scikit-learn's when scikit-learn is already
    imported (it is never imported here): a filter or ``pytest.warns`` on either catches it."""
    import sys

    theirs = getattr(sys.modules.get("sklearn.exceptions"), "UndefinedMetricWarning", None)
    if not isinstance(theirs, type) or not issubclass(theirs, Warning):
        return UndefinedMetricWarning
    if theirs not in _BOTH:
        _BOTH[theirs] = type("UndefinedMetricWarning", (UndefinedMetricWarning, theirs),
                             {"__module__": __name__, "__doc__": UndefinedMetricWarning.__doc__})
    return _BOTH[theirs]


def _zero_division_value(zero_division: float | str) -> float:
    if isinstance(zero_division, str):
        if zero_division == "warn":
            return 0.0
    elif isinstance(zero_division, (int, float, np.floating)) and not isinstance(
            zero_division, bool):
        if zero_division in (0, 1) or math.isnan(zero_division):
            return float(zero_division)
    raise ModelGateError(
        f"zero_division must be 0, 1, nan or 'warn' (as in scikit-learn), got {zero_division!r}"
    )


def _labels_1d(y: Any, argname: str) -> np.ndarray:
    """One label per sample as a 1-d array; a column vector is flattened. Multilabel
    indicators are refused by name (see ``MULTILABEL``)."""
    arr = _target_array(y, argname)
    if arr.ndim == 2:
        raise ModelGateError(f"{argname}: {MULTILABEL}")
    return arr


def _target_array(y: Any, argname: str) -> np.ndarray:
    """One label per sample (1-d; a column vector is flattened), or a multilabel indicator
    matrix (n_samples, n_labels) as booleans. A scipy sparse indicator is made dense (one
    byte a cell); anything else 2-d, and ragged rows, are refused by name."""
    if hasattr(y, "tocsr") or hasattr(y, "toarray"):  # a scipy sparse matrix or array
        if len(y.shape) != 2 or y.shape[1] < 2:
            raise ModelGateError(
                f"{argname} is sparse with shape {y.shape}: Sparse input is only supported "
                "when targets are of multilabel type; pass one label per sample as a 1-d array"
            )
        return _indicator(np.asarray(y.toarray()), argname)
    try:
        arr = np.asarray(y)
    except ValueError:   # numpy refuses rows of different lengths
        arr = None
    if arr is None or (arr.dtype == object and arr.ndim == 1 and
                       any(isinstance(v, (list, tuple, set, np.ndarray)) for v in arr)):
        raise ModelGateError(
            f"{argname} has rows of different lengths (a sequence of label lists): a "
            "multilabel target is a 0/1 indicator matrix of shape (n_samples, n_labels), one "
            "column per label, 1 where the label applies; build it with one row per sample"
        )
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        return _indicator(arr, argname)
    if arr.ndim != 1:
        raise ModelGateError(f"{argname} must be 1-d, one label per sample, got shape "
                             f"{arr.shape}")
    return arr


def _indicator(arr: np.ndarray, argname: str) -> np.ndarray:
    """A 2-d array of 0s and 1s as booleans, or a ModelGateError saying what it holds."""
    if arr.shape[1] == 0:
        raise ModelGateError(f"{argname} has shape {arr.shape}: a multilabel indicator needs "
                             "one column per label")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iu":
        valid = not arr.size or (arr.min() >= 0 and arr.max() <= 1)
    elif arr.dtype.kind == "f":
        valid = bool(((arr == 0) | (arr == 1)).all())
    else:
        valid = False
    if not valid:
        flat = arr.ravel()
        bad = flat[~np.isin(flat, (0, 1))] if arr.dtype.kind in "iuf" else flat
        raise ModelGateError(
            f"{argname} is a {arr.shape} matrix holding {bad[:3].tolist()}: "
            "multiclass-multioutput is not supported (nor continuous outputs); multilabel "
            "targets are 0/1 indicator matrices, one column per label, 1 where it applies. "
            "Threshold scores first, e.g. (scores >= 0.5).astype(int)"
        )
    return arr != 0


def _is_text(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "US":
        return True
    return arr.dtype == object and arr.size > 0 and all(isinstance(v, str) for v in arr)


def _check_label_values(arr: np.ndarray, argname: str) -> np.ndarray:
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ModelGateError(f"{argname} holds NaN or infinite values: pass class labels")
        if np.any(arr != np.round(arr)):
            raise ModelGateError(
                f"{argname} holds continuous values such as {arr[arr != np.round(arr)][0]!r}: "
                "classification metrics need class labels (continuous is not supported); "
                "threshold or arg-max your scores first"
            )
    elif arr.dtype == object:
        if any(v is None for v in arr):
            raise ModelGateError(f"{argname} holds None: every sample needs a label (drop the "
                                 "samples without one)")
        kinds = {isinstance(v, str) for v in arr}
        if len(kinds) > 1:
            raise ModelGateError(f"{argname}: Mix of label input types (string and number); "
                                 "use one type of label")
        if not kinds or kinds == {False}:
            try:
                arr = arr.astype(np.float64) if any(isinstance(v, float) for v in arr) \
                    else arr.astype(np.int64)
            except (TypeError, ValueError, OverflowError):
                raise ModelGateError(f"{argname} holds values that are not class labels "
                                     f"(strings, integers or bools)") from None
            return _check_label_values(arr, argname)
        arr = arr.astype(str)
    elif arr.dtype.kind not in "biuUS":
        raise ModelGateError(f"{argname} has dtype {arr.dtype}: pass class labels (strings, "
                             "integers or bools)")
    return arr


@dataclass(frozen=True)
class _Targets:
    """Single-label targets: labels encoded as indices into ``classes`` (sorted: the labels
    present, then any extra ``labels=``), with the weights and the task type scikit-learn
    would see. ``_Indicators`` answers the same questions for multilabel targets."""

    t: np.ndarray
    p: np.ndarray
    classes: np.ndarray
    n_present: int
    kind: str              # "binary" (at most two labels present) or "multiclass"
    weight: np.ndarray | None
    width: ClassVar[int] = 1   # labels per sample

    def index_of(self, labels: Any) -> np.ndarray:
        """Indices of ``labels`` (all in ``classes``: ``_targets`` put them there)."""
        return np.searchsorted(self.classes, np.asarray(labels))

    def select(self, labels: Any) -> np.ndarray:
        """Indices of ``labels``, or (None) of the labels present in y_true or y_pred."""
        return _present_index(self) if labels is None else self.index_of(labels)

    def class_counts(self, which: np.ndarray | None) -> np.ndarray:
        """Weighted counts per class of ``which`` (a boolean mask), or of all samples."""
        k = len(self.classes)
        if which is None:
            return np.bincount(self.t, weights=self.weight, minlength=k)
        w = None if self.weight is None else self.weight[which]
        return np.bincount(self.t[which], weights=w, minlength=k)

    def counts(self, chosen: np.ndarray, samplewise: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted true positives, predictions and true samples of the ``chosen`` classes,
        one-vs-rest: scikit-learn's sufficient statistics."""
        if samplewise:
            raise ModelGateError(
                "Samplewise metrics are not available outside of multilabel classification: "
                "average='samples' and samplewise=True need y_true and y_pred as 0/1 "
                "indicator matrices (n_samples, n_labels)"
            )
        pred = np.bincount(self.p, weights=self.weight, minlength=len(self.classes))
        return (self.class_counts(self.t == self.p)[chosen], pred[chosen],
                self.class_counts(None)[chosen])

    def exact(self) -> np.ndarray:
        """Per sample: whether the prediction is right."""
        return self.t == self.p

    def differing(self) -> np.ndarray:
        """Per sample: how many of its labels the prediction gets wrong (0 or 1)."""
        return self.t != self.p

    def confusion(self) -> np.ndarray:
        k = len(self.classes)
        return np.bincount(self.t * k + self.p, weights=self.weight,
                           minlength=k * k).reshape(k, k)

    def confusion_of_present(self) -> np.ndarray:
        """The confusion matrix over the labels present, with scikit-learn's warning when
        there is only one."""
        if self.n_present == 1:
            warnings.warn("A single label was found in 'y_true' and 'y_pred'. For the "
                          "confusion matrix to have the correct shape, use the 'labels' "
                          "parameter to pass all known labels.", UserWarning, stacklevel=3)
        present = _present_index(self)
        return self.confusion()[np.ix_(present, present)]


@dataclass(frozen=True)
class _Indicators:
    """Multilabel targets: boolean indicator matrices (n_samples, n_labels), with the
    weights; the labels are the column indices, as in scikit-learn."""

    t: np.ndarray
    p: np.ndarray
    weight: np.ndarray | None
    kind: ClassVar[str] = "multilabel-indicator"

    @property
    def width(self) -> int:
        return self.t.shape[1]

    def select(self, labels: Any) -> np.ndarray:
        """Column indices ``labels`` (all columns for None), checked as scikit-learn does."""
        if labels is None:
            return np.arange(self.width)
        idx = np.asarray(labels)
        if idx.ndim != 1 or (idx.size and (idx.dtype.kind not in "iuf" or
                                           np.any(idx != np.round(idx)))):
            raise ModelGateError(f"labels must be a 1-d list of column indices 0..{self.width - 1}"
                                 f" for multilabel targets, got {labels!r}")
        idx = idx.astype(np.int64)
        if idx.size and idx.max() >= self.width:
            raise ModelGateError("All labels must be in [0, n labels) for multilabel targets. "
                                 f"Got {idx.max()} > {self.width - 1}")
        if idx.size and idx.min() < 0:
            raise ModelGateError("All labels must be in [0, n labels) for multilabel targets. "
                                 f"Got {idx.min()} < 0")
        return idx

    def counts(self, chosen: np.ndarray, samplewise: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted true positives, predictions and true labels per chosen column, or
        (``samplewise``) per sample over the chosen columns."""
        t, p = self.t, self.p
        if len(chosen) != self.width or np.any(chosen != np.arange(self.width)):
            t, p = t[:, chosen], p[:, chosen]
        out = []
        for m in (t & p, p, t):
            if self.weight is None:
                out.append(np.count_nonzero(m, axis=1 if samplewise else 0))
            elif samplewise:
                out.append(np.count_nonzero(m, axis=1) * self.weight)
            else:
                out.append(self.weight @ m)
        return out[0], out[1], out[2]

    def exact(self) -> np.ndarray:
        """Per sample: whether the predicted set of labels is the true one (subset accuracy)."""
        return ~(self.t ^ self.p).any(axis=1)

    def differing(self) -> np.ndarray:
        return np.count_nonzero(self.t ^ self.p, axis=1)

    def confusion_of_present(self) -> np.ndarray:
        raise ModelGateError(
            "multilabel-indicator is not supported: balanced accuracy and the Matthews "
            "correlation are single-label metrics (as in scikit-learn). Score each label as "
            "its own binary task (y_true[:, j], y_pred[:, j]), or use precision, recall or F1 "
            "with average='micro', 'macro', 'weighted' or 'samples'"
        )


def _targets(y_true: Any, y_pred: Any, sample_weight: Any = None,
             labels: Any = None) -> _Targets | _Indicators:
    """Validate and encode a pair of targets as scikit-learn's ``_check_targets`` and
    ``LabelEncoder`` would, with a ModelGateError (a ValueError) for what it refuses: the
    one place that decides between single-label and multilabel input."""
    t = _target_array(y_true, "y_true")
    p = _target_array(y_pred, "y_pred")
    if len(t) != len(p):
        raise ModelGateError(
            f"y_true and y_pred differ in length ({len(t)} vs {len(p)}): Found input "
            f"variables with inconsistent numbers of samples: [{len(t)}, {len(p)}]; pass one "
            "prediction per test sample"
        )
    if len(t) == 0:
        raise ModelGateError("y_true and y_pred are empty (Found empty input array): a metric "
                             "needs at least one sample")
    weight = _sample_weight(sample_weight, len(t))
    if t.ndim == 2 or p.ndim == 2:
        return _multilabel_targets(t, p, weight)
    return _single_label_targets(t, p, weight, labels)


def _sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.ndim == 0:   # as scikit-learn's public functions
        raise ModelGateError(f"sample_weight is one number ({float(weight)}): pass one weight "
                             f"per sample, shape ({n},)")
    if weight.ndim != 1:
        raise ModelGateError(f"Sample weights must be 1D array or scalar: sample_weight has "
                             f"shape {weight.shape}; pass one weight per sample, shape ({n},)")
    if len(weight) != n:
        raise ModelGateError(f"sample_weight has shape {weight.shape}; pass one weight per "
                             f"sample, shape ({n},) (Found input variables with inconsistent "
                             f"numbers of samples: [{n}, {len(weight)}])")
    if not np.any(weight):
        raise ModelGateError("Sample weights must contain at least one non-zero number: "
                             "sample_weight is all zeros")
    return weight


def _multilabel_targets(t: np.ndarray, p: np.ndarray,
                        weight: np.ndarray | None) -> _Indicators:
    if t.ndim != p.ndim:
        one = t if t.ndim == 1 else p
        kind = "binary" if len(set(one.tolist())) <= 2 else "multiclass"
        kinds = ("multilabel-indicator", kind) if t.ndim == 2 else (kind, "multilabel-indicator")
        raise ModelGateError(
            f"Classification metrics can't handle a mix of {kinds[0]} and {kinds[1]} targets: "
            f"y_true has shape {t.shape}, y_pred {p.shape}; pass both as 0/1 indicator "
            "matrices (n_samples, n_labels), or both as one label per sample"
        )
    if t.shape[1] != p.shape[1]:
        raise ModelGateError(
            f"y_true has {t.shape[1]} label columns and y_pred {p.shape[1]}: Multi-label "
            "binary indicator input with different numbers of labels; pass one column per "
            "label in both, in the same order"
        )
    return _Indicators(t, p, weight)


def _single_label_targets(t: np.ndarray, p: np.ndarray, weight: np.ndarray | None,
                          labels: Any) -> _Targets:
    t = _check_label_values(t, "y_true")
    p = _check_label_values(p, "y_pred")
    if _is_text(t) != _is_text(p):
        raise ModelGateError(
            f"Mix of label input types (string and number): y_true holds {t[:3].tolist()}, "
            f"y_pred {p[:3].tolist()}; labels in y_true and y_pred should be of the same type"
        )
    if t.dtype.kind in "iu" and p.dtype.kind in "iu" and min(t.min(), p.min()) >= 0 and \
            max(t.max(), p.max()) < 4 * len(t) + 1024:
        # Non-negative integers: the labels present by counting, not sorting.
        seen = np.bincount(t, minlength=int(max(t.max(), p.max())) + 1) > 0
        seen |= np.bincount(p, minlength=len(seen)) > 0
        present = np.flatnonzero(seen)
    else:
        present = np.unique(np.concatenate([t, p]))
    classes = present
    if labels is not None:
        extra = np.asarray(labels)
        if extra.ndim != 1:
            raise ModelGateError("labels must be a 1-d list of labels")
        if extra.size and _is_text(extra) != _is_text(present):
            raise ModelGateError(f"labels holds {extra[:5].tolist()}, of another type than the "
                                 f"labels in y_true and y_pred ({present[:5].tolist()})")
        if extra.size:
            classes = np.unique(np.concatenate([present, extra]))
    if classes is present and present.dtype.kind in "iu" and present[0] == 0 and \
            present[-1] == len(present) - 1:
        ti, pi = t.astype(np.int64), p.astype(np.int64)   # already indices
    else:
        ti, pi = np.searchsorted(classes, t), np.searchsorted(classes, p)
    kind = "binary" if len(present) <= 2 else "multiclass"
    return _Targets(ti, pi, classes, len(present), kind, weight)


def _warn_prf(average: str | None, modifier: str, start: str, size: int) -> None:
    # average="samples" divides per sample: "no predicted labels", "in samples with".
    axis0, axis1 = ("label", "sample") if average == "samples" else ("sample", "label")
    where = "due to" if size == 1 else f"in {axis1}s with"
    warnings.warn(f"{start} ill-defined and being set to 0.0 {where} no {modifier} {axis0}s. "
                  "Use `zero_division` parameter to control this behavior.",
                  _undefined_metric_warning(), stacklevel=4)


def _prf_divide(num: np.ndarray, den: np.ndarray, metric: str, modifier: str,
                average: str | None, warn_for: Any, zero_division: float | str) -> np.ndarray:
    mask = den == 0
    result = np.asarray(num, dtype=np.float64) / np.where(mask, 1, den)
    if not mask.any():
        return result
    result[mask] = _zero_division_value(zero_division)
    if zero_division == "warn" and metric in warn_for:
        _warn_prf(average, modifier, f"{metric.capitalize()} is", len(result))
    return result


def _nanaverage(values: np.ndarray, weights: np.ndarray | None) -> float:
    mask = np.isnan(values)
    if values.size == 0 or mask.all():
        return float("nan")
    if weights is None:
        return float(np.mean(values[~mask]))
    w = np.asarray(weights, dtype=np.float64)[~mask]
    if w.sum() == 0:
        return float(np.mean(values[~mask]))
    return float(np.average(values[~mask], weights=w))


def _label_repr(classes: np.ndarray) -> str:
    return str(classes.tolist())


def precision_recall_fscore_support(
    y_true, y_pred, *, beta: float = 1.0, labels=None, pos_label: Any = 1,
    average: str | None = None, warn_for=("precision", "recall", "f-score"),
    sample_weight=None, zero_division: float | str = "warn",
):
    """Precision, recall, F-beta and support, as
    ``sklearn.metrics.precision_recall_fscore_support``.

    ``y_true`` and ``y_pred`` are one label per sample, or multilabel 0/1 indicator
    matrices (n_samples, n_labels; dense, or scipy sparse) whose labels are the column
    indices. ``average=None`` gives arrays per label (``labels``, else the labels present,
    sorted; every column for multilabel input); ``"binary"`` the figures of ``pos_label``;
    ``"micro"``, ``"macro"`` and ``"weighted"`` averages over labels, ``"samples"``
    (multilabel only) the average over samples, and no support. Undefined ratios (a label
    never predicted, or never present) are ``zero_division``; ``"warn"`` (the default) means
    0 and an ``UndefinedMetricWarning`` for the metrics in ``warn_for``.

    Example:
        >>> p, r, f, _ = precision_recall_fscore_support(["ok", "defect", "ok"],
        ...                                              ["ok", "ok", "ok"], average=None)
        >>> r.tolist()
        [0.0, 1.0]
        >>> round(f1_score([[1, 0, 1], [0, 1, 0]], [[1, 0, 0], [0, 1, 0]], average="samples"),
        ...       3)
        0.833
    """
    _zero_division_value(zero_division)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.number)) or \
            not beta >= 0:
        raise ModelGateError(f"beta must be a number >= 0 (2 weighs recall higher, 0.5 "
                             f"precision), got {beta!r}")
    if average not in SKLEARN_AVERAGES and average != "binary":
        raise ModelGateError(f"average has to be one of {SKLEARN_AVERAGES} or 'binary', got "
                             f"{average!r}")
    enc = _targets(y_true, y_pred, sample_weight, labels)
    if average == "binary":
        if enc.kind != "binary":
            options = [a for a in SKLEARN_AVERAGES if a != "samples" or enc.width > 1]
            raise ModelGateError(f"Target is {enc.kind} but average='binary'. Please choose "
                                 f"another average setting, one of {options}.")
        present_labels = _present(enc)
        if pos_label not in present_labels.tolist():
            if len(present_labels) >= 2:
                raise ModelGateError(f"pos_label={pos_label!r} is not a valid label. It "
                                     f"should be one of {_label_repr(present_labels)}")
            # One label present, and it is not pos_label: no sample is or is predicted
            # positive.
            zero = np.zeros(1, dtype=np.int64 if enc.weight is None else np.float64)
            return _prf_from_counts(zero, zero, zero, beta, average, warn_for, zero_division)
        labels = [pos_label]
    elif pos_label not in (None, 1):
        warnings.warn(f"Note that pos_label (set to {pos_label!r}) is ignored when average != "
                      f"'binary' (got {average!r}). You may use labels=[pos_label] to specify "
                      "a single positive class.", UserWarning, stacklevel=2)
    tp, pred, true = enc.counts(enc.select(labels), samplewise=average == "samples")
    return _prf_from_counts(tp, pred, true, beta, average, warn_for, zero_division, enc.weight)


def _prf_from_counts(tp: np.ndarray, pred: np.ndarray, true: np.ndarray, beta: float,
                     average: str | None, warn_for: Any, zero_division: float | str,
                     sample_weight: np.ndarray | None = None):
    """Precision, recall, F-beta and support from per-label (per-sample for
    ``average="samples"``) counts, scikit-learn's sufficient statistics, averaged as
    ``average`` asks."""
    if average == "micro":
        tp, pred, true = (np.array([a.sum()]) for a in (tp, pred, true))
    precision = _prf_divide(tp, pred, "precision", "predicted", average, warn_for,
                            zero_division)
    recall = _prf_divide(tp, true, "recall", "true", average, warn_for, zero_division)
    if np.isposinf(beta):
        f_score = recall
    elif beta == 0:
        f_score = precision
    else:
        beta2 = float(beta) ** 2
        f_score = _prf_divide((1 + beta2) * tp.astype(np.float64),
                              beta2 * true.astype(np.float64) + pred, "f-score",
                              "true nor predicted", average, warn_for, zero_division)
    if average is None:
        return precision, recall, f_score, true
    weights = {"weighted": true, "samples": sample_weight}.get(average)
    return (_nanaverage(precision, weights), _nanaverage(recall, weights),
            _nanaverage(f_score, weights), None)


def _present(enc: _Targets) -> np.ndarray:
    return enc.classes[_present_index(enc)]


def _present_index(enc: _Targets) -> np.ndarray:
    """Indices of the labels that occur in y_true or y_pred (not those only in labels=)."""
    k = len(enc.classes)
    if enc.n_present == k:
        return np.arange(k)
    seen = (np.bincount(enc.t, minlength=k) + np.bincount(enc.p, minlength=k)) > 0
    return np.flatnonzero(seen)


def _score(which: int, default_warn: tuple[str, ...], y_true, y_pred, kwargs: dict) -> Any:
    kwargs.setdefault("average", "binary")
    kwargs.setdefault("warn_for", default_warn)
    return precision_recall_fscore_support(y_true, y_pred, **kwargs)[which]


def precision_score(y_true, y_pred, **kwargs):
    """Precision, as ``sklearn.metrics.precision_score`` (keywords as
    ``precision_recall_fscore_support``; ``average`` defaults to ``"binary"``)."""
    return _score(0, ("precision",), y_true, y_pred, kwargs)


def recall_score(y_true, y_pred, **kwargs):
    """Recall, as ``sklearn.metrics.recall_score`` (``average`` defaults to ``"binary"``)."""
    return _score(1, ("recall",), y_true, y_pred, kwargs)


def fbeta_score(y_true, y_pred, *, beta: float, **kwargs):
    """F-beta, as ``sklearn.metrics.fbeta_score``: ``beta=2`` weighs recall twice as much as
    precision (a missed defect costs more than a false alarm), ``beta=0.5`` the reverse."""
    return _score(2, ("f-score",), y_true, y_pred, {**kwargs, "beta": beta})


def f1_score(y_true, y_pred, **kwargs):
    """F1, as ``sklearn.metrics.f1_score`` (``average`` defaults to ``"binary"``)."""
    return fbeta_score(y_true, y_pred, beta=1.0, **kwargs)


def accuracy_score(y_true, y_pred, *, normalize: bool = True, sample_weight=None) -> float:
    """Share (or, ``normalize=False``, weighted count) of exact matches; for multilabel
    indicator matrices, of samples whose whole set of labels is right (subset accuracy)."""
    enc = _targets(y_true, y_pred, sample_weight)
    correct = enc.exact().astype(np.float64)
    if not normalize:
        return float(correct.sum() if enc.weight is None else correct @ enc.weight)
    return float(np.average(correct, weights=enc.weight))


def balanced_accuracy_score(y_true, y_pred, *, sample_weight=None,
                            adjusted: bool = False) -> float:
    """Mean recall over the classes present in ``y_true``, as scikit-learn's; a class that
    occurs only in ``y_pred`` is left out with a warning; ``adjusted`` rescales chance to 0."""
    enc = _targets(y_true, y_pred, sample_weight)
    cm = enc.confusion_of_present()
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.diag(cm) / support
    if np.isnan(per_class).any():
        warnings.warn("y_pred contains classes not in y_true", UserWarning, stacklevel=2)
        per_class = per_class[~np.isnan(per_class)]
    score = np.mean(per_class)
    if adjusted:   # one class: chance is 1, and the score nan (numpy warns), as scikit-learn
        chance = 1 / len(per_class)
        score = (score - chance) / (1 - chance)
    return float(score)


def matthews_corrcoef(y_true, y_pred, *, sample_weight=None) -> float:
    """Matthews correlation coefficient, multi-class; 0 when undefined (as scikit-learn)."""
    return float(mcc_from_cm(_targets(y_true, y_pred, sample_weight).confusion_of_present()))


def multilabel_confusion_matrix(y_true, y_pred, *, sample_weight=None, labels=None,
                                samplewise: bool = False) -> np.ndarray:
    """One 2x2 matrix ``[[tn, fp], [fn, tp]]`` per label (or, ``samplewise``, per sample of
    multilabel input), as ``sklearn.metrics.multilabel_confusion_matrix``.

    Multilabel 0/1 indicator matrices give one matrix per column (``labels``: the column
    indices to keep, in that order); single-label input is taken one-vs-rest, one matrix per
    label present in either array, sorted (``labels`` picks and orders them, and may add
    absent ones). Counts are weighted by ``sample_weight``.

    Example:
        >>> multilabel_confusion_matrix([[1, 0], [1, 1]], [[1, 1], [0, 1]]).tolist()
        [[[0, 0], [1, 1]], [[0, 1], [0, 1]]]
    """
    enc = _targets(y_true, y_pred, sample_weight, labels)
    chosen = enc.select(labels)
    tp, pred, true = enc.counts(chosen, samplewise)
    fp, fn = pred - tp, true - tp
    if samplewise:   # only multilabel input gets here: counts over the chosen columns
        total = len(chosen) * (1 if enc.weight is None else enc.weight)
    else:
        total = len(enc.t) if enc.weight is None else enc.weight.sum()
    return np.stack([total - tp - fp - fn, fp, fn, tp], axis=-1).reshape(-1, 2, 2)


def hamming_loss(y_true, y_pred, *, sample_weight=None) -> float:
    """Share of labels predicted wrong, as ``sklearn.metrics.hamming_loss``: for multilabel
    indicator matrices, wrong cells over all cells; for single-label input, 1 - accuracy.

    Example:
        >>> hamming_loss([[0, 1, 1], [1, 0, 1]], [[0, 0, 1], [1, 0, 1]])
        0.16666666666666666
    """
    enc = _targets(y_true, y_pred, sample_weight)
    wrong = enc.differing()
    mean_weight = 1.0 if enc.weight is None else float(np.mean(enc.weight))
    total = wrong.sum() if enc.weight is None else wrong @ enc.weight
    return float(total) / (len(wrong) * enc.width * mean_weight)


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


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for one proportion (``wilson_intervals`` of scalars), as two
    floats; ``(0.0, 1.0)`` when ``n`` is 0.

    Example:
        >>> lo, hi = wilson_interval(45, 50)
        >>> round(lo, 3), round(hi, 3)
        (0.786, 0.957)
    """
    lo, hi = wilson_intervals(successes, n, confidence)
    return float(lo), float(hi)


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
    # Labels as users have them: indices into class_names, or the names themselves.
    indices, _ = encode_labels({"y_true": y_true, "y_pred": y_pred}, class_names)
    cm = confusion_matrix(indices["y_true"], indices["y_pred"], k)
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


# --- calibration -------------------------------------------------------------------------

# How expected calibration error groups test samples by confidence: equal-mass (adaptive)
# bins hold about n / bins samples each, equal-width bins split [0, 1] into equal intervals.
BINNINGS = ("equal-mass", "equal-width")


def check_calibration_options(bins: Any, binning: Any, n: int | None = None) -> None:
    """Validate ``bins`` (an int from 1, at most ``n`` samples) and ``binning``.

    Example:
        >>> check_calibration_options(15, "equal-mass", n=200)
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ModelGateError(f"bins must be an integer >= 1 such as 15, got {bins!r}")
    if n is not None and bins > n:
        raise ModelGateError(f"bins={bins} is more than the {n} test samples: each bin needs "
                             f"samples to average; pass at most bins={n} (15 is usual; "
                             "fewer bins on a small test set read less noise as error)")
    if binning not in BINNINGS:
        raise ModelGateError(f"binning must be one of {', '.join(map(repr, BINNINGS))}, got "
                             f"{binning!r}")


def top_label(y_true: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's confidence (its largest class probability) and whether that class is
    the true one: the top-label view of calibration (Guo et al. 2017).

    Multilabel (``y_true`` an (n, labels) 0/1 matrix, ``probabilities`` the same shape,
    one sigmoid per label): every label of every sample is a binary decision, its
    confidence max(p, 1 - p) and correct when p >= 0.5 agrees with the label; the n x
    labels decisions come out row by row (one sample's labels together)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y_true)
    if y.ndim == 2 and p.shape == y.shape and p.size:
        return np.maximum(p, 1 - p).ravel(), ((p >= 0.5) == (y == 1)).ravel()
    if p.ndim != 2 or p.shape[0] != y.shape[0] or y.ndim != 1:
        raise ModelGateError(f"probabilities must have shape (n, classes) with one row per "
                             f"label in y_true, got {p.shape} for {y.shape[0]} labels")
    if not p.shape[0]:
        raise ModelGateError("y_true is empty: calibration needs at least one test sample")
    return p.max(axis=1), p.argmax(axis=1) == y


def _bin_sums(confidence: np.ndarray, correct: np.ndarray, order: np.ndarray, bins: int,
              binning: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: samples, summed confidence and summed correctness. ``order`` lists the
    samples by increasing confidence (repeated where a bootstrap drew one several times):
    equal-mass bins are its consecutive runs of about n / bins samples (``np.array_split``),
    equal-width bins (lower, upper] of [0, 1] as in Guo et al.'s code."""
    conf, right = confidence[order], correct[order].astype(np.float64)
    if binning == "equal-mass":
        n = len(order)
        size, extra = divmod(n, bins)
        starts = np.arange(bins) * size + np.minimum(np.arange(bins), extra)
        # Equal confidences share a bin, the bin of the first of them: otherwise a bin edge
        # inside a run of ties (saturated 1.0s, a folder read class by class) would split
        # them by their order in the test set, and ECE would depend on that order.
        first = np.searchsorted(conf, conf, side="left")
        member = np.searchsorted(starts, first, side="right") - 1
        return (np.bincount(member, minlength=bins),
                np.bincount(member, weights=conf, minlength=bins),
                np.bincount(member, weights=right, minlength=bins))
    index = _width_index(conf, bins)
    return (np.bincount(index, minlength=bins), np.bincount(index, conf, minlength=bins),
            np.bincount(index, right, minlength=bins))


def _width_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Each confidence's equal-width bin: b where b / bins < confidence <= (b + 1) / bins
    (0 in the first bin)."""
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence, side="left")


def _ece_of(counts: np.ndarray, conf_sum: np.ndarray, right_sum: np.ndarray) -> float:
    return float(np.abs(right_sum - conf_sum).sum() / counts.sum())


def calibration_bins(y_true: Any, probabilities: Any, *, bins: int = 15,
                     binning: str = "equal-width") -> list[dict]:
    """The reliability diagram's table: per non-empty bin its confidence range (``lower``,
    ``upper``: the bin's edges for equal-width, its smallest and largest confidence for
    equal-mass), ``count``, mean ``confidence`` and ``accuracy``.

    Example:
        >>> rows = calibration_bins([0, 1], [[0.9, 0.1], [0.8, 0.2]], bins=1)
        >>> rows[0]["count"], round(rows[0]["confidence"], 3), rows[0]["accuracy"]
        (2, 0.85, 0.5)
    """
    confidence, correct = top_label(y_true, probabilities)
    check_calibration_options(bins, binning, len(confidence))
    order = np.argsort(confidence, kind="stable")
    counts, conf_sum, right_sum = _bin_sums(confidence, correct, order, bins, binning)
    edges = np.linspace(0.0, 1.0, bins + 1)
    bounds = np.r_[0, np.cumsum(counts)]
    rows = []
    for b in np.flatnonzero(counts):
        inside = confidence[order[bounds[b]:bounds[b + 1]]] if binning == "equal-mass" else None
        lower, upper = ((inside[0], inside[-1]) if inside is not None
                        else (edges[b], edges[b + 1]))
        rows.append({"lower": round(float(lower), 6), "upper": round(float(upper), 6),
                     "count": int(counts[b]), "confidence": float(conf_sum[b] / counts[b]),
                     "accuracy": float(right_sum[b] / counts[b])})
    return rows


def expected_calibration_error(y_true: Any, probabilities: Any, *, bins: int = 15,
                               binning: str = "equal-width") -> float:
    """Top-label expected calibration error (Guo et al. 2017): the samples' share-weighted
    mean, over confidence bins, of |accuracy - mean confidence|, where a sample's
    confidence is its largest class probability and it is correct when that class is the
    true one. 0 is perfectly calibrated.

    ``binning="equal-width"`` (``bins`` equal intervals of [0, 1], Guo et al.'s) or
    ``"equal-mass"`` (adaptive: bins of about n / bins samples, split at quantiles of the
    confidence); see ``assertions.assert_calibrated`` for the choice.

    Example:
        >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
        >>> round(expected_calibration_error([0, 1, 1, 0], probs, bins=1), 3)
        0.0
        >>> round(expected_calibration_error([0, 1, 1, 0], probs, bins=2,
        ...                                  binning="equal-mass"), 3)
        0.35
    """
    confidence, correct = top_label(y_true, probabilities)
    check_calibration_options(bins, binning, len(confidence))
    order = np.argsort(confidence, kind="stable")
    return _ece_of(*_bin_sums(confidence, correct, order, bins, binning))


def resampled_ece(confidence: np.ndarray, correct: np.ndarray, draws: np.ndarray, *,
                  bins: int, binning: str) -> np.ndarray:
    """ECE on each bootstrap resample, given as ``draws`` (resamples, n): how many times
    each sample was drawn. Equal-width bins do not move with the resample: its bins' sums
    are the draws times each sample's bin (one matrix product for all resamples).
    Equal-mass bins do: the samples are sorted once, and a resample in confidence order is
    each sample repeated as often as drawn, so no resample is sorted again."""
    if binning == "equal-width":
        member = np.zeros((len(confidence), bins))
        member[np.arange(len(confidence)), _width_index(confidence, bins)] = 1.0
        w = np.asarray(draws, dtype=np.float64)
        gap = w @ (member * correct[:, None]) - w @ (member * confidence[:, None])
        return np.abs(gap).sum(axis=1) / w.sum(axis=1)
    order = np.argsort(confidence, kind="stable")
    out = np.empty(len(draws))
    for i, times in enumerate(draws):
        repeated = np.repeat(order, np.asarray(times[order], dtype=np.int64))
        out[i] = _ece_of(*_bin_sums(confidence, correct, repeated, bins, binning))
    return out


DRAW_CELLS = 4_000_000  # per chunk of resamples: 32 MB of counts, whatever the test set


def bootstrap_draws(n: int, n_resamples: int, rng: np.random.Generator
                    ) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n`` samples as counts (how many times each is drawn), in
    chunks of (resamples, n) small enough to hold whatever ``n`` is."""
    step = max(1, min(n_resamples, DRAW_CELLS // max(n, 1)))
    for start in range(0, n_resamples, step):
        size = min(step, n_resamples - start)
        # n draws with replacement per resample, counted per sample (one bincount for the
        # chunk: each resample's samples offset by its row).
        picks = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        yield np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)


def bootstrap_ece(confidence: Any, correct: Any, *, bins: int = 15,
                  binning: str = "equal-width", n_resamples: int = 1000,
                  seed: int = 0, group: int = 1) -> np.ndarray:
    """ECE over ``n_resamples`` seeded bootstrap resamples of the test samples.

    ``group``: consecutive entries that belong to one test sample (a multilabel sample's
    labels, see ``top_label``) and are drawn together.

    Example:
        >>> vals = bootstrap_ece(np.full(50, 0.9), np.arange(50) % 10 > 0, bins=1,
        ...                      n_resamples=200)
        >>> bool(0.0 <= vals.min() and vals.max() < 0.2)
        True
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    check_calibration_options(bins, binning, n)
    rng = np.random.default_rng(seed)
    return np.concatenate([resampled_ece(confidence, correct, np.repeat(draws, group, axis=1),
                                         bins=bins, binning=binning)
                           for draws in bootstrap_draws(n // group, n_resamples, rng)])
