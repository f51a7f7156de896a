"""The result of one fine-tuning run: plain data the assertions and the report read.

Kept free of torch so assertions can be imported (and used on runs loaded from elsewhere)
without a framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import classification_summary


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean train loss, train accuracy (running, during the epoch), test accuracy
    after it, and cumulative training seconds (evaluation excluded) at its end."""

    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float


@dataclass(frozen=True, eq=False)
class FinetuneRun:
    """Predictions on the test split, class names, per-epoch history and timing of one run.

    ``seconds`` is the training time (for head-only runs, the one backbone feature pass over
    the train split plus the head epochs); ``setup_seconds`` is the part of it spent before
    the first epoch.
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
    scratch_runner: Callable[..., FinetuneRun] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def accuracy(self) -> float:
        """Test accuracy of the final model."""
        return float(np.mean(self.y_true == self.y_pred)) if len(self.y_true) else 0.0

    def time_to_accuracy(self, target: float) -> tuple[float, int] | None:
        """``(seconds, epoch)`` when test accuracy first reached ``target``; None if never."""
        for stats in self.history:
            if stats.test_accuracy >= target:
                return stats.seconds, stats.epoch
        return None

    def summary(self) -> dict:
        """Confusion matrix and per-class figures on the test split (see metrics)."""
        return classification_summary(self.y_true, self.y_pred, self.class_names)

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
            "summary": self.summary(),
        }
