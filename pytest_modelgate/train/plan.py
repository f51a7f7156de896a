"""A fine-tune as plain data (``RunPlan``): what to load, how to train it, and the parts of
its cache key. A plan holds no callback, cache or hook, so it pickles (as far as the model
the user passed does): a spawned rank or a Ray worker can receive it and load and train
the same model. ``Runner`` holds what stays in the pytest process."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import library_versions, run_key
from ..data import Splits
from ..errors import ModelGateError, user_error_frames
from .config import TrainConfig

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


@dataclass(frozen=True)
class RunPlan:
    """One fine-tune, before anything is loaded.

    ``model`` is what the user passed (a name, path, module or factory); ``built`` what the
    ``pytest_modelgate_load_model`` hook returned for that name (None: the built-in
    sources). ``framework`` names the adapter; ``identity`` is the model's cache identity
    when it is known without loading it (a named model and weights file), else None;
    ``key_parts`` the rest of the cache key: data ids, library versions, device and
    preprocessing arguments.
    """

    model: Any
    framework: str
    config: TrainConfig
    key_parts: dict[str, Any]
    identity: dict[str, Any] | None = None
    built: Any = None
    weights: str | Path | None = "DEFAULT"
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    transform: Callable[[Any], Any] | None = None

    @property
    def adapter(self) -> Any:
        from ..frameworks import named

        return named(self.framework)

    def load(self, *, image_size: int | None = None, built: Any = None,
             seeded: bool = False) -> Any:
        """The model ready to fine-tune, seeded first (a factory's random init is the
        seeded one) unless the caller just ``seeded``; ``image_size`` and ``built`` replace
        the plan's for this load."""
        adapter = self.adapter
        if not seeded:
            adapter.seed(self.config.seed)
        return adapter.load(self.model, weights=self.weights,
                            image_size=image_size or self.image_size, mean=self.mean,
                            std=self.std, transform=self.transform,
                            built=built if built is not None else self.built)

    def scratch(self, loaded: Any) -> Any:
        """``loaded``'s architecture, randomly initialised with the run's seed."""
        adapter = self.adapter
        adapter.seed(self.config.seed)  # the random init itself is part of the seeded run
        return adapter.scratch(loaded)

    def key(self, config: TrainConfig, model_key: dict[str, Any]) -> str:
        """The cache key of training ``model_key``'s model with ``config``. A race's budget
        follows the pretrained run's timing, which differs from run to run: it stays out of
        the key, and a stored run serves if it decides the same verdict."""
        fields = config.key_fields()
        fields["stop_after_seconds"] = None  # as it was keyed before it left the key
        return run_key({**self.key_parts, "model": model_key, "config": fields})


def plan_run(model: Any, data: Splits, *, epochs: int = 3, freeze: str | int = "backbone",
             lr: float = 1e-3, backbone_lr: float | None = None, batch_size: int = 32,
             seed: int = 0, device: str = "auto", head: str | None = None,
             image_size: int | None = None, weights: str | Path | None = "DEFAULT",
             pretrained: bool | None = None, mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None,
             loader: Callable[[str, Any], Any] | None = None,
             transform: Callable[[Any], Any] | None = None, compile: bool = False,
             workers: int = 1, sync_batchnorm: bool = False, task: str | None = None,
             threshold: Any = None) -> RunPlan:
    """Check a ``finetune`` call's arguments and make its plan; ``loader`` (the load-model
    hook) is asked for a named model now. See ``run_finetune`` for the arguments."""
    from ..frameworks import framework_for, loaded_frameworks

    if not isinstance(data, Splits):
        raise ModelGateError(
            f"data must be pytest_modelgate.data.Splits, got {type(data).__name__}; build it "
            "with from_arrays(), from_folder() or stratified_split()"
        )
    if pretrained is not None:
        warnings.warn(
            "finetune(pretrained=...) is deprecated; use weights='DEFAULT' (pretrained) or "
            "weights=None (random init), as torchvision does",
            DeprecationWarning, stacklevel=4,
        )
        weights = "DEFAULT" if pretrained else None
    config = TrainConfig(epochs=epochs, freeze=freeze, lr=lr, backbone_lr=backbone_lr,
                         batch_size=batch_size, seed=seed, device=device, head=head,
                         compile=compile, workers=workers, sync_batchnorm=sync_batchnorm,
                         task=task, threshold=threshold)
    config = config.for_data(data.multilabel, len(data.class_names))
    built = None
    if loader is not None and isinstance(model, str):
        # A zoo hook builds its model now: seed first, so its random init is the seeded
        # one. (Only the frameworks already loaded, as they are for a conftest that builds
        # its models: an unchanged cached run of a built-in model stays framework-free.)
        for adapter in loaded_frameworks():
            adapter.seed(seed)
        built = loader(model, weights)
    framework = framework_for(model if built is None else built)
    config = _in_world(framework, config)
    # A model known by name and file needs no framework import to be identified: an
    # unchanged cached run then costs no framework import at all.
    identity = framework.identity(model, weights) if built is None else None
    key_parts = {"data": data.fingerprint(), "versions": library_versions(framework.versions()),
                 "device": framework.device_fingerprint(config.device),
                 **({"ranks": {"workers": config.workers,
                               "backend": framework.backend(config.device)}}
                    if config.workers > 1 else {}),
                 "preprocess_args": [image_size, mean, std,
                                     None if transform is None else
                                     f"{getattr(transform, '__qualname__', '')}|{transform!r}"]}
    return RunPlan(model, framework.name, config, key_parts, identity, built, weights,
                   image_size, mean, std, transform)


def _in_world(framework: Any, config: TrainConfig) -> TrainConfig:
    """Under torchrun a PyTorch run's ranks are the whole world: ``workers`` is its size
    (``where_ranks_run`` refuses any other count but 1)."""
    import dataclasses

    from .ranks import torchrun_world, where_ranks_run

    world = torchrun_world()
    if world is None or not framework.rank_processes:
        return config
    where_ranks_run(framework, config)
    return dataclasses.replace(config, workers=world.size)
