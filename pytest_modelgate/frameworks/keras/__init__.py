"""Keras 3 on TensorFlow: ``keras.applications`` models by name, a ``keras.Model``, a
factory or a saved file (``zoo``), head replacement (``heads``) and the training loop
(``engine``). Importing this package imports neither Keras nor TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ModelGateError, user_error_frames

if TYPE_CHECKING:
    import numpy as np

    from ...data import Splits
    from ...train.config import TrainConfig
    from ...train.ranks import RankResult, World
    from ...train.record import EpochLog, Trained
    from .zoo import LoadedModel

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


class KerasFramework:
    """The Keras adapter (see ``frameworks.Framework``)."""

    name = "keras"
    rank_processes = False

    def claims(self, model: Any) -> bool:
        from .zoo import is_keras_name, is_keras_object

        return is_keras_name(model) or is_keras_object(model)

    def identity(self, model: Any, weights: Any) -> dict[str, Any] | None:
        from .zoo import named_identity

        return named_identity(model, weights)

    def versions(self) -> dict[str, str]:
        from .. import installed_versions

        return installed_versions("keras", "tensorflow", "tensorflow-cpu")

    def device_fingerprint(self, device: str) -> dict[str, Any]:
        import os

        fingerprint: dict[str, Any] = {"requested": device}
        if device == "auto" or device.startswith("cuda"):
            fingerprint["nvidia"] = os.path.exists("/dev/nvidiactl")
            fingerprint["visible"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return fingerprint

    def resolve_device(self, device: str) -> str:
        from .engine import resolve_device

        return resolve_device(device)

    def gpu_count(self) -> int:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            return 0
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))

    def seed(self, seed: int) -> None:
        from .engine import seed_everything

        seed_everything(seed)

    def load(self, model: Any, *, weights: Any, image_size: int | None,
             mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
             transform: Callable[[Any], Any] | None, built: Any = None) -> LoadedModel:
        from .zoo import load_model

        return load_model(built if built is not None else model, weights=weights,
                          image_size=image_size, mean=mean, std=std, transform=transform)

    def scratch(self, loaded: LoadedModel) -> LoadedModel:
        from .zoo import LoadedModel

        return LoadedModel(loaded.fresh(), loaded.name, loaded.preprocess, pretrained=False,
                           fresh=loaded.fresh, headless=loaded.headless)

    def model_key(self, loaded: LoadedModel) -> dict[str, Any]:
        from .. import code_hash
        from .zoo import weights_hash

        model = loaded.model
        layers = getattr(model, "_flatten_layers", None)
        kinds = [type(layer) for layer in layers(include_self=True)] if layers else \
            [type(model)]
        try:
            structure = model.to_json()
        except (NotImplementedError, TypeError, ValueError):  # subclassed, no get_config
            structure = ""
        return {"framework": "keras", "name": loaded.name,
                "weights": weights_hash(model), "code": code_hash(kinds, structure),
                "pretrained": loaded.pretrained,
                "headless": loaded.headless, "preprocess": loaded.preprocess.key()}

    def feature_extractor(self, make: Callable[[int], LoadedModel], size: int
                          ) -> Callable[[np.ndarray], np.ndarray]:
        raise ModelGateError(
            "embeddings=: the embedding stage runs PyTorch models, and this is a Keras "
            "model; pass embeddings='efficientnet_lite0' (ImageNet features, offline) or a "
            "function from a list of uint8 images to an (n, d) feature array")

    def backend(self, device: str) -> str:
        return "MirroredStrategy"

    def launch(self, loaded: LoadedModel, data: Splits, config: TrainConfig, *, place: str,
               progress: Callable[[str], None] | None,
               head_finder: Callable[[Any], str | None] | None,
               ray: str | None) -> RankResult | None:
        """Never: a Keras run's ranks are devices of this process (``rank_processes`` is
        False, so ``train.ranks`` keeps it here), spread by ``engine.distribute``."""
        raise ModelGateError(
            f"workers={config.workers} at {place!r}: a Keras model's workers are devices of "
            "this process under tf.distribute.MirroredStrategy, not rank processes; run it "
            "without torchrun or --modelgate-ray, or use a PyTorch model for those")

    def train(self, loaded: LoadedModel, data: Splits, config: TrainConfig, log: EpochLog,
              *, head_finder: Callable[[Any], str | None] | None,
              world: World | None = None) -> Trained | None:
        from .engine import train

        return train(loaded, data, config, log, head_finder=head_finder, world=world)


FRAMEWORK = KerasFramework()
