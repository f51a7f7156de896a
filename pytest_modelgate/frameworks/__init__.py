"""The boundary between the framework-neutral orchestration (``train``: model identity, run
cache, seeding, the scratch race, the run record) and one adapter per framework.

An adapter is a subpackage here (``frameworks/torch``, ``frameworks/keras``) exposing
``FRAMEWORK``, an object with the methods of ``Framework``. The orchestration calls
nothing else of it, so another framework is one new folder and a line in
``framework_for``. Importing this package, or an adapter's ``__init__``, imports no
framework: that happens when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..data import Splits
    from ..run import FinetuneRun
    from ..train.config import TrainConfig


@dataclass(frozen=True)
class HeadInfo:
    """Where a model's head sits (a dotted module path, or a Keras layer name), its input
    width, and how it was found."""

    path: str
    in_features: int
    found_by: str


@runtime_checkable
class Framework(Protocol):
    """What the orchestration needs of a framework. ``Loaded`` is the adapter's own model
    object (a model ready to fine-tune, with its preprocessing); the orchestration only
    passes it back."""

    name: str  # also the framework's top-level module ("torch"), to tell whether it is loaded

    def identity(self, model: Any, weights: Any) -> dict[str, Any] | None:
        """A JSON-ready identity of a named model and its weights, without importing the
        framework (cache keys of unchanged runs); None when only loading can tell."""

    def device_fingerprint(self, device: str) -> dict[str, Any]:
        """What decides where ``device`` runs, read without importing the framework."""

    def seed(self, seed: int) -> None:
        """Seed every random source a run draws from."""

    def load(self, model: Any, *, weights: Any, image_size: int | None,
             mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
             loader: Callable[[str, Any], Any] | None,
             transform: Callable[[Any], Any] | None) -> Any:
        """The model ready to fine-tune: by name, instance, factory or file."""

    def scratch(self, loaded: Any) -> Any:
        """The same architecture and preprocessing, randomly initialised."""

    def model_key(self, loaded: Any) -> dict[str, Any]:
        """JSON-ready identity of a loaded model: name, weights hash, preprocessing."""

    def train(self, loaded: Any, data: Splits, config: TrainConfig,
              head_state: dict[str, Any], *, progress: Callable[[str], None] | None,
              head_finder: Callable[[Any], str | None] | None) -> FinetuneRun:
        """Replace the head for ``data``'s classes, fine-tune, predict the test split."""


def framework_for(model: Any) -> Framework:
    """The adapter that handles ``model``: a ``keras:`` name, a saved ``.keras``/``.h5``
    file or a Keras model goes to Keras, any other name or model to PyTorch. A factory
    function is called once to see what it builds (it is called again, seeded, to load)."""
    from .keras import FRAMEWORK as KERAS
    from .keras.zoo import is_keras_name, is_keras_object
    from .torch import FRAMEWORK as TORCH

    if isinstance(model, (str, Path)):
        return KERAS if is_keras_name(model) else TORCH
    if is_keras_object(model):
        return KERAS
    if callable(model) and not isinstance(model, type) and not _is_torch_object(model):
        return KERAS if is_keras_object(model()) else TORCH
    return TORCH


def _is_torch_object(model: Any) -> bool:
    return any(c.__module__.split(".")[0] == "torch" for c in type(model).__mro__)


def loaded_frameworks() -> list[Framework]:
    """The adapters whose framework this process has imported already."""
    import sys

    from .keras import FRAMEWORK as KERAS
    from .torch import FRAMEWORK as TORCH

    return [f for f in (TORCH, KERAS) if f.name in sys.modules]


def import_triton_before_tensorflow() -> None:
    """Import triton (PyTorch's GPU compiler, in its CUDA wheels) before TensorFlow loads.

    Measured with torch 2.14.1 and tensorflow-cpu 2.21: ``import tensorflow`` then ``import
    triton`` is a segmentation fault, and PyTorch imports triton lazily (its optimizers,
    through ``torch._dynamo``), so a session that trained a Keras model and then a PyTorch
    one crashed. The other order works. Only where both are installed and TensorFlow is
    not loaded yet; triton's import takes about 0.15 s.
    """
    import importlib.util
    import sys

    if "tensorflow" in sys.modules or "triton" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken triton is PyTorch's matter, not ours
        pass
