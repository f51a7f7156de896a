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


@dataclass
class Trained:
    """What an engine hands back after training: the model's name and whether it started
    pretrained, the device it ran on, test probabilities (n, classes), train-split
    predictions (None: a race run cut at its budget skips that pass), the seconds spent on
    the clock before the first epoch, the facts the run's config records (image size, head
    path, device model, ...) and the trained head's weights as arrays (for the cache)."""

    name: str
    pretrained: bool
    device: str
    probabilities: np.ndarray
    train_predictions: np.ndarray | None
    setup_seconds: float
    details: dict[str, Any]
    head_state: dict[str, np.ndarray] = field(default_factory=dict)


def run_record(trained: Trained, data: Splits, config: TrainConfig, log: EpochLog
               ) -> FinetuneRun:
    """The run record the assertions, cache, race, baseline and report read."""
    trained_config: dict[str, Any] = asdict(config)
    trained_config.update(trained.details)
    train_pred = trained.train_predictions
    return FinetuneRun(
        model=trained.name,
        class_names=data.class_names,
        y_true=np.asarray(data.test.labels).copy(),
        y_pred=trained.probabilities.argmax(1),
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
