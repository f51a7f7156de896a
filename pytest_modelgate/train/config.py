"""The training configuration: everything besides model and data that decides a run's
outcome, the same for every framework."""

from __future__ import annotations

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


    def key_fields(self) -> dict:
        """The fields that enter a run's cache key: all but the race's budget (see
        ``RunPlan.key``), and the ranks' only when data-parallel, so a one-process run
        keeps the key it had before ``workers`` existed."""
        from dataclasses import asdict

        fields = asdict(self)
        del fields["stop_after_seconds"]
        if self.workers == 1 and not self.sync_batchnorm:
            del fields["workers"], fields["sync_batchnorm"]
        return fields


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
