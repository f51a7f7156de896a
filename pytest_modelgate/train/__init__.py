"""Fine-tuning, framework-neutral: the model's identity, the run cache, seeding, the scratch
race and the run record. Loading, heads and the training loop belong to a framework
adapter (``pytest_modelgate.frameworks``).

A call becomes a plain, picklable ``RunPlan`` (``plan``); a ``Runner`` (``runner``) trains
it, or loads it from the run cache, and races it; ``record`` holds the epoch bookkeeping
every engine reports to and builds the run record. Importing this package is light; a
framework is imported when a run starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import user_error_frames
from .config import stopped_by_budget

if TYPE_CHECKING:  # imported when a run starts: the plugin reads train.ranks without numpy
    from ..cache import RunCache
    from ..data import Splits
    from ..run import FinetuneRun

__all__ = ["run_finetune", "stopped_by_budget"]

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def run_finetune(
    model: Any,
    data: Splits,
    *,
    epochs: int = 3,
    freeze: str | int = "backbone",
    lr: float = 1e-3,
    backbone_lr: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
    head: str | None = None,
    image_size: int | None = None,
    weights: str | Path | None = "DEFAULT",
    pretrained: bool | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    cache: RunCache | None = None,
    loader: Callable[[str, Any], Any] | None = None,
    head_finder: Callable[[Any], str | None] | None = None,
    progress: Callable[[str], None] | None = None,
    transform: Callable[[Any], Any] | None = None,
    compile: bool = False,
    workers: int = 1,
    sync_batchnorm: bool = False,
    ray: str | None = None,
    task: str | None = None,
    threshold: float | Sequence[float] | str | None = None,
) -> FinetuneRun:
    """Load ``model``, replace its head for ``data``'s classes, fine-tune, predict the test split.

    The returned run can race a from-scratch copy of the same architecture
    (``run.scratch_runner``), which ``assert_faster_than_scratch`` uses. With a ``cache``,
    a run whose data, model weights, configuration, device and library versions were seen
    before is loaded instead of trained, scratch races included. ``loader`` may supply a
    named model first (the ``pytest_modelgate_load_model`` hook), ``head_finder`` a head
    path (``pytest_modelgate_find_head``), and ``progress`` receives one line per epoch.
    ``compile=True`` runs the training step through ``torch.compile``; compiling happens
    in the warm-up, off the clock. ``workers=N`` trains data-parallel over N ranks
    (``batch_size`` stays the global batch); ``ray`` is a Ray cluster's address the ranks
    run on (``train.ranks`` decides where they run).

    ``task``: ``"multiclass"`` (one label per image, softmax) or ``"multilabel"`` (labels
    an (N, classes) 0/1 matrix: one sigmoid per class, binary cross-entropy); None takes
    the data's. ``threshold`` (multilabel only): a probability in (0, 1) (default 0.5) or
    one per class, at or above which a class is predicted, or ``"train"``: per class, the
    threshold with the best F1 on the train split's predictions after training (the run's
    notes and ``run.thresholds`` say which were chosen).
    """
    from ..cache import RunCache
    from .plan import plan_run
    from .runner import Runner

    plan = plan_run(model, data, epochs=epochs, freeze=freeze, lr=lr, backbone_lr=backbone_lr,
                    batch_size=batch_size, seed=seed, device=device, head=head,
                    image_size=image_size, weights=weights, pretrained=pretrained, mean=mean,
                    std=std, loader=loader, transform=transform, compile=compile,
                    workers=workers, sync_batchnorm=sync_batchnorm, task=task,
                    threshold=threshold)
    return Runner(plan, data, cache=cache or RunCache(None), loader=loader,
                  head_finder=head_finder, progress=progress, ray=ray).pretrained()
