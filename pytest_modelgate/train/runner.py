"""The steps that turn a ``RunPlan`` into runs in this process: load the model once, train
it or load it from the run cache, race a from-scratch copy, and hand out the pretrained
backbone for the leakage scan's embedding stage."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..cache import RunCache
from ..data import Splits
from ..errors import user_error_frames
from ..run import FinetuneRun
from .config import TrainConfig, stopped_by_budget
from .plan import RunPlan
from .ranks import fit, torchrun_world

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


class Runner:
    """A plan's runs: the pretrained fine-tune, scratch races and the backbone. Holds what
    stays in the pytest process (the cache, the hooks, the progress callback) and the
    loaded model, loaded at most once."""

    def __init__(self, plan: RunPlan, data: Splits, *, cache: RunCache,
                 loader: Callable[[str, Any], Any] | None = None,
                 head_finder: Callable[[Any], str | None] | None = None,
                 progress: Callable[[str], None] | None = None, ray: str | None = None) -> None:
        self.plan = plan
        self.ray = ray
        self.data = data
        self.cache = cache
        self.loader = loader
        self.head_finder = head_finder
        self.progress = progress
        self._loaded: list[Any] = []

    def loaded(self) -> Any:
        """The model ready to fine-tune, loaded on first use."""
        if not self._loaded:
            self._loaded.append(self.plan.load())
        return self._loaded[0]

    def scratch_model(self) -> Any:
        return self.plan.scratch(self.loaded())

    def train(self, build: Callable[[], Any], config: TrainConfig,
              cheap: dict[str, Any] | None) -> FinetuneRun:
        """The run of ``build()``'s model with ``config``: from the cache when stored (a
        model known by ``cheap`` identity is not even loaded), else trained and stored."""
        built = None
        key = None
        if self.cache.enabled:
            if cheap is None:
                built = build()
                cheap = self.plan.adapter.model_key(built)
            key = self.plan.key(config, cheap)
        run = self._train(build, built, config, key)
        return dataclasses.replace(run, cache_key=key) if key is not None else run

    def _train(self, build: Callable[[], Any], built: Any, config: TrainConfig,
               key: str | None) -> FinetuneRun:
        if torchrun_world() is not None:
            return self._train_in_world(built or build(), config, key)
        # Another process (a pytest-xdist worker) may be training this very run: wait for
        # it and load its entry rather than train it twice.
        with self.cache.lock(key):
            hit = self._stored(key, config)
            if hit is not None:
                return hit
            run, head_state = self._fit(built or build(), config)
            if key is not None:
                self.cache.save(key, run, head_state)
            return run

    def _stored(self, key: str | None, config: TrainConfig) -> FinetuneRun | None:
        if key is None:
            return None
        return self.cache.load(key, lambda stored: _serves(stored, config.stop_after_seconds))

    def _fit(self, built: Any, config: TrainConfig) -> tuple[FinetuneRun, Any]:
        return fit(self.plan.adapter, built, self.data, config, progress=self.progress,
                   head_finder=self.head_finder, ray=self.ray)

    def _train_in_world(self, built: Any, config: TrainConfig,
                        key: str | None) -> FinetuneRun:
        """Under torchrun every rank runs this: rank 0 alone reads and writes the cache,
        every rank trains (a PyTorch run is one job over the world), and every rank gets
        rank 0's record, so every rank's assertions, and exit status, agree."""
        # The world's process group is torch.distributed's, whatever framework trains.
        from ..frameworks.torch.launch import share_from_lead as world_share

        lead = torchrun_world().lead  # type: ignore[union-attr]
        hit = world_share(self._stored(key, config) if lead else None)
        if hit is not None:
            return hit
        run, head_state = self._fit(built, config)
        if lead and key is not None:
            self.cache.save(key, run, head_state)
        return world_share(run if lead else None)

    def pretrained(self) -> FinetuneRun:
        """The fine-tune the plan asks for, able to race (``scratch_runner``) and to give
        its pretrained backbone (``backbone``)."""
        run = self.train(self.loaded, self.plan.config, self.plan.identity)
        return dataclasses.replace(run, scratch_runner=self.scratch, test_set=self.data.test,
                                   backbone=self.backbone)

    def scratch(self, target_accuracy: float | None = None, epochs: int | None = None,
                budget_seconds: float | None = None) -> FinetuneRun:
        """The same architecture from random init, every layer trained, stopping at
        ``target_accuracy``, after ``epochs``, or once training passes ``budget_seconds``
        (the race's verdict is then decided; PyTorch stops at that step, Keras after that
        epoch)."""
        config = self.plan.config
        scratch_config = dataclasses.replace(
            config, freeze="none", stop_at_accuracy=target_accuracy,
            epochs=epochs or config.epochs, stop_after_seconds=budget_seconds,
        )
        identity = self.plan.identity
        cheap = {**identity, "init": "random"} if identity is not None else None
        return dataclasses.replace(self.train(self.scratch_model, scratch_config, cheap),
                                   test_set=self.data.test)

    def backbone(self, size: int | None = None) -> Any:
        """The model as pretrained, not fine-tuned (a cached run has no fine-tuned weights,
        and features trained to tell classes apart call two photos of one class alike),
        loaded anew at ``size``: a named model from the load-model hook is built again."""
        plan = self.plan
        plan.adapter.seed(plan.config.seed)
        built = self.loader(plan.model, plan.weights) \
            if self.loader is not None and isinstance(plan.model, str) else None
        return plan.load(image_size=size, built=built, seeded=True)


def _serves(stored: FinetuneRun, budget: float | None) -> bool:
    """Whether a stored run answers a request with this budget (None: the full race): a
    run that was not cut short always does; one cut at its budget does for a budget it
    trained past."""
    if not stopped_by_budget(stored):
        return True
    return budget is not None and stored.seconds >= budget
