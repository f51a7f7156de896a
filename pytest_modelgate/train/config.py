"""The training configuration: everything besides model and data that decides a run's
outcome, the same for every framework."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ModelGateError, user_error_frames
from ..specs import DEVICES

if TYPE_CHECKING:
    from ..run import FinetuneRun

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


@dataclass(frozen=True)
class TrainConfig:
    """Everything besides model and data that decides a run's outcome."""

    epochs: int = 3
    freeze: str | int = "backbone"
    lr: float = 1e-3
    backbone_lr: float | None = None  # learning rate of trained backbone layers; None: lr
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    head: str | None = None
    stop_at_accuracy: float | None = None
    compile: bool = False  # torch.compile the training step (PyTorch); compile time off the clock
    # The race's budget: stop once training passes it (the verdict is decided): PyTorch at
    # that step, Keras after that epoch. Not part of a run's cache key (see run_finetune).
    stop_after_seconds: float | None = None
    # Data-parallel ranks (``workers=N``): ``batch_size`` stays the global batch, each rank
    # takes ``batch_size // workers`` of it. Where the ranks run is ``train.ranks``'s.
    workers: int = 1
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch (PyTorch)
    # "multiclass" (one label per image: softmax) or "multilabel" (a 0/1 label matrix:
    # sigmoids); None: what the data says (``for_data`` sets it). ``threshold``: a
    # multilabel run's per-label cut on the probabilities (a float, one per label, or
    # "train": the F1-best on the train split); None for a multiclass run (arg-max).
    task: str | None = None
    threshold: float | tuple[float, ...] | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ModelGateError(f"epochs must be a positive integer, got {self.epochs!r}")
        n_blocks = isinstance(self.freeze, int) and not isinstance(self.freeze, bool)
        if self.freeze not in ("backbone", "none") and not (n_blocks and int(self.freeze) >= 1):
            raise ModelGateError(
                f"freeze must be 'backbone' (train the head only), 'none' (train all) or a "
                f"positive int N (train the head and the last N blocks), got {self.freeze!r}"
            )
        if not self.lr > 0:
            raise ModelGateError(f"lr must be positive, got {self.lr!r}")
        if self.backbone_lr is not None and not self.backbone_lr > 0:
            raise ModelGateError(f"backbone_lr must be positive, got {self.backbone_lr!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ModelGateError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.compile, bool):
            raise ModelGateError(f"compile must be True or False, got {self.compile!r}")
        if self.stop_after_seconds is not None and not self.stop_after_seconds > 0:
            raise ModelGateError(f"stop_after_seconds must be positive, got "
                                 f"{self.stop_after_seconds!r}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) \
                or self.workers < 1:
            raise ModelGateError(f"workers must be a positive integer (data-parallel ranks), "
                                 f"got {self.workers!r}")
        if self.batch_size % self.workers:
            raise ModelGateError(
                f"batch_size={self.batch_size} does not divide over workers={self.workers}: "
                f"batch_size is the global batch and each rank takes batch_size / workers of "
                f"it; use a batch_size that is a multiple of {self.workers}, or workers "
                f"that divide {self.batch_size} (set by workers=, the marker's workers or "
                f"--modelgate-workers)")
        if not isinstance(self.sync_batchnorm, bool):
            raise ModelGateError(f"sync_batchnorm must be True or False, got "
                                 f"{self.sync_batchnorm!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ModelGateError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.task not in TASKS:
            raise ModelGateError(f"task must be 'multiclass', 'multilabel' or None (what the "
                                 f"data says), got {self.task!r}")
        object.__setattr__(self, "threshold", checked_threshold(self.threshold))

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def for_data(self, multilabel: bool, classes: int) -> TrainConfig:
        """This configuration for data whose labels are (``multilabel``) a 0/1 matrix over
        ``classes`` classes: ``task`` resolved (None: the data's), ``threshold`` defaulted
        to 0.5 for a multilabel run and checked against the number of classes.

        Raises:
            ModelGateError: ``task=`` contradicts the data, ``threshold=`` is given for a
                multiclass run, or a per-label threshold sequence has the wrong length.
        """
        import dataclasses

        data_task = "multilabel" if multilabel else "multiclass"
        if self.task is not None and self.task != data_task:
            raise ModelGateError(_task_mismatch(self.task, multilabel))
        threshold = self.threshold
        if not multilabel and threshold is not None:
            raise ModelGateError(
                f"threshold={threshold!r} applies to multilabel data (labels an (N, classes) "
                "0/1 matrix); a multiclass run predicts the most probable class: leave "
                "threshold= out")
        if multilabel and threshold is None:
            threshold = 0.5
        if isinstance(threshold, tuple) and len(threshold) != classes:
            raise ModelGateError(
                f"threshold= holds {len(threshold)} per-label thresholds but the data has "
                f"{classes} classes; pass one per class, in class_names order, a single "
                "float, or 'train'")
        return dataclasses.replace(self, task=data_task, threshold=threshold)

    def key_fields(self) -> dict:
        """The fields that enter a run's cache key: all but the race's budget (see
        ``RunPlan.key``), the ranks' only when data-parallel, and the task's and
        threshold's only when multilabel, so a one-process multiclass run keeps the key it
        had before ``workers`` and ``task`` existed."""
        from dataclasses import asdict

        fields = asdict(self)
        del fields["stop_after_seconds"]
        if self.workers == 1 and not self.sync_batchnorm:
            del fields["workers"], fields["sync_batchnorm"]
        if not self.multilabel:
            del fields["task"], fields["threshold"]
        return fields


TASKS = (None, "multiclass", "multilabel")


def checked_threshold(threshold: object) -> float | tuple[float, ...] | str | None:
    """``threshold=`` as a run keeps it: None, "train", a float in (0, 1), or a tuple of
    such floats (one per label).

    Raises:
        ModelGateError: any other value, naming what is accepted.
    """
    if threshold is None or (isinstance(threshold, str) and threshold == "train"):
        return threshold
    fix = ("threshold must be a probability in (0, 1) (default 0.5), a sequence of them "
           "(one per class, in class_names order) or 'train' (per label, the F1-best on the "
           "train split)")
    if isinstance(threshold, str):
        raise ModelGateError(f"{fix}; got {threshold!r}")
    values = (threshold,) if _is_number(threshold) else threshold
    try:
        values = tuple(values)  # type: ignore[arg-type]
    except TypeError:
        raise ModelGateError(f"{fix}; got {threshold!r}") from None
    if not values or not all(_is_number(v) and 0 < float(v) < 1 for v in values):
        raise ModelGateError(f"{fix}; got {threshold!r}")
    floats = tuple(float(v) for v in values)  # type: ignore[arg-type]
    return floats[0] if _is_number(threshold) else floats


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _task_mismatch(task: str, multilabel: bool) -> str:
    if multilabel:
        return (f"task={task!r} but the data's labels are a 0/1 matrix (several classes per "
                "image); leave task= out, pass task='multilabel', or give one integer label "
                "per image")
    return (f"task={task!r} but the data holds one label per image; pass the labels as an "
            "(N, classes) 0/1 matrix (from_arrays with matrices, or from_manifest(..., "
            "label_sep='|')), or leave task= out")


BUDGET_NOTE = "race stopped"


def stopped_by_budget(run: FinetuneRun) -> bool:
    """Whether a run ended at its race budget, not at its target or last epoch."""
    return budget_noted(run.notes)


def budget_noted(notes: tuple[str, ...] | list[str]) -> bool:
    """Whether a run's notes say the race's budget stopped it (``budget_note``)."""
    return any(note.startswith(BUDGET_NOTE) for note in notes)


def out_of_budget(config: TrainConfig, seconds: float, epoch: int, notes: list[str]) -> bool:
    """Whether a run with a race budget stops after this epoch; the note says so."""
    if not over_budget(config, seconds) or epoch >= config.epochs:
        return False
    notes.append(budget_note(config, seconds, f"after epoch {epoch}"))
    return True


def over_budget(config: TrainConfig, seconds: float) -> bool:
    """Whether ``seconds`` of training reach the race's budget (never without one)."""
    return config.stop_after_seconds is not None and seconds >= config.stop_after_seconds


def budget_note(config: TrainConfig, seconds: float, where: str) -> str:
    """The note of a run cut at its race budget (``stopped_by_budget`` looks for it)."""
    return (f"{BUDGET_NOTE} {where}: {seconds:.1f}s of training reached the race's budget of "
            f"{config.stop_after_seconds:.1f}s, which decides the verdict")
