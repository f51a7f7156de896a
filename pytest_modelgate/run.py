"""What gates check: predictions on a test split, from a fine-tuning run or from plain arrays.

Kept free of torch so assertions can be imported (and used on models trained elsewhere)
without a framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import ModelGateError, user_error_frames
from .metrics import (
    as_label_array,
    classification_summary,
    encode_labels,
    precision_recall_curve,
)

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean train loss, train accuracy (running, during the epoch), test accuracy
    after it, and cumulative training seconds (evaluation excluded) at its end.

    For a multilabel run both accuracies are the mean per-label accuracy (1 - Hamming
    loss: the share of image-class cells predicted right, each class called at probability
    0.5), not subset accuracy (every class of an image right), which stays near 0 for the
    first epochs; the run's tuned ``thresholds`` apply to its final predictions only.
    """

    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float


def _check_scores(scores: Any, n: int, k: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        if k != 2:
            raise ModelGateError(
                f"1-d scores are positive-class probabilities of a binary task, but there are "
                f"{k} classes; pass an (n, {k}) array of class probabilities"
            )
        s = np.stack([1 - s, s], axis=1)
    if s.shape != (n, k):
        raise ModelGateError(f"scores must have shape ({n}, {k}) (samples, classes), "
                             f"got {s.shape}")
    if not np.all(np.isfinite(s)):
        bad = int(np.flatnonzero(~np.isfinite(s).all(axis=1))[0])
        raise ModelGateError(f"scores hold NaN or infinite values (first in row {bad}); "
                             "check the model's output")
    if s.min() < 0 or s.max() > 1:
        raise ModelGateError("scores must be probabilities in [0, 1]; apply softmax (or a "
                             "sigmoid for one positive-class column) first")
    sums = s.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > 1e-3)
    if off.size:
        raise ModelGateError(
            f"each row of scores must sum to 1 (class probabilities); row {int(off[0])} sums "
            f"to {sums[off[0]]:.4f}: apply softmax to logits first"
        )
    return s


def _check_label_scores(scores: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Multilabel scores: (n, K) independent probabilities in [0, 1], one per label (sigmoid
    outputs); unlike class probabilities, a row need not sum to 1."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != tuple(shape):
        raise ModelGateError(f"scores must have shape {tuple(shape)} (samples, labels) like "
                             f"y_true, got {s.shape}")
    if not np.all(np.isfinite(s)):
        bad = int(np.flatnonzero(~np.isfinite(s).all(axis=1))[0])
        raise ModelGateError(f"scores hold NaN or infinite values (first in row {bad}); "
                             "check the model's output")
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ModelGateError("multilabel scores must be probabilities in [0, 1], one per "
                             "label: apply a sigmoid to the logits first")
    return s


def _refuse_matrix_prediction(y_pred: Any) -> None:
    """A 0/1 matrix of predictions beside one true label per sample: a half-multilabel."""
    if y_pred is not None and np.ndim(y_pred) == 2 and np.shape(y_pred)[1] > 1:
        raise ModelGateError(
            f"y_pred is an {np.shape(y_pred)} matrix but y_true holds one label per sample: "
            "for a multilabel task pass y_true as an (n, classes) 0/1 matrix too; for class "
            "probabilities pass scores= instead")


def _label_column(class_names: Sequence[str], label: str | int) -> int:
    if str(label) in class_names:
        return list(class_names).index(str(label))
    raise ModelGateError(f"label={label!r} is not a label of this run; labels are "
                         f"{list(class_names)}")


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of samples predicted right: for (n, K) matrices, every label of the row."""
    right = y_true == y_pred
    return float(np.mean(right.all(axis=1) if right.ndim == 2 else right))


def _summary(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    if np.ndim(y_true) == 2:
        from .multilabel import multilabel_summary

        return multilabel_summary(y_true, y_pred, class_names)
    return classification_summary(y_true, y_pred, class_names)


@dataclass(frozen=True, eq=False)
class Predictions:
    """Test-split labels and predictions over named classes, optionally with probabilities
    (``scores``, shape (n, classes)) and train-split predictions for overfitting checks.

    Multilabel: ``y_true`` and ``y_pred`` are (n, classes) 0/1 matrices (column k: the sample
    shows class k) and ``scores`` independent per-label probabilities (``multilabel``).

    Example:
        >>> p = Predictions.from_arrays([0, 1, 1], [0, 1, 0], class_names=["ok", "defect"])
        >>> p.summary()["accuracy"]
        0.6666666666666666
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    class_names: tuple[str, ...]
    scores: np.ndarray | None = None
    train_y_true: np.ndarray | None = None
    train_y_pred: np.ndarray | None = None
    history: tuple[EpochStats, ...] = ()
    source: str = "predictions"
    # Ids of the test samples (content ids from an ImageSet), so a baseline can tell whether
    # the test set changed; without them the samples are identified by position and label.
    sample_ids: tuple[str, ...] | None = None
    # The test split's name where it has one ("val" for from_folder's train/ and val/), so
    # a message about the test images can name the folder the user knows.
    test_split: str | None = None
    # What is known of each test sample beyond its label ({"camera": [...]}, from a
    # manifest's columns): slices of a gate filter on it.
    attributes: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if np.ndim(self.y_true) == 2:   # a multilabel 0/1 matrix: its own checks
            self._check_multilabel()
            return
        _refuse_matrix_prediction(self.y_pred)
        k = len(self.class_names)
        arrays = {"y_true": self.y_true, "y_pred": self.y_pred}
        if self.train_y_true is not None and self.train_y_pred is not None:
            arrays.update(train_y_true=self.train_y_true, train_y_pred=self.train_y_pred)
        # Labels as the user has them (strings, bools, ...) become indices into class_names.
        indices, _ = encode_labels(arrays, self.class_names)
        y_true = as_label_array(indices["y_true"], "y_true", k)
        y_pred = as_label_array(indices["y_pred"], "y_pred", k)
        if y_true.size == 0:
            raise ModelGateError("y_true is empty: a gate needs at least one test sample")
        if y_true.shape != y_pred.shape:
            raise ModelGateError(f"y_true and y_pred differ in length ({len(y_true)} vs "
                                 f"{len(y_pred)}); pass one prediction per test sample")
        object.__setattr__(self, "y_true", y_true)
        object.__setattr__(self, "y_pred", y_pred)
        if self.scores is not None:
            object.__setattr__(self, "scores", _check_scores(self.scores, len(y_true), k))
        from .data.splits import checked_attributes

        object.__setattr__(self, "attributes",
                           checked_attributes(self.attributes, len(y_true), "attributes"))
        if (self.train_y_true is None) != (self.train_y_pred is None):
            raise ModelGateError("pass both train_y_true and train_y_pred, or neither")
        if self.train_y_true is not None and self.train_y_pred is not None:
            tt = as_label_array(indices["train_y_true"], "train_y_true", k)
            tp = as_label_array(indices["train_y_pred"], "train_y_pred", k)
            if tt.shape != tp.shape or tt.size == 0:
                raise ModelGateError("train_y_true and train_y_pred must be non-empty and of "
                                     "the same length")
            object.__setattr__(self, "train_y_true", tt)
            object.__setattr__(self, "train_y_pred", tp)

    def _check_multilabel(self) -> None:
        """Multilabel: y_true, y_pred (and the train pair) (n, K) 0/1 matrices over the K
        class names; scores (n, K) independent probabilities in [0, 1] (no row sums)."""
        from .multilabel import as_indicator

        k = len(self.class_names)
        y_true = as_indicator(self.y_true, "y_true", k)
        if np.ndim(self.y_pred) != 2:
            raise ModelGateError(
                f"y_true is a multilabel ({len(y_true)}, {k}) 0/1 matrix but y_pred has shape "
                f"{np.shape(self.y_pred)}: pass y_pred as a 0/1 matrix of the same shape (or "
                "scores= and a threshold to Predictions.from_arrays)")
        y_pred = as_indicator(self.y_pred, "y_pred", k)
        if y_true.size == 0:
            raise ModelGateError("y_true is empty: a gate needs at least one test sample")
        if y_true.shape != y_pred.shape:
            raise ModelGateError(f"y_true and y_pred differ in length ({len(y_true)} vs "
                                 f"{len(y_pred)}); pass one prediction row per test sample")
        for name, value in (("y_true", y_true), ("y_pred", y_pred)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        if self.scores is not None:
            object.__setattr__(self, "scores", _check_label_scores(self.scores, y_true.shape))
        from .data.splits import checked_attributes

        object.__setattr__(self, "attributes",
                           checked_attributes(self.attributes, len(y_true), "attributes"))
        if (self.train_y_true is None) != (self.train_y_pred is None):
            raise ModelGateError("pass both train_y_true and train_y_pred, or neither")
        if self.train_y_true is not None:
            tt = as_indicator(self.train_y_true, "train_y_true", k)
            tp = as_indicator(self.train_y_pred, "train_y_pred", k)
            if tt.shape != tp.shape or tt.size == 0:
                raise ModelGateError("train_y_true and train_y_pred must be non-empty 0/1 "
                                     "matrices of the same shape")
            object.__setattr__(self, "train_y_true", tt)
            object.__setattr__(self, "train_y_pred", tp)

    @property
    def multilabel(self) -> bool:
        """Whether the targets are (n, classes) 0/1 matrices (several classes per sample)."""
        return self.y_true.ndim == 2

    def label_task(self, label: str | int) -> Predictions:
        """Multilabel: one label as the binary task it is (classes ``not <label>`` and
        ``<label>``), with its score column as the positive-class probability."""
        if not self.multilabel:
            raise ModelGateError("label_task() splits a multilabel task; this one is not")
        j = _label_column(self.class_names, label)
        name = self.class_names[j]
        return Predictions(self.y_true[:, j], self.y_pred[:, j], (f"not {name}", name),
                           None if self.scores is None else self.scores[:, j],
                           None if self.train_y_true is None else self.train_y_true[:, j],
                           None if self.train_y_pred is None else self.train_y_pred[:, j],
                           self.history, source=f"{self.source}, label {name!r}",
                           sample_ids=self.sample_ids, test_split=self.test_split,
                           attributes=self.attributes)

    @classmethod
    def from_arrays(cls, y_true: Sequence[Any], y_pred: Any = None,
                    scores: Any = None, *, class_names: Sequence[Any] | None = None,
                    train: tuple[Sequence[Any], Sequence[Any]] | None = None,
                    attributes: Mapping[str, Sequence[Any]] | None = None,
                    threshold: float = 0.5) -> Predictions:
        """Predictions from plain arrays, for models trained elsewhere.

        Labels as you have them: class indices (integers from 0), or strings, bools,
        negative integers, which are classes by their text. ``class_names`` orders and names
        the classes (labels are then names in it, or indices into it); without it the
        classes are ``"0"``, ``"1"``, ... for indices, else the sorted labels present.
        ``y_pred`` defaults to the arg-max of ``scores`` (columns in class order);
        ``train=(y_true, y_pred)`` on the train split enables ``assert_no_overfitting``;
        ``attributes={"camera": [...]}`` (one value per test sample) enables slices.

        Multilabel: ``y_true`` an (n, classes) 0/1 matrix (column k: the sample shows class
        k), ``y_pred`` one of the same shape, or ``scores`` (n, classes) independent
        probabilities (sigmoid outputs: rows need not sum to 1) and ``y_pred`` is
        ``scores >= threshold``. Without ``class_names`` the labels are ``"0"``, ``"1"``...

        Example:
            >>> p = Predictions.from_arrays(["ok", "defect", "ok"], ["ok", "ok", "ok"])
            >>> p.class_names, p.y_true.tolist()
            (('defect', 'ok'), [1, 0, 1])
        """
        if np.ndim(y_true) == 2:
            return cls._from_matrices(y_true, y_pred, scores, class_names, train, attributes,
                                      threshold)
        _refuse_matrix_prediction(y_pred)
        derived = y_pred is None
        if y_pred is None:
            if scores is None:
                raise ModelGateError("pass y_pred, scores, or both")
            s = np.asarray(scores, dtype=np.float64)
            y_pred = (s >= 0.5).astype(np.int64) if s.ndim == 1 else s.argmax(axis=1)
        train_true, train_pred = train if train is not None else (None, None)
        if derived and class_names is None and np.asarray(y_true).dtype.kind in "USOb":
            raise ModelGateError(
                "y_true holds labels such as strings and y_pred comes from the columns of "
                "scores: pass class_names= naming the score columns in order"
            )
        if class_names is None:
            arrays = {"y_true": y_true, "y_pred": y_pred}
            if train_true is not None and train_pred is not None:
                arrays.update(train_y_true=train_true, train_y_pred=train_pred)
            indices, class_names = encode_labels(arrays)
            if class_names is None:   # class indices: classes "0", "1", ... up to the largest
                top = max((int(a.max()) for a in indices.values() if a.size), default=0)
                width = np.asarray(scores).shape[1] if scores is not None and \
                    np.asarray(scores).ndim == 2 else 0
                class_names = [str(i) for i in range(max(top + 1, width, 2))]
        return cls(np.asarray(y_true), np.asarray(y_pred), tuple(str(c) for c in class_names),
                   scores, None if train_true is None else np.asarray(train_true),
                   None if train_pred is None else np.asarray(train_pred),
                   attributes=attributes)

    @classmethod
    def _from_matrices(cls, y_true: Any, y_pred: Any, scores: Any,
                       class_names: Sequence[Any] | None,
                       train: tuple[Any, Any] | None, attributes: Any,
                       threshold: float) -> Predictions:
        """``from_arrays`` for a multilabel task (y_true an (n, classes) 0/1 matrix)."""
        t = np.asarray(y_true)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or \
                not 0 <= threshold <= 1:
            raise ModelGateError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if y_pred is None:
            if scores is None:
                raise ModelGateError("pass y_pred, scores, or both")
            s = _check_label_scores(scores, t.shape)
            y_pred = (s >= threshold).astype(np.int64)
        if class_names is None:
            class_names = [str(i) for i in range(t.shape[1])]
        train_true, train_pred = train if train is not None else (None, None)
        return cls(t, np.asarray(y_pred), tuple(str(c) for c in class_names), scores,
                   None if train_true is None else np.asarray(train_true),
                   None if train_pred is None else np.asarray(train_pred),
                   attributes=attributes)

    # --- figures ---------------------------------------------------------------------

    @property
    def accuracy(self) -> float:
        """Share of test samples predicted right; multilabel: subset accuracy (every label
        of the sample right)."""
        return _accuracy(self.y_true, self.y_pred)

    @property
    def train_accuracy(self) -> float | None:
        if self.train_y_true is None:
            return None
        return _accuracy(self.train_y_true, self.train_y_pred)

    def summary(self) -> dict:
        """Confusion matrix and per-class figures (see ``metrics.classification_summary``);
        multilabel: per-label figures and 2x2 matrices (``multilabel.multilabel_summary``)."""
        return _summary(self.y_true, self.y_pred, self.class_names)

    @property
    def test_split_text(self) -> str:
        """How messages name the test split: ``the test split (val)``."""
        named = self.test_split not in (None, "test")
        return "the test split" + (f" ({self.test_split})" if named else "")

    def no_test_images(self, index: int) -> str:
        """The message of a figure asked of a class the test split has no images of."""
        name = self.class_names[index]
        return (f"{self.test_split_text} has no images of class {name!r}, so no figure of "
                f"that class can be measured; add test images of {name!r}, or gate a class "
                "the test split has")

    # --- binary operating points -------------------------------------------------------

    def positive_index(self, positive: str | int | None = None) -> int:
        """Index of the positive class: by name, by index, or class 1 by default."""
        if self.multilabel:
            raise ModelGateError(
                "operating points of a multilabel task are per label: name the label with "
                "positive=, or take one label's binary task with label_task(label)")
        if len(self.class_names) != 2:
            raise ModelGateError(
                f"operating points need a binary task; this one has {len(self.class_names)} "
                "classes"
            )
        if positive is None:
            return 1
        if isinstance(positive, str) and positive in self.class_names:
            return self.class_names.index(positive)
        if isinstance(positive, int) and not isinstance(positive, bool) and positive in (0, 1):
            return positive
        raise ModelGateError(f"positive={positive!r} is not one of {list(self.class_names)}")

    def _positive_scores(self, positive: str | int | None) -> tuple[int, np.ndarray]:
        index = self.positive_index(positive)
        if self.scores is None:
            raise ModelGateError("operating points need scores (class probabilities); pass "
                                 "scores= to Predictions.from_arrays")
        return index, self.scores[:, index]

    def at_threshold(self, threshold: float, *, positive: str | int | None = None
                     ) -> Predictions:
        """Predictions that call the positive class when its probability >= ``threshold``."""
        if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ModelGateError(f"threshold must be in [0, 1], got {threshold!r}")
        index, s = self._positive_scores(positive)
        y_pred = np.where(s >= threshold, index, 1 - index)
        return replace(self, y_pred=y_pred)

    def pr_curve(self, positive: str | int | None = None) -> dict[str, np.ndarray]:
        """Precision, recall and thresholds of the positive class (scikit-learn's order)."""
        index, s = self._positive_scores(positive)
        if not np.any(self.y_true == index):
            raise ModelGateError(self.no_test_images(index))
        precision, recall, thresholds = precision_recall_curve(self.y_true == index, s)
        return {"precision": precision, "recall": recall, "thresholds": thresholds}

    def threshold_for(self, *, recall: float | None = None, precision: float | None = None,
                      positive: str | int | None = None) -> float:
        """The threshold that meets a recall target (the highest such threshold, for the best
        precision) or a precision target (the lowest, for the best recall).

        Raises:
            ModelGateError: no threshold reaches the target.
        """
        if (recall is None) == (precision is None):
            raise ModelGateError("pass exactly one of recall= or precision=")
        target = recall if recall is not None else precision
        if not isinstance(target, (int, float)) or not 0 <= target <= 1:
            raise ModelGateError(f"the target must be in [0, 1], got {target!r}")
        curve = self.pr_curve(positive)
        t = curve["thresholds"]
        if recall is not None:
            ok = np.flatnonzero(curve["recall"][:-1] >= recall)
            if ok.size == 0:
                raise ModelGateError(f"no threshold reaches recall {recall}")
            return float(t[ok[-1]])
        ok = np.flatnonzero(curve["precision"][:-1] >= precision)
        if ok.size == 0:
            best = float(curve["precision"][:-1].max())
            raise ModelGateError(f"no threshold reaches precision {precision} "
                                 f"(best {best:.3f})")
        return float(t[ok[0]])


@dataclass(frozen=True, eq=False, repr=False)
class FinetuneRun:
    """Predictions on the test split, class names, per-epoch history and timing of one run.

    ``seconds`` is the training time (for head-only runs, the one backbone feature pass over
    the train split plus the head epochs); ``setup_seconds`` is the part of it spent before
    the first epoch. ``train_y_pred`` comes from an evaluation pass over the train split
    after training (no augmentation).
    """

    model: str
    class_names: tuple[str, ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    probabilities: np.ndarray
    history: tuple[EpochStats, ...]
    seconds: float
    setup_seconds: float
    device: str
    freeze: str | int
    pretrained: bool
    config: dict[str, Any]
    notes: tuple[str, ...] = ()
    train_y_true: np.ndarray | None = None
    train_y_pred: np.ndarray | None = None
    cached: bool = False
    # The run cache's key for this run (None: not cached): the merge records which tests
    # used the same run, so --modelgate-shard keeps them on one runner.
    cache_key: str | None = None
    # The test split the run predicted: its ids identify the test set for the baseline, its
    # images become the report's thumbnails of what changed. Not cached, not compared.
    test_set: Any = field(default=None, repr=False, compare=False)
    scratch_runner: Callable[..., FinetuneRun] | None = field(
        default=None, repr=False, compare=False
    )
    # The run's model as it was before fine-tuning (its pretrained weights), loaded anew
    # at a given image size: the leakage embedding stage's features (embeddings=run).
    backbone: Callable[..., Any] | None = field(default=None, repr=False, compare=False)
    # A multilabel run's per-class thresholds on ``probabilities`` (``y_pred`` is
    # probabilities >= thresholds, column by column); None for a multiclass run (arg-max).
    thresholds: tuple[float, ...] | None = None

    def __repr__(self) -> str:
        # One line: print(run) and pytest's tracebacks show it, and whole prediction arrays
        # say nothing there (run.to_dict() and the report hold everything).
        kind = "pretrained" if self.pretrained else "scratch"
        names = ", ".join(self.class_names[:5]) + (", ..." if len(self.class_names) > 5 else "")
        cached = ", cached" if self.cached else ""
        subset = "subset " if np.ndim(self.y_true) == 2 else ""
        return (f"FinetuneRun({self.model!r}, {kind}, freeze={self.freeze}, {subset}accuracy "
                f"{self.accuracy:.3f} on {len(self.y_true)} test images, "
                f"{len(self.class_names)} classes: {names}, {self.seconds:.2f}s on "
                f"{self.device}{cached})")

    @property
    def predictions(self) -> Predictions:
        """The run's test (and train) predictions, as the assertions check them."""
        return Predictions(self.y_true, self.y_pred, self.class_names, self.probabilities,
                           self.train_y_true, self.train_y_pred, self.history,
                           source=self.label,
                           sample_ids=None if self.test_set is None else self.test_set.ids,
                           test_split=None if self.test_set is None else self.test_set.name,
                           attributes=self.attributes)

    @property
    def attributes(self) -> dict[str, np.ndarray]:
        """Per-sample attributes of the test split (``{"camera": array}``), in the order of
        ``y_true``; empty when the data has none."""
        return dict(getattr(self.test_set, "attributes", None) or {})

    @property
    def label(self) -> str:
        """How the report and messages name this run."""
        kind = "pretrained" if self.pretrained else "scratch"
        return f"{self.model} ({kind}, freeze={self.freeze})"

    @property
    def accuracy(self) -> float:
        """Test accuracy of the final model; multilabel: subset accuracy (every label of a
        test image right)."""
        return _accuracy(self.y_true, self.y_pred) if len(self.y_true) else 0.0

    def time_to_accuracy(self, target: float) -> tuple[float, int] | None:
        """``(seconds, epoch)`` when test accuracy first reached ``target``; None if never."""
        for stats in self.history:
            if stats.test_accuracy >= target:
                return stats.seconds, stats.epoch
        return None

    def summary(self) -> dict:
        """Confusion matrix and per-class figures on the test split (see metrics);
        multilabel: per-label figures and 2x2 matrices."""
        return _summary(self.y_true, self.y_pred, self.class_names)

    def at_threshold(self, threshold: float, *, positive: str | int | None = None
                     ) -> Predictions:
        """Binary task: predictions calling the positive class at ``threshold``."""
        return self.predictions.at_threshold(threshold, positive=positive)

    def threshold_for(self, *, recall: float | None = None, precision: float | None = None,
                      positive: str | int | None = None) -> float:
        """Binary task: the threshold that meets a recall or precision target."""
        return self.predictions.threshold_for(recall=recall, precision=precision,
                                              positive=positive)

    def to_dict(self) -> dict:
        """JSON-ready description for records, the report and the baseline."""
        return {
            "model": self.model,
            "pretrained": self.pretrained,
            "freeze": self.freeze,
            "device": self.device,
            "seconds": round(self.seconds, 4),
            "setup_seconds": round(self.setup_seconds, 4),
            "config": self.config,
            "notes": list(self.notes),
            "history": [vars(h) for h in self.history],
            "train_accuracy": self.predictions.train_accuracy,
            "cached": self.cached,
            "cache_key": self.cache_key,
            "summary": self.summary(),
            **self._pr_curve_view(),
        }

    def _pr_curve_view(self) -> dict:
        """Binary runs: the precision-recall curve of class 1 (at most 200 points) and the
        operating point of the arg-max predictions, for the report; or ``pr_note``, why
        there is none. Recording a run never fails the gate that records it."""
        if len(self.class_names) != 2 or self.probabilities is None or \
                np.ndim(self.y_true) == 2:
            return {"pr_curve": None, "pr_note": None}
        p = self.predictions
        if not np.any(self.y_true == 1):
            return {"pr_curve": None, "pr_note": "precision-recall curve not drawn: "
                    f"{p.test_split_text} has no images of {self.class_names[1]!r}"}
        try:
            curve = p.pr_curve(1)
        except ModelGateError as exc:
            return {"pr_curve": None, "pr_note": f"precision-recall curve not drawn: {exc}"}
        step = max(1, len(curve["recall"]) // 200)
        positives = self.y_true == 1
        called = self.y_pred == 1
        tp = int(np.sum(positives & called))
        point = [tp / max(int(positives.sum()), 1), tp / max(int(called.sum()), 1)]
        return {"pr_curve": {
            "positive": self.class_names[1], "operating_point": point,
            "points": [[round(float(r), 4), round(float(q), 4)] for r, q in
                       zip(curve["recall"][::step], curve["precision"][::step], strict=True)]},
            "pr_note": None}
