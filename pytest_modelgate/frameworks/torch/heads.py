"""Find and replace a classifier head by dotted path, never by attribute name.

Resolution order: an explicit ``head=`` path, the ``pytest_modelgate_find_head`` hook, timm's
``get_classifier()`` contract, the table of known torchvision families below, then a scan that
accepts exactly one candidate. The head
is replaced with a fresh ``nn.Linear`` of the right width and checked with one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...errors import HeadNotFoundError, user_error_frames
from .. import HeadInfo

if TYPE_CHECKING:
    from torch import nn


# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


# The one place where attribute names of heads are spelled: torchvision families.
KNOWN_HEADS: tuple[tuple[str, str], ...] = (
    ("fc", "resnet, resnext, wide_resnet, regnet, googlenet, inception, shufflenet"),
    ("classifier", "densenet, and the last Linear of alexnet, vgg, mobilenet, efficientnet, "
                   "mnasnet, convnext; squeezenet's 1x1 convolution"),
    ("heads.head", "vit"),
    ("head", "swin, maxvit"),
)


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """The module at a dotted path (``"classifier.1"``); KeyError when absent."""
    module = model
    for part in path.split("."):
        children = dict(module.named_children())
        if part not in children:
            raise KeyError(path)
        module = children[part]
    return module


def set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at a dotted path, replacing what was there."""
    parent_path, _, name = path.rpartition(".")
    parent = get_submodule(model, parent_path) if parent_path else model
    setattr(parent, name, new)


def _is_head_layer(module: nn.Module) -> bool:
    """A Linear, or a 1x1 convolution that classifies (SqueezeNet)."""
    from torch import nn

    return isinstance(module, nn.Linear) or (
        isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
    )


def _width(module: nn.Module) -> int:
    from torch import nn

    width = module.in_features if isinstance(module, nn.Linear) else module.in_channels
    return int(width)  # type: ignore[arg-type]


def _linear_at(model: nn.Module, path: str) -> nn.Module:
    module = get_submodule(model, path)
    assert _is_head_layer(module), path
    return module


def _last_linear(module: nn.Module, prefix: str) -> str | None:
    """Path of ``module`` if it is a head layer, else of the last one among its children."""
    if _is_head_layer(module):
        return prefix
    children = list(module.named_children())
    for name, child in reversed(children):
        if _is_head_layer(child):
            return f"{prefix}.{name}"
        if any(True for _ in child.parameters()):
            return None  # the last layer with weights is not a head layer
    return None


def _module_path(model: nn.Module, target: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if module is target and name:
            return name
    return None


def _scan(model: nn.Module, sample=None) -> tuple[list[str], str]:
    """Candidate heads and how they were found.

    With a sample input, trace one forward pass: the head is the Linear whose output tensor
    *is* the model's output. Without one, only structure that fixes the execution order
    counts: the model's only Linear, or the Linear that ends a chain of nn.Sequential.
    """
    import torch
    from torch import nn

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if sample is not None:
        outputs: dict[str, object] = {}
        hooks = [m.register_forward_hook(lambda _m, _i, out, name=n: outputs.__setitem__(name, out))
                 for n, m in linears]
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                result = model(sample)
        finally:
            model.train(was_training)
            for h in hooks:
                h.remove()
        return [n for n, out in outputs.items() if out is result], "traced forward pass"
    if len(linears) == 1:
        return [linears[0][0]], "scan (the only Linear)"
    module, path = model, ""
    while isinstance(module, nn.Sequential) and len(module):
        name, module = list(module.named_children())[-1]
        path = f"{path}.{name}" if path else name
        if isinstance(module, nn.Linear):
            return [path], "scan (Linear ending an nn.Sequential)"
    return [], "scan"


def _named_head(model: nn.Module, path: str, how: str, found_by: str) -> HeadInfo:
    """The head at a path the user gave (``how``: ``head='x'`` or the hook's answer)."""
    from torch import nn

    try:
        module = get_submodule(model, path)
    except KeyError:
        raise HeadNotFoundError(
            f"{how} names no submodule of {type(model).__name__}; "
            f"top-level children are {[n for n, _ in model.named_children()]}"
        ) from None
    if not isinstance(module, nn.Linear):
        raise HeadNotFoundError(
            f"{how} is a {type(module).__name__}, not an nn.Linear; "
            "point it at the final Linear layer"
        )
    return HeadInfo(path, module.in_features, found_by)


def find_head(model: nn.Module, head: str | None = None, sample=None, *,
              hook: Callable[[nn.Module], str | None] | None = None) -> HeadInfo:
    """Resolve the classifier head of ``model`` to one ``nn.Linear`` by dotted path.

    Args:
        model: the network.
        head: an explicit dotted path such as ``"classifier.3"``; wins over every rule.
        sample: an input batch; lets the scan trace which Linear produces the output.
        hook: the ``pytest_modelgate_find_head`` hook: a path, or None to pass.

    Raises:
        HeadNotFoundError: nothing or more than one thing qualifies; the message lists what
            was tried and the ``head=`` fix.

    Example:
        >>> from torch import nn
        >>> find_head(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))).path
        '1'
    """
    from torch import nn

    tried: list[str] = []
    if head is not None:
        return _named_head(model, head, f"head={head!r}", "head= argument")
    tried.append("head= argument (not given)")
    if hook is not None:
        hooked = hook(model)
        if hooked is not None:
            return _named_head(model, hooked, f"pytest_modelgate_find_head's answer {hooked!r}",
                               "pytest_modelgate_find_head hook")
        tried.append("pytest_modelgate_find_head hook (returned None)")

    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        classifier = get_classifier()
        path = _module_path(model, classifier) if isinstance(classifier, nn.Module) else None
        if path and isinstance(classifier, nn.Linear):
            return HeadInfo(path, classifier.in_features, "get_classifier()")
        tried.append("get_classifier() (no Linear returned)")
    else:
        tried.append("get_classifier() (not defined)")

    for path, families in KNOWN_HEADS:
        try:
            module = get_submodule(model, path)
        except KeyError:
            continue
        found = _last_linear(module, path)
        if found:
            layer = _linear_at(model, found)
            return HeadInfo(found, _width(layer), f"known torchvision head ({families})")
    tried.append("known heads " + ", ".join(p for p, _ in KNOWN_HEADS))

    candidates, how = _scan(model, sample)
    if len(candidates) == 1:
        return HeadInfo(candidates[0], _width(_linear_at(model, candidates[0])), how)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if candidates:
        tried.append(f"{how} (ambiguous: {candidates})")
    elif sample is not None:
        tried.append(f"{how} (no Linear's output is the model output; Linear layers: "
                     f"{linears or 'none'})")
    else:
        tried.append(f"scan without a sample input (no single final Linear; Linear layers: "
                     f"{linears or 'none'})")
    example = linears[-1] if linears else "path.to.final_linear"
    raise HeadNotFoundError(
        f"could not find the classifier head of {type(model).__name__}. Tried: "
        + "; ".join(tried)
        + f". Fix: pass head='<dotted path of the final nn.Linear>', e.g. head={example!r}"
    )


def replace_head(model: nn.Module, num_classes: int, head: str | None = None,
                 sample=None, *, hook: Callable[[nn.Module], str | None] | None = None
                 ) -> HeadInfo:
    """Swap the resolved head for a fresh layer of the same kind with ``num_classes`` outputs:
    ``nn.Linear(in_features, num_classes)``, or a 1x1 convolution for a convolutional head."""
    from torch import nn

    info = find_head(model, head, sample, hook=hook)
    old = _linear_at(model, info.path)
    new: nn.Module = (nn.Linear(info.in_features, num_classes) if isinstance(old, nn.Linear)
                      else nn.Conv2d(info.in_features, num_classes, kernel_size=1))
    weight = next(old.parameters())
    new.to(device=weight.device, dtype=weight.dtype)
    set_submodule(model, info.path, new)
    return info


def verify_width(model: nn.Module, sample, num_classes: int, info: HeadInfo) -> None:
    """One forward pass: the model must now output ``num_classes`` logits per sample."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(sample)
    model.train(was_training)
    width = out.shape[-1] if out.ndim >= 1 else None
    if out.ndim != 2 or width != num_classes:
        raise HeadNotFoundError(
            f"replaced head {info.path!r} (found by {info.found_by}) but the model outputs "
            f"shape {tuple(out.shape)}, not (batch, {num_classes}); the layer that sets the "
            "output width is elsewhere: pass head='<dotted path of the final nn.Linear>'"
        )
