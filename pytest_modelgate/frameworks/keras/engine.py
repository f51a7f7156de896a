"""The Keras fine-tuning loop: ``model.fit`` on a seeded ``tf.data`` pipeline, warmed up
before the clock starts, with the run record the PyTorch loop makes.

Head-only runs (``freeze="backbone"``) compute the frozen backbone's pooled features once
and fit the head on them, so ten epochs cost about one forward pass over the data.
Warm-up: one fit of the run's own shapes (a full batch and the last, smaller one) and one
evaluation trace the step functions; then the weights and the optimizer's state are put
back, so the timed epochs measure training, not TensorFlow's start-up.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ...data import Splits
from ...errors import ModelGateError, user_error_frames
from ...run import EpochStats, FinetuneRun
from ...train.config import TrainConfig, out_of_budget
from .. import cpu_name, xdist_gpu
from .heads import add_or_replace_head, verify_width
from .zoo import LoadedModel, Preprocess, import_keras

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

log = logging.getLogger("pytest_modelgate")


def resolve_device(device: str) -> str:
    """``auto``: the first GPU TensorFlow sees, else the CPU. ``cuda``/``cuda:N`` name a
    GPU, which must exist; ``mps`` is PyTorch's and refused."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device in ("auto", "cuda") and gpus:
        return f"cuda:{xdist_gpu(len(gpus)) or 0}"  # xdist workers spread over the GPUs
    if device == "auto":
        return "cpu"
    if device == "mps":
        raise ModelGateError("device='mps' is PyTorch's; a Keras model runs on 'cpu', 'cuda' "
                             "or 'auto'")
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= len(gpus):
            raise ModelGateError(f"device={device!r} but TensorFlow sees {len(gpus)} GPU(s); "
                                 "use device='auto'")
        return f"cuda:{index}"
    return device


def device_facts(device: str, keras: Any) -> dict[str, Any]:
    """The device model, the mixed-precision dtype (None: float32) and the image layout, as
    the PyTorch engine records them."""
    import tensorflow as tf

    name = cpu_name()
    if device != "cpu":
        gpu = tf.config.list_physical_devices("GPU")[int(device.partition(":")[2] or 0)]
        name = tf.config.experimental.get_device_details(gpu).get("device_name", device)
    policy = keras.config.dtype_policy().compute_dtype
    return {"device_name": name, "autocast_dtype": None if policy == "float32" else policy,
            "channels_last": keras.config.image_data_format() == "channels_last"}


def tf_device(device: str) -> str:
    return "/CPU:0" if device == "cpu" else f"/GPU:{device.partition(':')[2] or 0}"


def seed_everything(seed: int) -> None:
    """Python, numpy and TensorFlow seeds (``keras.utils.set_random_seed``), and
    TensorFlow's deterministic kernels where it has them."""
    import contextlib

    import tensorflow as tf

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    with contextlib.suppress(AttributeError, RuntimeError):
        tf.config.experimental.enable_op_determinism()


def blocks(model: Any, exclude: str) -> list[Any]:
    """The backbone's layers that hold weights, in order, a nested model opened, without
    the head: ``freeze=N`` trains the last N (Keras models carry no block structure that
    every family shares, so the unit is a layer with weights)."""
    import keras

    out: list[Any] = []
    for layer in model.layers:
        if layer.name == exclude:
            continue
        if isinstance(layer, keras.Model):
            out.extend(blocks(layer, exclude))
        elif layer.weights:
            out.append(layer)
    return out


def _dataset(images: np.ndarray, labels: np.ndarray, prep: Preprocess, batch: int,
             seed: int | None) -> Any:
    """Batches of preprocessed images: shuffled each epoch by ``seed``, or in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    if seed is not None:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    apply = prep.batch_function()
    return ds.batch(batch).map(lambda x, y: (apply(x), y),
                               num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _forward(model: Any) -> Callable[[Any], Any]:
    """``model`` in inference mode as one graph for any batch size: three times faster than
    eager calls (1,258 digits at 64 px through MobileNet 0.25: 0.31 s against 0.94 s)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _features(forward: Callable[[Any], Any], images: np.ndarray, prep: Preprocess,
              batch: int) -> np.ndarray:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch).map(prep.batch_function())
    return np.concatenate([forward(x).numpy() for x in ds])


class _Record:
    """A Keras callback: per-epoch training time (evaluation excluded), loss, accuracy,
    test accuracy, the NaN check and the race's stop."""

    def __init__(self, keras: Any, config: TrainConfig, name: str, base_seconds: float,
                 progress: Callable[[str], None] | None,
                 evaluate: Callable[[], float] | None) -> None:
        record = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                record.started = time.perf_counter()
                record.trained = None

            def on_test_begin(self, logs=None):
                if record.trained is None:
                    record.trained = time.perf_counter() - record.started

            def on_epoch_end(self, epoch, logs=None):
                record.end_epoch(self.model, epoch + 1, logs or {})

        self.callback = Callback()
        self.config = config
        self.name = name
        self.seconds = base_seconds
        self.progress = progress
        self.history: list[EpochStats] = []
        self.notes: list[str] = []
        self.started = 0.0
        self.trained: float | None = None
        self.evaluate = evaluate  # test accuracy; None: fit's own validation pass

    def end_epoch(self, model: Any, epoch: int, logs: dict) -> None:
        config = self.config
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            raise ModelGateError(
                f"training loss became {loss} in epoch {epoch}; lower the learning rate "
                f"(lr={config.lr:g}) or check the data for broken images")
        self.seconds += self.trained if self.trained is not None else \
            time.perf_counter() - self.started
        test_acc = self.evaluate() if self.evaluate is not None else float(
            logs.get("val_accuracy", math.nan))
        stats = EpochStats(epoch, loss, float(logs.get("accuracy", math.nan)), test_acc,
                           self.seconds)
        self.history.append(stats)
        line = (f"modelgate: {self.name} epoch {epoch}/{config.epochs}: loss {loss:.4f}, "
                f"train acc {stats.train_accuracy:.3f}, test acc {test_acc:.3f}, "
                f"{self.seconds:.1f}s")
        log.info(line)
        if self.progress is not None:
            self.progress(line)
        if config.stop_at_accuracy is not None and test_acc >= config.stop_at_accuracy:
            self.notes.append(f"stopped after epoch {epoch}: reached "
                              f"{config.stop_at_accuracy:.3f}")
            model.stop_training = True
        elif out_of_budget(config, self.seconds, epoch, self.notes):
            model.stop_training = True


def _warm_up(model: Any, train: tuple[Any, Any], test: tuple[Any, Any] | None, batch: int,
             make: Callable[..., Any]) -> float:
    """Trace the training and evaluation steps on the run's own batch shapes, then put the
    weights and optimizer state back. Returns the seconds it took."""
    start = time.perf_counter()
    x, y = train
    n = len(x)
    take = min(n, batch + n % batch) if n > batch else n
    validation = None
    if test is not None:
        tx, ty = test
        m = len(tx)
        vtake = min(m, 2 * batch + m % (2 * batch)) if m > 2 * batch else m
        validation = make(tx[:vtake], ty[:vtake], 2 * batch, None)
    weights = model.get_weights()
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    state = [v.numpy() for v in optimizer.variables]
    model.fit(make(x[:take], y[:take], batch, None), epochs=1, verbose=0, shuffle=False,
              validation_data=validation)
    model.set_weights(weights)
    for v, value in zip(optimizer.variables, state, strict=True):
        v.assign(value)
    return time.perf_counter() - start


@dataclass
class _Plan:
    """What ``fit`` trains and on what: the model (or the head alone), a function that makes
    its batches, its inputs, how test accuracy is read (None: fit's validation pass), the
    seconds spent before the first epoch, and notes for the run."""

    fitted: Any
    make: Callable[..., Any]
    train_x: np.ndarray
    test_x: np.ndarray
    evaluate: Callable[[], float] | None
    setup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _head_only(keras: Any, model: Any, head: Any, splits: Splits, prep: Preprocess,
               config: TrainConfig) -> _Plan:
    """The frozen backbone's output never changes: compute it once (after one batch that
    pays the first call's costs off the clock) and fit the head alone on it."""
    import tensorflow as tf

    features = _forward(keras.Model(model.inputs, head.input))
    features(prep.apply(splits.train.images[:2]))  # traced off the clock
    start = time.perf_counter()
    f_train = _features(features, splits.train.images, prep, config.batch_size * 2)
    setup_seconds = time.perf_counter() - start
    f_test = _features(features, splits.test.images, prep, config.batch_size * 2)
    fitted = keras.Model(head.input, model.outputs[0])  # the head (flattened)
    y_test = np.asarray(splits.test.labels)

    def make(x, y, batch, seed):
        ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))
        if seed is not None:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

    def evaluate() -> float:  # the head on the test features: one matrix product
        return float(np.mean(fitted(f_test, training=False).numpy().argmax(1) == y_test))

    return _Plan(fitted, make, f_train, f_test, evaluate, setup_seconds,
                 ["head-only: backbone features computed once; no augmentation"])


def _every_step(keras: Any, model: Any, head: Any, head_name: str, splits: Splits,
                prep: Preprocess, config: TrainConfig, name: str) -> _Plan:
    """Every layer (``freeze="none"``) or the head and the last N layers with weights
    trained on preprocessed batches; test accuracy from fit's validation pass."""
    notes = []
    for layer in model.layers:
        layer.trainable = config.freeze == "none"
    if isinstance(config.freeze, int):
        chosen = blocks(model, head_name)
        if config.freeze > len(chosen):
            raise ModelGateError(
                f"freeze={config.freeze} asks to train the last {config.freeze} layers with "
                f"weights, but {name} has {len(chosen)}")
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                layer.trainable = True  # its own layers decide below
                for inner in layer.layers:
                    inner.trainable = False
        for layer in chosen[-config.freeze:]:
            layer.trainable = True
        notes.append(f"trains the head and the last {config.freeze} layers with weights: "
                     f"{', '.join(la.name for la in chosen[-config.freeze:])}")
    head.trainable = True

    def make(x, y, batch, seed):
        return _dataset(x, y, prep, batch, seed)

    return _Plan(model, make, splits.train.images, splits.test.images, None, notes=notes)


def train(loaded: LoadedModel, splits: Splits, config: TrainConfig,
          head_state: dict[str, np.ndarray] | None = None,
          progress: Callable[[str], None] | None = None,
          head_finder: Callable[[Any], str | None] | None = None) -> FinetuneRun:
    """Fine-tune ``loaded`` on ``splits`` and return predictions, history and timing."""
    import tensorflow as tf

    keras = import_keras()
    if config.backbone_lr is not None and config.backbone_lr != config.lr:
        raise ModelGateError(
            f"backbone_lr={config.backbone_lr:g}: Keras' optimizers take one learning rate "
            "for all layers; leave backbone_lr out (or equal to lr) for a Keras model")
    if config.compile:
        raise ModelGateError(
            "compile=True is torch.compile, for PyTorch models; Keras compiles a Keras "
            "model's training step itself (jit_compile='auto'): leave compile out")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    prep = loaded.preprocess
    num_classes = len(splits.class_names)
    x_train, y_train = splits.train.images, np.asarray(splits.train.labels)
    x_test, y_test = splits.test.images, np.asarray(splits.test.labels)
    notes: list[str] = []
    with tf.device(tf_device(device)):
        model, info = add_or_replace_head(loaded.model, num_classes, config.head,
                                          headless=loaded.headless, hook=head_finder)
        verify_width(model, prep.apply(x_test[:2]), num_classes, info)
        head = model.get_layer(info.path)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if config.freeze == "backbone":
            plan = _head_only(keras, model, head, splits, prep, config)
        else:
            plan = _every_step(keras, model, head, info.path, splits, prep, config,
                               loaded.name)
        fitted, make, evaluate = plan.fitted, plan.make, plan.evaluate
        train_x, test_x = plan.train_x, plan.test_x
        notes += plan.notes
        # A head on features takes microseconds a step: run a whole epoch per graph call
        # rather than pay Python's overhead for each of its steps (the updates are the
        # same), and skip XLA, whose compile cost more than the head's whole training
        # (warm-up 0.60 s to 0.45 s, training unchanged, for the digits example).
        per_call = math.ceil(len(train_x) / config.batch_size) if fitted is not model else 1
        fitted.compile(optimizer=keras.optimizers.Adam(config.lr), loss=loss,
                       metrics=["accuracy"], steps_per_execution=per_call,
                       jit_compile="auto" if fitted is model else False)
        warm = _warm_up(fitted, (train_x, y_train),
                        (test_x, y_test) if evaluate is None else None, config.batch_size, make)
        notes.append(f"warm-up (step functions traced, then reset): {warm:.1f}s, not timed")
        record = _Record(keras, config, loaded.name, plan.setup_seconds, progress, evaluate)
        fitted.fit(make(train_x, y_train, config.batch_size, config.seed),
                   validation_data=None if evaluate is not None else make(
                       test_x, y_test, config.batch_size * 2, None),
                   epochs=config.epochs, verbose=0, shuffle=False,  # shuffled by tf.data
                   callbacks=[record.callback])
        if fitted is model:
            forward = _forward(model)
            logits = _features(forward, x_test, prep, config.batch_size * 2)
            train_logits = _features(forward, x_train, prep, config.batch_size * 2)
        else:  # the head on the features: one matrix product each
            logits = fitted(test_x, training=False).numpy()
            train_logits = fitted(train_x, training=False).numpy()
    probabilities = np.asarray(tf.nn.softmax(logits.astype(np.float32)))
    config_dict: dict[str, Any] = asdict(config)
    config_dict.update(image_size=prep.image_size, device=device, head_path=info.path,
                       head_found_by=info.found_by, framework="keras",
                       **device_facts(device, keras))
    if head_state is not None:
        head_state.update({w.path.rsplit("/", 1)[-1]: w.numpy().astype(np.float32)
                           for w in head.weights})
    return FinetuneRun(
        model=loaded.name,
        class_names=splits.class_names,
        y_true=y_test.copy(),
        y_pred=probabilities.argmax(1),
        probabilities=probabilities,
        history=tuple(record.history),
        seconds=record.seconds,
        setup_seconds=plan.setup_seconds,
        device=device,
        freeze=config.freeze,
        pretrained=loaded.pretrained,
        config=config_dict,
        notes=tuple(notes + record.notes),
        train_y_true=y_train.copy(),
        train_y_pred=np.asarray(train_logits).argmax(1),
    )
