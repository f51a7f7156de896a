"""Find and replace the classifier head of a Keras model, by structure, never by name.

Resolution order: an explicit ``head=`` layer name, the ``pytest_modelgate_find_head``
hook, then the graph: walking back from the model's output past layers without weights
(a softmax ``Activation``, ``Dropout``, ``Reshape``), the first layer with weights must be a
``Dense``, or a 1x1 ``Conv2D`` on a 1x1 map (MobileNet's and MobileNetV3's logits). The head
is replaced by a fresh layer of the same kind and the data's width on the same input (a
convolution then flattened), and the output shape is checked. A ``keras.applications`` name is built
without its top, so its head is added, not found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import HeadNotFoundError, user_error_frames
from .. import HeadInfo

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

ADDED = "modelgate_head"


def _is_head(layer: Any) -> bool:
    """A Dense layer, or a 1x1 convolution over a 1x1 map: a classifier."""
    import keras

    if isinstance(layer, keras.layers.Dense):
        return True
    if isinstance(layer, keras.layers.Conv2D) and not isinstance(
            layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
        try:
            spatial = tuple(layer.input.shape[1:3])
        except (AttributeError, ValueError):
            return False
        return tuple(layer.kernel_size) == (1, 1) and spatial == (1, 1)
    return False


def _dense_names(model: Any) -> list[str]:
    return [layer.name for layer in model.layers if _is_head(layer)]


def _hint(model: Any) -> str:
    names = _dense_names(model)
    return (f"pass head='<name of the final Dense layer>' (its Dense layers and 1x1 "
            f"classifier convolutions: {', '.join(names) if names else 'none'})")


def _by_name(model: Any, name: str, found_by: str) -> Any:

    try:
        layer = model.get_layer(name)
    except ValueError:
        raise HeadNotFoundError(f"head={name!r} ({found_by}) is not a layer of "
                                f"{model.name}; {_hint(model)}") from None
    if not _is_head(layer):
        raise HeadNotFoundError(f"head={name!r} ({found_by}) is a "
                                f"{type(layer).__name__}, not a Dense layer; {_hint(model)}")
    return layer


def _from_output(model: Any) -> Any | None:
    """The Dense layer that makes the model's output, past weightless layers."""
    import keras

    try:
        node_layer = model.outputs[0]._keras_history.operation if model.outputs else None
    except AttributeError:
        node_layer = None
    layer = node_layer or (model.layers[-1] if model.layers else None)
    while layer is not None:
        if _is_head(layer):
            return layer
        if layer.weights or isinstance(layer, keras.Model):
            return None  # the last layer with weights is not a Dense head
        inbound = layer.input if not isinstance(layer.input, list) else None
        history = getattr(inbound, "_keras_history", None)
        layer = history.operation if history is not None else None
        if layer is not None and not isinstance(layer, keras.layers.Layer):
            return None
    return None


def add_or_replace_head(model: Any, num_classes: int, head: str | None, *,
                        headless: bool, hook: Callable[[Any], str | None] | None = None
                        ) -> tuple[Any, HeadInfo]:
    """A new model whose output is ``num_classes`` logits: a ``Dense`` added on a headless
    backbone's pooled output, or put where the found head was (the layers after it, such
    as a softmax, are dropped: the gate trains on logits)."""
    import keras

    if headless:
        out = keras.layers.Dense(num_classes, name=ADDED)(model.output)
        return (keras.Model(model.inputs, out, name=model.name),
                HeadInfo(ADDED, int(model.output.shape[-1]), "keras.applications without top"))
    if not getattr(model, "_is_graph_network", hasattr(model, "inputs")) or not getattr(
            model, "inputs", None):
        raise HeadNotFoundError(
            f"{model.name} is a subclassed Keras model, whose layers cannot be rewired: build "
            "it with the functional API or keras.Sequential (with an Input)")
    if head is not None:
        layer, found_by = _by_name(model, head, "head="), "head="
    else:
        named = hook(model) if hook is not None else None
        if named is not None:
            layer, found_by = _by_name(model, named, "pytest_modelgate_find_head"), \
                "pytest_modelgate_find_head"
        else:
            layer, found_by = _from_output(model), "the layer that makes the output"
            if layer is None:
                raise HeadNotFoundError(
                    f"could not find the classifier head of {model.name}: walking back from "
                    "its output, the first layer with weights is not a Dense layer; "
                    + _hint(model))
    try:
        features = layer.input
    except (AttributeError, ValueError) as exc:
        raise HeadNotFoundError(f"head {layer.name!r} is used more than once or not in "
                                f"{model.name}'s graph ({exc}); {_hint(model)}") from None
    if isinstance(layer, keras.layers.Dense):
        out = keras.layers.Dense(num_classes, name=layer.name)(features)
    else:
        out = keras.layers.Flatten(name=f"{layer.name}_flat")(
            keras.layers.Conv2D(num_classes, 1, name=layer.name)(features))
    return (keras.Model(model.inputs, out, name=model.name),
            HeadInfo(layer.name, int(features.shape[-1]), found_by))


def verify_width(model: Any, sample: Any, num_classes: int, info: HeadInfo) -> None:
    """The model must now output ``(batch, num_classes)``: by its graph's static output
    shape where it has one, else by one forward pass."""
    static = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else None
    shape = static if static and None not in static[1:] else tuple(
        model(sample, training=False).shape)
    if len(shape) != 2 or shape[-1] != num_classes:
        raise HeadNotFoundError(
            f"replaced head {info.path!r} (found by {info.found_by}) but the model outputs "
            f"shape {shape}, not (batch, {num_classes}); pass head='<name of the final "
            "Dense layer>'")
