"""Load Keras models by ``keras.applications`` name, instance, factory or file, with their
preprocessing.

Pretrained weights come through Keras' own loading (``weights="imagenet"``), which reads
``<keras home>/models``; nothing here downloads. Offline, a missing file is a
ModelGateError naming the file and the folder to put it in.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import AdapterUnavailableError, ModelGateError, user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

PREFIX = "keras:"
FILE_SUFFIXES = (".keras", ".h5", ".hdf5")
DEFAULT_WEIGHTS = "DEFAULT"


def is_keras_name(model: Any) -> bool:
    """A ``keras:`` name or the path of a saved Keras model (judged without importing)."""
    return isinstance(model, (str, Path)) and (
        str(model).startswith(PREFIX) or str(model).lower().endswith(FILE_SUFFIXES))


def is_keras_object(model: Any) -> bool:
    """A Keras model instance, or a Keras model class, judged by where its class comes from
    (keras, tf_keras or tensorflow), without importing any of them."""
    kind = model if isinstance(model, type) else type(model)
    return any(c.__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow")
               for c in kind.__mro__)


def import_keras() -> Any:
    """Keras on the TensorFlow backend, set up once: TensorFlow's start-up chatter quiet
    unless the user set ``TF_CPP_MIN_LOG_LEVEL``, GPU memory growth on (TensorFlow would
    take all of each GPU's memory), and under pytest-xdist each worker its share of the
    cores (as for PyTorch, see ``share_cores_with_xdist_workers``)."""
    import sys

    if "keras" not in sys.modules:
        from .. import import_triton_before_tensorflow

        import_triton_before_tensorflow()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        raise AdapterUnavailableError(
            "Keras models need TensorFlow and Keras 3: pip install "
            "'pytest-modelgate[tensorflow]'"
        ) from None
    if keras.backend.backend() != "tensorflow":
        raise AdapterUnavailableError(
            f"Keras runs on the {keras.backend.backend()!r} backend; pytest-modelgate drives "
            "Keras on TensorFlow: set KERAS_BACKEND=tensorflow"
        )
    if not getattr(import_keras, "done", False):
        import contextlib

        import_keras.done = True  # type: ignore[attr-defined]
        with contextlib.suppress(RuntimeError, ValueError):  # the runtime had started already
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
        workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
        if workers.isdigit() and int(workers) > 1 and "OMP_NUM_THREADS" not in os.environ:
            share = max(1, len(os.sched_getaffinity(0)) // int(workers)) \
                if hasattr(os, "sched_getaffinity") else 1
            with contextlib.suppress(RuntimeError):
                tf.config.threading.set_intra_op_parallelism_threads(share)
                tf.config.threading.set_inter_op_parallelism_threads(share)
    return keras


def keras_home() -> Path:
    """Where Keras keeps its cache: ``$KERAS_HOME``, else ``~/.keras`` (Keras reads the
    variable once, when it is imported)."""
    try:
        from keras.src.backend.config import keras_home as home

        return Path(home())
    except ImportError:  # pragma: no cover - another Keras layout
        return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


@dataclass(frozen=True)
class Preprocess:
    """How uint8 pixels become model input: resize to ``image_size`` (None: as they are),
    then the model's own ``preprocess_input`` (named by ``function``), or ``(x/255 - mean)
    / std`` when mean and std are given, or ``transform`` on the float NHWC batch (0-255)
    instead of all of them. A user's model with none of these gets pixels as 0-255 floats,
    as ``keras.applications`` models expect before their preprocessing."""

    image_size: int | None = None
    function: str | None = None  # "keras.applications.mobilenet.preprocess_input"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int = 3
    transform: Callable[[Any], Any] | None = field(default=None, compare=False)

    def key(self) -> dict[str, Any]:
        t = self.transform
        return {"image_size": self.image_size, "function": self.function, "mean": self.mean,
                "std": self.std, "channels": self.channels,
                "transform": None if t is None else f"{getattr(t, '__qualname__', '')}|{t!r}"}

    def apply(self, images: Any) -> Any:
        """uint8 (N, H, W[, C]) to a float32 NHWC tensor the model takes."""
        return self.batch_function()(images)

    def batch_function(self) -> Callable[[Any], Any]:
        """``apply`` as a function of a batch, with the model's preprocessing looked up now:
        what a ``tf.data`` pipeline maps (AutoGraph would trace the lookup itself)."""
        import importlib

        import tensorflow as tf

        function = None
        if self.function is not None:
            module, _, name = self.function.rpartition(".")
            function = getattr(importlib.import_module(module), name)

        @tf.autograph.experimental.do_not_convert
        def apply(images: Any) -> Any:
            return self._apply(images, function)

        return apply

    def _apply(self, images: Any, function: Callable[[Any], Any] | None) -> Any:
        import tensorflow as tf

        x = tf.convert_to_tensor(images)
        if x.shape.rank == 3:
            x = x[..., None]
        x = tf.cast(x, tf.float32)
        if x.shape[-1] == 1 and self.channels == 3:
            x = tf.repeat(x, 3, axis=-1)
        elif x.shape[-1] == 3 and self.channels == 1:
            x = tf.reduce_mean(x, axis=-1, keepdims=True)
        if self.transform is not None:
            return self.transform(x)
        if self.image_size is not None and tuple(x.shape[1:3]) != (self.image_size,) * 2:
            # Bilinear without antialiasing: what the PyTorch path does.
            x = tf.image.resize(x, (self.image_size, self.image_size), method="bilinear")
        if self.mean is not None and self.std is not None:
            return (x / 255.0 - tf.constant(self.mean[:x.shape[-1]])) / tf.constant(
                self.std[:x.shape[-1]])
        return function(x) if function is not None else x


@dataclass
class LoadedModel:
    """A Keras model ready to fine-tune. ``headless``: a ``keras.applications`` model built
    with ``include_top=False`` and pooling, to which the head is added; otherwise the
    user's model, whose head is found and replaced."""

    model: Any
    name: str
    preprocess: Preprocess
    pretrained: bool
    fresh: Callable[[], Any]
    headless: bool = False


def parse_name(name: str) -> tuple[str, dict[str, Any]]:
    """``"keras:MobileNet(alpha=0.25)"`` to ``("MobileNet", {"alpha": 0.25})``: the
    constructor's keyword arguments, as literals, in the name itself."""
    text = name.removeprefix(PREFIX).strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        tree = None
    if isinstance(tree, ast.Name):
        return tree.id, {}
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and not tree.args:
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords if k.arg}
        except ValueError:
            kwargs = None
        if kwargs is not None and len(kwargs) == len(tree.keywords):
            return tree.func.id, kwargs
    raise ModelGateError(
        f"model={name!r}: a Keras name is 'keras:<keras.applications name>', with keyword "
        "arguments as literals where the model needs them, e.g. 'keras:MobileNet(alpha=0.25)'"
    )


# Arguments finetune sets itself: the head is ours, and the input size is image_size=.
_OWN_ARGUMENTS = ("include_top", "weights", "pooling", "classes", "input_tensor",
                  "classifier_activation", "input_shape")


def _application(name: str, kwargs: dict[str, Any]) -> Callable[..., Any]:
    keras = import_keras()
    from difflib import get_close_matches

    constructors = {n: getattr(keras.applications, n) for n in dir(keras.applications)
                    if n[:1].isupper() and callable(getattr(keras.applications, n))}
    if name not in constructors:
        near = get_close_matches(name, list(constructors), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ModelGateError(f"unknown keras.applications model {name!r}{hint}")
    clash = sorted(set(kwargs) & set(_OWN_ARGUMENTS))
    if clash:
        raise ModelGateError(
            f"model='keras:{name}(...)': {', '.join(clash)} are set by finetune (the head is "
            "replaced for your classes; the input size is image_size=); leave them out"
        )
    return constructors[name]


def _build_application(ctor: Callable[..., Any], label: str, kwargs: dict[str, Any],
                       weights: Any, size: int) -> Any:
    """The backbone, without its top and with global average pooling; offline, a weights
    file missing from the Keras cache is a clear error (Keras raises a bare Exception)."""
    try:
        return ctor(include_top=False, pooling="avg", weights=weights,
                    input_shape=(size, size, 3), **kwargs)
    except TypeError as exc:
        raise ModelGateError(f"model={label!r}: {exc}") from None
    except ValueError as exc:
        raise ModelGateError(f"model={label!r} with image_size={size}: {exc}") from None
    except Exception as exc:
        text = str(exc)
        if "URL fetch failure" not in text:
            raise
        url = text.split(" on ", 1)[-1].split(":", 2)
        url_text = ":".join(url[:2]).strip()
        filename = url_text.rsplit("/", 1)[-1]
        raise ModelGateError(
            f"pretrained weights for {label!r} at {size} px are not in the Keras cache: place "
            f"{filename} in {keras_home() / 'models'} (from {url_text}), or set KERAS_HOME, "
            "before Keras is imported, to a folder whose models/ holds it; or pass "
            "weights=None for random init"
        ) from None


def _preprocess_of(ctor: Callable[..., Any]) -> str | None:
    """The ``preprocess_input`` of the module a ``keras.applications`` constructor lives in
    (``keras.src.applications.mobilenet``)."""
    import importlib

    module = importlib.import_module(ctor.__module__)
    return f"{ctor.__module__}.preprocess_input" \
        if callable(getattr(module, "preprocess_input", None)) else None


def _input_size(model: Any) -> tuple[int | None, int]:
    """The square input side a model is built for (None: any) and its channels."""
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4:
        return None, 3
    side = shape[1] if shape[1] == shape[2] else None
    return side, int(shape[3] or 3)


def _load_file(path: Path) -> Any:
    keras = import_keras()
    if not path.is_file():
        raise ModelGateError(f"model={str(path)!r}: no such file")
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, OSError, TypeError) as exc:
        raise ModelGateError(
            f"model={str(path)!r} is not a Keras model file Keras can load ({exc}); save it "
            "with model.save('model.keras')"
        ) from None


def clone(model: Any, *, weights: bool) -> Any:
    """A copy of a functional or Sequential model: new layers, freshly initialised, or with
    ``model``'s weights. The user's model is never changed."""
    keras = import_keras()
    try:
        copy = keras.models.clone_model(model)
    except (ValueError, TypeError) as exc:
        # A subclassed model (its own call()) cannot be rebuilt from its config, and its
        # layers could not be rewired for a new head either.
        first = str(exc).split(". ")[0]
        raise ModelGateError(
            f"cannot copy the Keras model {model.name!r} ({first}); a subclassed model's "
            "head cannot be replaced: build it with the functional API or keras.Sequential"
        ) from None
    if weights:
        copy.set_weights(model.get_weights())
    return copy


def weights_hash(model: Any) -> str:
    """Hash of a model's variables (paths, dtypes, shapes, values), in order."""
    import hashlib

    h = hashlib.sha256()
    for v in model.weights:
        a = np.ascontiguousarray(v.numpy())
        h.update(f"{getattr(v, 'path', v.name)}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def named_identity(model: Any, weights: Any) -> dict[str, Any] | None:
    """A ``keras:`` name at random init, identified without importing Keras (cache keys);
    pretrained weights need loading and hashing (None)."""
    if isinstance(model, str) and model.startswith(PREFIX) and weights is None:
        name, kwargs = parse_name(model)
        return {"name": f"keras:{name}", "kwargs": sorted(kwargs.items()), "init": "random"}
    return None


def load_model(model: Any, *, weights: Any = DEFAULT_WEIGHTS, image_size: int | None = None,
               mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
               transform: Callable[[Any], Any] | None = None) -> LoadedModel:
    """Resolve a Keras ``model`` (a ``keras:`` name, a saved ``.keras``/``.h5`` file, a
    ``keras.Model`` or a zero-argument factory) into a model and its preprocessing.

    ``weights``: ``"DEFAULT"`` (a name's ImageNet weights, or the model's own), None
    (random init), or the path of a weights file (``.weights.h5``) loaded into the model.
    """
    keras = import_keras()
    checkpoint = None
    if weights is not None and weights != DEFAULT_WEIGHTS:
        if not isinstance(weights, (str, Path)):
            raise ModelGateError(f"weights must be 'DEFAULT', None or a weights file path, "
                                 f"got {type(weights).__name__}")
        checkpoint = Path(weights)
        if not checkpoint.is_file():
            raise ModelGateError(f"weights={str(weights)!r}: no such weights file")
    if isinstance(model, str) and model.startswith(PREFIX):
        name, kwargs = parse_name(model)
        ctor = _application(name, kwargs)
        size = image_size or 224
        label = model.removeprefix(PREFIX).strip()
        label = f"keras:{label}"
        source = str(checkpoint) if checkpoint is not None else (
            "imagenet" if weights == DEFAULT_WEIGHTS else None)
        built = _build_application(ctor, label, kwargs, source, size)
        loaded = LoadedModel(
            built, label, Preprocess(image_size=size, function=_preprocess_of(ctor)),
            pretrained=weights is not None,
            fresh=lambda: _build_application(ctor, label, kwargs, None, size),
            headless=True)
        checkpoint = None  # loaded by Keras itself, into the headless model
    else:
        if isinstance(model, (str, Path)):
            original = _load_file(Path(model))
            label = Path(model).name
        elif isinstance(model, keras.Model):
            original = model
            label = model.name
        elif callable(model):
            original = model()
            if not isinstance(original, keras.Model):
                raise ModelGateError(
                    f"model factory {getattr(model, '__name__', model)!r} returned "
                    f"{type(original).__name__}, not a keras.Model; return the model from it"
                )
            label = getattr(model, "__name__", original.name)
        else:
            raise ModelGateError(f"model must be a Keras name, file, keras.Model or factory, "
                                 f"got {type(model).__name__}")
        side, channels = _input_size(original)
        built = clone(original, weights=weights is not None)
        loaded = LoadedModel(built, label,
                             Preprocess(image_size=image_size or side, channels=channels),
                             pretrained=weights is not None,
                             fresh=lambda: clone(original, weights=False))
    if checkpoint is not None:
        try:
            loaded.model.load_weights(checkpoint)
        except (ValueError, OSError) as exc:
            raise ModelGateError(
                f"weights={str(checkpoint)!r} does not fit {loaded.name} ({exc}); save it "
                "with model.save_weights('model.weights.h5') from the same architecture"
            ) from None
    if mean is not None or std is not None or transform is not None:
        p = loaded.preprocess
        if (mean is None) != (std is None):
            raise ModelGateError("pass mean= and std= together: pixels become "
                                 "(x / 255 - mean) / std")
        loaded.preprocess = Preprocess(
            image_size=p.image_size, function=p.function, channels=p.channels,
            mean=None if mean is None else tuple(mean),
            std=None if std is None else tuple(std), transform=transform)
    return loaded
