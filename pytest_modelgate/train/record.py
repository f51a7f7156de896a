"""The timing and record contract every engine shares: an engine hands ``EpochLog`` each
epoch's numbers, and this module keeps the history, checks the loss, decides when a race
stops, says so in the run's notes, and builds the run record from what the engine returns
(``Trained``). An engine never builds a ``FinetuneRun`` itself, so every framework (and,
later, every way of running ranks) yields the same record."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Splits
from ..errors import ModelGateError, user_error_frames
from ..run import EpochStats, FinetuneRun
from .config import TrainConfig, budget_note, budget_noted, out_of_budget, over_budget

if TYPE_CHECKING:
    from ..frameworks import Framework

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

log = logging.getLogger("pytest_modelgate")


class EpochLog:
    """A run's epochs as the engine reports them: cumulative training seconds, history,
    notes, one progress line per epoch, the NaN check and the race's stop.

    ``seconds`` starts at what the engine spent before the first epoch on the clock (a
    head-only run's feature pass; see ``start``) and grows by each epoch's training time
    (evaluation excluded).
    """

    def __init__(self, config: TrainConfig,
                 progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.progress = progress
        self.name = "model"
        self.seconds = 0.0
        self.history: list[EpochStats] = []
        self.notes: list[str] = []

    def start(self, name: str, seconds: float) -> None:
        """The epochs begin: the model's name for the progress lines, and the seconds
        already on the clock (a head-only run's feature pass; 0 for most)."""
        self.name = name
        self.seconds = seconds

    def note(self, text: str) -> None:
        """A line for the run's notes (the report shows them in order)."""
        self.notes.append(text)

    def warmed_up(self, how: str, seconds: float) -> None:
        """The warm-up's note: what ran before the clock started, and how long it took."""
        self.notes.append(f"{how}: {seconds:.1f}s, not timed")

    def passes_budget(self, seconds_into_epoch: float) -> bool:
        """Whether training, ``seconds_into_epoch`` into the current epoch, has reached the
        race's budget (an engine that can stop mid-epoch asks after each step)."""
        return over_budget(self.config, self.seconds + seconds_into_epoch)

    def cut_by_budget(self) -> bool:
        """Whether the race's budget ended training (a run cut so serves only the race)."""
        return budget_noted(self.notes)

    def end_epoch(self, epoch: int, *, loss: float, train_accuracy: float, seconds: float,
                  evaluate: Callable[[], float], cut: tuple[int, int] | None = None) -> bool:
        """Record one epoch: its mean train loss, running train accuracy and training
        seconds; ``evaluate`` gives the test accuracy after it. ``cut=(seen, n)``: the engine
        stopped the epoch at the race's budget after ``seen`` of ``n`` images. Returns
        whether training stops here (target reached, or the budget spent).

        Raises:
            ModelGateError: the loss is NaN or infinite (a NaN step makes the epoch's sum
                NaN, so checking once per epoch catches it).
        """
        config = self.config
        if not math.isfinite(loss):
            raise ModelGateError(
                f"training loss became {loss} in epoch {epoch}; lower the learning rate "
                f"(lr={config.lr:g}) or check the data for broken images")
        self.seconds += seconds
        test_accuracy = evaluate()
        stats = EpochStats(epoch, loss, train_accuracy, test_accuracy, self.seconds)
        self.history.append(stats)
        line = (f"modelgate: {self.name} epoch {epoch}/{config.epochs}: loss {loss:.4f}, "
                f"train acc {train_accuracy:.3f}, test acc {test_accuracy:.3f}, "
                f"{self.seconds:.1f}s")
        log.info(line)
        if self.progress is not None:
            self.progress(line)
        if config.stop_at_accuracy is not None and test_accuracy >= config.stop_at_accuracy:
            self.notes.append(f"stopped after epoch {epoch}: reached "
                              f"{config.stop_at_accuracy:.3f}")
            return True
        if cut is not None:
            seen, n = cut
            self.notes.append(budget_note(config, self.seconds,
                                          f"in epoch {epoch}, after {seen} of {n} images"))
            return True
        return out_of_budget(config, self.seconds, epoch, self.notes)


def label_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy an epoch's history records, from a model's outputs (logits): for one
    label per image the share of arg-max hits; for a multilabel 0/1 matrix the mean
    per-label accuracy (1 - Hamming loss), each class called where its sigmoid reaches 0.5
    (its logit 0)."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return float(np.mean((logits >= 0) == (labels > 0)))
    return float(np.mean(logits.argmax(1) == labels))


@dataclass
class Trained:
    """What an engine hands back after training: the model's name and whether it started
    pretrained, the device it ran on, test probabilities (n, classes: softmax rows, or a
    multilabel run's sigmoids), train-split predictions (None: a race run cut at its budget
    skips that pass, and a multilabel run hands ``train_probabilities`` instead, which its
    thresholds apply to), the seconds spent on the clock before the first epoch, the facts
    the run's config records (image size, head path, device model, ...) and the trained
    head's weights as arrays (for the cache)."""

    name: str
    pretrained: bool
    device: str
    probabilities: np.ndarray
    train_predictions: np.ndarray | None
    setup_seconds: float
    details: dict[str, Any]
    head_state: dict[str, np.ndarray] = field(default_factory=dict)
    train_probabilities: np.ndarray | None = None


def f1_best_thresholds(probabilities: np.ndarray, labels: np.ndarray
                       ) -> tuple[tuple[float, ...], list[float | None]]:
    """Per class, the threshold on ``probabilities`` (n, classes) with the best F1 against
    the 0/1 ``labels``, and that F1 (None: the class has no positive image, so it keeps
    0.5). Of thresholds that call the same images, the midpoint between the lowest score
    called and the highest one not called: as far from both as the train split allows.
    Ties go to the higher threshold (fewer images called)."""
    chosen: list[float] = []
    f1s: list[float | None] = []
    for k in range(probabilities.shape[1]):
        scores, truth = probabilities[:, k].astype(np.float64), labels[:, k] > 0
        positives = int(truth.sum())
        if positives == 0:
            chosen.append(0.5)
            f1s.append(None)
            continue
        order = np.argsort(-scores, kind="stable")
        ranked, hits = scores[order], np.cumsum(truth[order])
        # Calling the top i + 1 images is a threshold only where the next score is lower.
        last = np.flatnonzero(np.append(ranked[1:] < ranked[:-1], True))
        tp = hits[last]
        f1 = 2 * tp / (last + 1 + positives)
        best = int(last[int(np.argmax(f1))])
        below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
        chosen.append(float((ranked[best] + below) / 2))
        f1s.append(float(f1.max()))
    return tuple(chosen), f1s


def thresholds_for(config: TrainConfig, trained: Trained, data: Splits,
                   log: EpochLog) -> tuple[float, ...]:
    """A multilabel run's per-class thresholds: the config's, or with ``threshold="train"``
    the F1-best on the train split's predictions, which the run's notes then list."""
    k = len(data.class_names)
    if config.threshold != "train":
        t = config.threshold
        return tuple(t) if isinstance(t, tuple) else (float(t if t is not None else 0.5),) * k
    if trained.train_probabilities is None:   # a race run cut at its budget: no train pass
        log.note("threshold='train': no train-split pass (the race's budget cut the run), "
                 "so every class is called at 0.5")
        return (0.5,) * k
    chosen, f1s = f1_best_thresholds(trained.train_probabilities, data.train.labels)
    parts = [f"{name} {t:.3f}" + (f" (train F1 {f:.3f})" if f is not None else
                                  " (no train images: 0.5)")
             for name, t, f in zip(data.class_names, chosen, f1s, strict=True)]
    log.note("threshold='train': per class, the threshold with the best F1 on the train "
             "split's predictions after training: " + ", ".join(parts))
    return chosen


def run_record(trained: Trained, data: Splits, config: TrainConfig, log: EpochLog
               ) -> FinetuneRun:
    """The run record the assertions, cache, race, baseline and report read. A multilabel
    run's predictions are its probabilities at or above its thresholds, class by class."""
    trained_config: dict[str, Any] = asdict(config)
    trained_config.update(trained.details)
    train_pred = trained.train_predictions
    thresholds = None
    if data.multilabel:
        thresholds = thresholds_for(config, trained, data, log)
        trained_config.update(task="multilabel", thresholds=list(thresholds))
        y_pred = (trained.probabilities >= np.asarray(thresholds)).astype(np.int64)
        if trained.train_probabilities is not None:
            train_pred = (trained.train_probabilities >= np.asarray(thresholds)
                          ).astype(np.int64)
    else:  # a multiclass run's record stays as it was before ``task`` existed
        del trained_config["task"], trained_config["threshold"]
        y_pred = trained.probabilities.argmax(1)
    return FinetuneRun(
        model=trained.name,
        class_names=data.class_names,
        y_true=np.asarray(data.test.labels).copy(),
        y_pred=y_pred,
        probabilities=trained.probabilities,
        history=tuple(log.history),
        seconds=log.seconds,
        setup_seconds=trained.setup_seconds,
        device=trained.device,
        freeze=config.freeze,
        pretrained=trained.pretrained,
        config=trained_config,
        notes=tuple(log.notes),
        train_y_true=None if train_pred is None else np.array(data.train.labels),
        train_y_pred=train_pred,
        thresholds=thresholds,
    )


def fit(framework: Framework, loaded: Any, data: Splits, config: TrainConfig, *,
        progress: Callable[[str], None] | None = None,
        head_finder: Callable[[Any], str | None] | None = None
        ) -> tuple[FinetuneRun, dict[str, np.ndarray]]:
    """Train ``loaded`` with its framework's engine here, in this process; returns the run
    record and the trained head's weights (which the run cache stores)."""
    log = EpochLog(config, progress)
    trained = framework.train(loaded, data, config, log, head_finder=head_finder)
    return run_record(trained, data, config, log), trained.head_state
