"""Keras 3 on TensorFlow: ``keras.applications`` models by name, a ``keras.Model``, a
factory or a saved file (``zoo``), head replacement (``heads``) and the training loop
(``engine``). Importing this package imports neither Keras nor TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...data import Splits
    from ...run import FinetuneRun
    from ...train.config import TrainConfig
    from .zoo import LoadedModel


class KerasFramework:
    """The Keras adapter (see ``frameworks.Framework``)."""

    name = "keras"

    def claims(self, model: Any) -> bool:
        from .zoo import is_keras_name, is_keras_object

        return is_keras_name(model) or is_keras_object(model)

    def identity(self, model: Any, weights: Any) -> dict[str, Any] | None:
        from .zoo import named_identity

        return named_identity(model, weights)

    def device_fingerprint(self, device: str) -> dict[str, Any]:
        """The device asked for, and the Keras and TensorFlow versions (the shared cache
        key holds torch's; a TensorFlow upgrade must not invalidate PyTorch runs)."""
        import os
        from importlib.metadata import PackageNotFoundError, version

        fingerprint: dict[str, Any] = {"requested": device, "framework": "keras"}
        for dist in ("keras", "tensorflow", "tensorflow-cpu"):
            try:
                fingerprint[dist] = version(dist)
            except PackageNotFoundError:
                pass
        if device == "auto" or device.startswith("cuda"):
            fingerprint["nvidia"] = os.path.exists("/dev/nvidiactl")
            fingerprint["visible"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return fingerprint

    def seed(self, seed: int) -> None:
        from .engine import seed_everything

        seed_everything(seed)

    def load(self, model: Any, *, weights: Any, image_size: int | None,
             mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
             loader: Callable[[str, Any], Any] | None,
             transform: Callable[[Any], Any] | None) -> LoadedModel:
        from .zoo import load_model

        hooked = loader(model, weights) if loader is not None and isinstance(model, str) \
            else None
        return load_model(hooked if hooked is not None else model, weights=weights,
                          image_size=image_size, mean=mean, std=std, transform=transform)

    def scratch(self, loaded: LoadedModel) -> LoadedModel:
        from .zoo import LoadedModel

        return LoadedModel(loaded.fresh(), loaded.name, loaded.preprocess, pretrained=False,
                           fresh=loaded.fresh, headless=loaded.headless)

    def model_key(self, loaded: LoadedModel) -> dict[str, Any]:
        from .zoo import weights_hash

        return {"framework": "keras", "name": loaded.name,
                "weights": weights_hash(loaded.model), "pretrained": loaded.pretrained,
                "headless": loaded.headless, "preprocess": loaded.preprocess.key()}

    def train(self, loaded: LoadedModel, data: Splits, config: TrainConfig,
              head_state: dict[str, Any], *, progress: Callable[[str], None] | None,
              head_finder: Callable[[Any], str | None] | None) -> FinetuneRun:
        from .engine import train

        return train(loaded, data, config, head_state, progress=progress,
                     head_finder=head_finder)


FRAMEWORK = KerasFramework()
