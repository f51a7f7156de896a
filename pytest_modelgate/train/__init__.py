"""Fine-tuning, framework-neutral: the model's identity, the run cache, seeding, the scratch
race and the run record. Loading, heads and the training loop belong to a framework
adapter (``pytest_modelgate.frameworks``).

Importing this package is light; a framework is imported when a run starts.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cache import RunCache, library_versions, run_key
from ..data import Splits
from ..errors import ModelGateError, user_error_frames
from ..run import FinetuneRun

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
) -> FinetuneRun:
    """Load ``model``, replace its head for ``data``'s classes, fine-tune, predict the test split.

    The returned run can race a from-scratch copy of the same architecture
    (``run.scratch_runner``), which ``assert_faster_than_scratch`` uses. With a ``cache``,
    a run whose data, model weights, configuration, device and library versions were seen
    before is loaded instead of trained, scratch races included. ``loader`` may supply a
    named model first (the ``pytest_modelgate_load_model`` hook), ``head_finder`` a head
    path (``pytest_modelgate_find_head``), and ``progress`` receives one line per epoch.
    ``compile=True`` runs the training step through ``torch.compile``; compiling happens
    in the warm-up, off the clock.
    """
    from ..frameworks import framework_for, loaded_frameworks
    from .config import TrainConfig

    if not isinstance(data, Splits):
        raise ModelGateError(
            f"data must be pytest_modelgate.data.Splits, got {type(data).__name__}; build it "
            "with from_arrays(), from_folder() or stratified_split()"
        )
    if pretrained is not None:
        warnings.warn(
            "finetune(pretrained=...) is deprecated; use weights='DEFAULT' (pretrained) or "
            "weights=None (random init), as torchvision does",
            DeprecationWarning, stacklevel=3,
        )
        weights = "DEFAULT" if pretrained else None
    config = TrainConfig(epochs=epochs, freeze=freeze, lr=lr, backbone_lr=backbone_lr,
                         batch_size=batch_size, seed=seed, device=device, head=head,
                         compile=compile)
    cache = cache or RunCache(None)
    # A model known by name and file needs no framework import to be identified: an
    # unchanged cached run then costs no framework import at all.
    hooked = None
    if loader is not None and isinstance(model, str):
        # A zoo hook builds its model now: seed first, so its random init is the seeded
        # one. (Only the frameworks already loaded, as they are for a conftest that builds
        # its models: an unchanged cached run of a built-in model stays framework-free.)
        for loaded in loaded_frameworks():
            loaded.seed(seed)
        hooked = loader(model, weights)
    framework = framework_for(model if hooked is None else hooked)
    identity = framework.identity(model, weights) if hooked is None else None
    common = {"data": data.fingerprint(), "versions": library_versions(),
              "device": framework.device_fingerprint(config.device),
              "preprocess_args": [image_size, mean, std,
                                  None if transform is None else
                                  f"{getattr(transform, '__qualname__', '')}|{transform!r}"]}
    base: list[Any] = []

    def loaded_model() -> Any:
        if not base:
            framework.seed(seed)
            base.append(framework.load(model, weights=weights, image_size=image_size,
                                       mean=mean, std=std, loader=(lambda _n, _w: hooked),
                                       transform=transform))
        return base[0]

    def build_scratch() -> Any:
        origin = loaded_model()
        framework.seed(seed)  # the random init itself is part of the seeded run
        return framework.scratch(origin)

    def cached_train(build: Callable[[], Any], run_config: TrainConfig,
                     cheap: dict | None) -> FinetuneRun:
        built = None
        key = None
        if cache.enabled:
            if cheap is None:
                built = build()
                cheap = framework.model_key(built)
            # A race's budget follows the pretrained run's timing, which differs from run
            # to run: it stays out of the key, and a stored run serves if it decides the
            # same verdict (see _serves).
            keyed = dataclasses.replace(run_config, stop_after_seconds=None)
            key = run_key({**common, "model": cheap, "config": dataclasses.asdict(keyed)})
        # Another process (a pytest-xdist worker) may be training this very run: wait for
        # it and load its entry rather than train it twice.
        with cache.lock(key):
            hit = cache.load(key, lambda stored: _serves(stored, run_config.stop_after_seconds)) \
                if key is not None else None
            if hit is not None:
                return hit
            head_state: dict = {}
            built = built or build()
            result = framework.train(built, data, run_config, head_state, progress=progress,
                                     head_finder=head_finder)
            if key is not None:
                cache.save(key, result, head_state)
            return result

    run = cached_train(loaded_model, config, identity)

    def scratch(target_accuracy: float | None = None, epochs: int | None = None,
                budget_seconds: float | None = None) -> FinetuneRun:
        """The same architecture from random init, every layer trained, stopping at
        ``target_accuracy``, after ``epochs``, or once training passes ``budget_seconds``
        (the race's verdict is then decided; PyTorch stops at that step, Keras after that
        epoch)."""
        scratch_config = dataclasses.replace(
            config, freeze="none", stop_at_accuracy=target_accuracy,
            epochs=epochs or config.epochs, stop_after_seconds=budget_seconds,
        )
        cheap = {**identity, "init": "random"} if identity is not None else None
        return dataclasses.replace(cached_train(build_scratch, scratch_config, cheap),
                                   test_set=data.test)

    def backbone(size: int | None = None) -> Any:
        # Pretrained, not fine-tuned: a cached run has no fine-tuned weights, and features
        # trained to tell classes apart call two photos of one class alike.
        framework.seed(seed)
        zoo = loader(model, weights) if loader is not None and isinstance(model, str) else None
        return framework.load(model, weights=weights, image_size=size or image_size, mean=mean,
                              std=std, loader=(lambda _n, _w: zoo), transform=transform)

    return dataclasses.replace(run, scratch_runner=scratch, test_set=data.test,
                               backbone=backbone)


def stopped_by_budget(run: FinetuneRun) -> bool:
    """Whether a run ended at its race budget, not at its target or last epoch."""
    from .config import BUDGET_NOTE

    return any(note.startswith(BUDGET_NOTE) for note in run.notes)


def _serves(stored: FinetuneRun, budget: float | None) -> bool:
    """Whether a stored run answers a request with this budget (None: the full race): a
    run that was not cut short always does; one cut at its budget does for a budget it
    trained past."""
    if not stopped_by_budget(stored):
        return True
    return budget is not None and stored.seconds >= budget
