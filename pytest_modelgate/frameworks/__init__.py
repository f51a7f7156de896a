"""The boundary between the framework-neutral orchestration (``train``: model identity, run
cache, seeding, the scratch race, the run record) and one adapter per framework.

An adapter is a subpackage here (``frameworks/torch``) exposing ``FRAMEWORK``, an object
with the methods of ``Framework``. The orchestration calls nothing else of it, so another
framework is one new folder and one line in ``framework_for``. Importing this package, or
an adapter's ``__init__``, imports no framework: that happens when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..data import Splits
    from ..run import FinetuneRun
    from ..train.config import TrainConfig


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
    """The adapter that handles ``model`` (a name, an instance, a factory or a file)."""
    from .torch import FRAMEWORK

    return FRAMEWORK
