"""Fine-tuning: model loading (torch_zoo) and the training loop (engine).

Importing this package is light; torch is imported when a run starts.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

from ..data import Splits
from ..errors import ModelGateError
from ..run import FinetuneRun


def run_finetune(
    model: Any,
    data: Splits,
    *,
    epochs: int = 3,
    freeze: str | int = "backbone",
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
    head: str | None = None,
    image_size: int | None = None,
    weights: str | Path | None = "DEFAULT",
    pretrained: bool | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> FinetuneRun:
    """Load ``model``, replace its head for ``data``'s classes, fine-tune, predict the test split.

    The returned run can race a from-scratch copy of the same architecture
    (``run.scratch_runner``), which ``assert_faster_than_scratch`` uses.
    """
    from .engine import TrainConfig, seed_everything, train
    from .torch_zoo import LoadedModel, load_model

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
    config = TrainConfig(epochs=epochs, freeze=freeze, lr=lr, batch_size=batch_size, seed=seed,
                         device=device, head=head)
    seed_everything(seed)
    loaded = load_model(model, weights=weights, image_size=image_size, mean=mean, std=std)
    fresh = loaded.fresh
    prep = loaded.preprocess
    run = train(loaded, data, config)

    def scratch(target_accuracy: float | None = None, epochs: int | None = None) -> FinetuneRun:
        scratch_config = dataclasses.replace(
            config, freeze="none", stop_at_accuracy=target_accuracy,
            epochs=epochs or config.epochs,
        )
        seed_everything(config.seed)  # the random init itself is part of the seeded run
        scratch_model = LoadedModel(fresh(), loaded.name, prep, pretrained=False, fresh=fresh)
        return train(scratch_model, data, scratch_config)

    return dataclasses.replace(run, scratch_runner=scratch)
