"""The Keras fine-tuning loop: ``model.fit`` on a seeded ``tf.data`` pipeline, warmed up
before the clock starts, with the run record the PyTorch loop makes.

Head-only runs (``freeze="backbone"``) compute the frozen backbone's pooled features once
and fit the head on them, so ten epochs cost about one forward pass over the data.
Warm-up: one fit of the run's own shapes (a full batch and the last, smaller one) and one
evaluation trace the step functions; then the weights and the optimizer's state are put
back, so the timed epochs measure training, not TensorFlow's start-up.
``workers=N`` trains under ``tf.distribute.MirroredStrategy`` over N devices of this
process (the first N GPUs, else N logical CPU devices): the model is copied into the
strategy's scope, each step splits the global batch over the replicas and averages their
gradients, and the forward passes (a head-only run's features, the predictions) are
sharded over the replicas too.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...data import Splits
from ...errors import ModelGateError, user_error_frames
from ...train.config import TrainConfig
from ...train.ranks import World
from ...train.record import EpochLog, Trained, label_accuracy
from .. import cpu_name, xdist_gpu
from .heads import add_or_replace_head, verify_width
from .zoo import LoadedModel, Preprocess, import_keras

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


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


def _too_few_devices(workers: int, requested: str, gpus: int, cpus: int) -> ModelGateError:
    usable = cpus if requested == "cpu" else gpus if requested != "auto" else max(gpus, cpus)
    return ModelGateError(
        f"workers={workers} trains a Keras model under tf.distribute.MirroredStrategy over "
        f"{workers} devices of this process, but TensorFlow sees {gpus} GPU(s) and {cpus} "
        f"logical CPU device(s) (device={requested!r}); use fewer workers (at most "
        f"{usable}), or configure "
        f"{workers} logical CPU devices before TensorFlow starts (in conftest.py, before any "
        "model is built): tf.config.set_logical_device_configuration(tf.config."
        "list_physical_devices('CPU')[0], [tf.config.LogicalDeviceConfiguration()] * "
        f"{workers}), or use a PyTorch model, whose ranks are processes")


def distribute(workers: int, requested: str, device: str) -> tuple[str, Any | None]:
    """The device a run records and its ``MirroredStrategy`` (None for one worker): the
    first ``workers`` GPUs when TensorFlow sees that many (``requested`` not ``cpu``), else
    ``workers`` logical CPU devices (``requested`` ``auto`` or ``cpu``).

    Raises:
        ModelGateError: TensorFlow sees fewer devices than ``workers``.
    """
    if workers == 1:
        return device, None
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if device != "cpu" and len(gpus) >= workers:
        device, chosen = "cuda:0", gpus[:workers]
    elif requested in ("auto", "cpu") and len(cpus) >= workers:
        device, chosen = "cpu", cpus[:workers]
    else:
        raise _too_few_devices(workers, requested, len(gpus), len(cpus))
    return device, _mirrored_strategy(tuple(d.name for d in chosen))


@functools.cache
def _mirrored_strategy(devices: tuple[str, ...]) -> Any:
    """One ``MirroredStrategy`` per set of devices for the whole process: each new one
    numbers its collectives from the same keys, so a second strategy over the same devices
    collides with the first one's ("Shape mismatch in the collective instance 100")."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=list(devices))


def _scope(strategy: Any | None, device: str) -> Any:
    import tensorflow as tf

    return tf.device(tf_device(device)) if strategy is None else strategy.scope()


def _mirrored(loaded: LoadedModel, config: TrainConfig) -> Any:
    """The loaded model copied into the strategy's scope (its variables become mirrored
    ones; Keras trains only a model built in the scope), weights and all; then the seeds
    again, so the new head starts as a one-worker run's does. ``sync_batchnorm``: its
    BatchNormalization layers take their batch statistics over every replica's share
    (Keras' ``synchronized``, read when the step is traced)."""
    import keras

    from .zoo import clone

    model = clone(loaded.model, weights=True)
    if config.sync_batchnorm:
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    seed_everything(config.seed)
    return model


def _all_layers(model: Any) -> list[Any]:
    """Every layer of ``model``, nested models opened."""
    out: list[Any] = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out.extend(_all_layers(layer))
    return out


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


def _targets(labels: np.ndarray) -> np.ndarray:
    """Labels as the loss takes them: class indices, or a multilabel run's 0/1 matrix as
    floats (binary cross-entropy's targets)."""
    return labels.astype(np.float32 if labels.ndim == 2 else np.int64)


def _dataset(images: np.ndarray, labels: np.ndarray, prep: Preprocess, batch: int,
             seed: int | None) -> Any:
    """Batches of preprocessed images: shuffled each epoch by ``seed``, or in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, _targets(labels)))
    if seed is not None:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    apply = prep.batch_function()
    return ds.batch(batch).map(lambda x, y: (apply(x), y),
                               num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _forward(model: Any, strategy: Any | None = None) -> Callable[[Any], Any]:
    """``model`` in inference mode as one graph for any batch size: three times faster than
    eager calls (1,258 digits at 64 px through MobileNet 0.25: 0.31 s against 0.94 s).
    Under a strategy, one graph runs each replica's share of a distributed batch (traced
    for the first shapes it meets, then for any batch size: ``reduce_retracing``)."""
    import tensorflow as tf

    if strategy is not None:
        return tf.function(lambda batch: strategy.run(lambda x: model(x, training=False),
                                                      args=(batch,)), reduce_retracing=True)
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _features(forward: Callable[[Any], Any], images: np.ndarray, prep: Preprocess,
              batch: int, strategy: Any | None = None) -> np.ndarray:
    """``forward`` over ``images`` in order; under a strategy each batch is split over the
    replicas in order (replica i takes the i-th slice), so their outputs, in replica
    order, are the batch's."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch).map(prep.batch_function())
    if strategy is None:
        return np.concatenate([forward(x).numpy() for x in ds])
    return np.concatenate([part.numpy() for x in strategy.experimental_distribute_dataset(ds)
                           for part in strategy.experimental_local_results(forward(x))])


class _EpochTimer:
    """Times each epoch of ``fit`` (its evaluation excluded) and hands the epoch's numbers to
    the run's ``EpochLog``, which checks the loss and says when to stop. ``evaluate`` gives
    test accuracy; None: fit's own validation pass (``val_accuracy``)."""

    def __init__(self, fitted: Any, log: EpochLog, evaluate: Callable[[], float] | None
                 ) -> None:
        self.fitted = fitted
        self.log = log
        self.evaluate = evaluate
        self.started = 0.0
        self.trained: float | None = None

    def callback(self, keras: Any) -> Any:
        return keras.callbacks.LambdaCallback(on_epoch_begin=self.epoch_begin,
                                              on_test_begin=self.test_begin,
                                              on_epoch_end=self.epoch_end)

    def epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()
        self.trained = None

    def test_begin(self, logs: dict | None = None) -> None:
        if self.trained is None:
            self.trained = time.perf_counter() - self.started

    def epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        seconds = self.trained if self.trained is not None else \
            time.perf_counter() - self.started
        evaluate = self.evaluate or (lambda: float(logs.get("val_accuracy", math.nan)))
        if self.log.end_epoch(epoch + 1, loss=float(logs.get("loss", math.nan)),
                              train_accuracy=float(logs.get("accuracy", math.nan)),
                              seconds=seconds, evaluate=evaluate):
            self.fitted.stop_training = True


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
               config: TrainConfig, strategy: Any | None) -> _Plan:
    """The frozen backbone's output never changes: compute it once (after a few images
    that pay the first calls' costs off the clock; under a strategy, sharded over the
    replicas) and fit the head alone on it."""
    import tensorflow as tf

    features = _forward(keras.Model(model.inputs, head.input), strategy)
    # Traced off the clock: under a strategy for two shapes (a full batch and a smaller
    # last one), after which its graph takes any batch size.
    few = 2 * config.workers
    _features(features, splits.train.images[:few + 1], prep, few, strategy)
    start = time.perf_counter()
    f_train = _features(features, splits.train.images, prep, config.batch_size * 2, strategy)
    setup_seconds = time.perf_counter() - start
    f_test = _features(features, splits.test.images, prep, config.batch_size * 2, strategy)
    fitted = keras.Model(head.input, model.outputs[0])  # the head (flattened)
    y_test = np.asarray(splits.test.labels)

    def make(x, y, batch, seed):
        ds = tf.data.Dataset.from_tensor_slices((x, _targets(y)))
        if seed is not None:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

    def evaluate() -> float:  # the head on the test features: one matrix product
        return label_accuracy(fitted(f_test, training=False).numpy(), y_test)

    sharded = f" (sharded over {config.workers} replicas)" if strategy is not None else ""
    return _Plan(fitted, make, f_train, f_test, evaluate, setup_seconds,
                 [f"head-only: backbone features computed once{sharded}; no augmentation"])


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


def _check_config(config: TrainConfig) -> None:
    if config.backbone_lr is not None and config.backbone_lr != config.lr:
        raise ModelGateError(
            f"backbone_lr={config.backbone_lr:g}: Keras' optimizers take one learning rate "
            "for all layers; leave backbone_lr out (or equal to lr) for a Keras model")
    if config.compile:
        raise ModelGateError(
            "compile=True is torch.compile, for PyTorch models; Keras compiles a Keras "
            "model's training step itself (jit_compile='auto'): leave compile out")


def _compile(keras: Any, plan: _Plan, model: Any, config: TrainConfig,
             multilabel: bool) -> None:
    """A head on features takes microseconds a step: run a whole epoch per graph call
    rather than pay Python's overhead for each of its steps (the updates are the same), and
    skip XLA, whose compile cost more than the head's whole training (warm-up 0.60 s to
    0.45 s, training unchanged, for the digits example). The head makes logits: a
    multilabel run's loss is binary cross-entropy on their sigmoids (``from_logits``, the
    numerically stable form of a sigmoid Dense head), its accuracy the per-label one at
    probability 0.5, i.e. logit 0 (``label_accuracy``)."""
    whole = plan.fitted is model
    # Under MirroredStrategy (workers > 1) a step per call: several per call fail there
    # (TensorFlow 2.21, Keras 3.15: "You must feed a value for placeholder tensor").
    per_call = 1 if whole or config.workers > 1 else \
        math.ceil(len(plan.train_x) / config.batch_size)
    if multilabel:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metric = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metric = "accuracy"
    plan.fitted.compile(optimizer=keras.optimizers.Adam(config.lr), loss=loss,
                        metrics=[metric], steps_per_execution=per_call,
                        jit_compile="auto" if whole else False)


def train(loaded: LoadedModel, splits: Splits, config: TrainConfig, log: EpochLog,
          head_finder: Callable[[Any], str | None] | None = None,
          world: World | None = None) -> Trained:
    """Fine-tune ``loaded`` on ``splits``, reporting each epoch to ``log``; returns the
    test probabilities, train predictions and the facts of the run. ``workers > 1``: under
    ``MirroredStrategy`` (see ``distribute``); ``world`` is PyTorch's and unused here."""
    import tensorflow as tf

    keras = import_keras()
    _check_config(config)
    device, strategy = distribute(config.workers, config.device,
                                  resolve_device(config.device))
    seed_everything(config.seed)
    prep = loaded.preprocess
    num_classes = len(splits.class_names)
    x_train, y_train = splits.train.images, np.asarray(splits.train.labels)
    x_test, y_test = splits.test.images, np.asarray(splits.test.labels)
    with _scope(strategy, device):
        source = loaded.model if strategy is None else _mirrored(loaded, config)
        model, info = add_or_replace_head(source, num_classes, config.head,
                                          headless=loaded.headless, hook=head_finder)
        verify_width(model, prep.apply(x_test[:2]), num_classes, info)
        head = model.get_layer(info.path)
        if strategy is not None:
            log.note(_strategy_note(strategy, config))
        if config.freeze == "backbone":
            plan = _head_only(keras, model, head, splits, prep, config, strategy)
        else:
            plan = _every_step(keras, model, head, info.path, splits, prep, config,
                               loaded.name)
        fitted, make, evaluate = plan.fitted, plan.make, plan.evaluate
        for note in plan.notes:
            log.note(note)
        _compile(keras, plan, model, config, splits.multilabel)
        warm = _warm_up(fitted, (plan.train_x, y_train),
                        (plan.test_x, y_test) if evaluate is None else None, config.batch_size,
                        make)
        log.warmed_up("warm-up (step functions traced, then reset)", warm)
        log.start(loaded.name, plan.setup_seconds)
        fitted.fit(make(plan.train_x, y_train, config.batch_size, config.seed),
                   validation_data=None if evaluate is not None else make(
                       plan.test_x, y_test, config.batch_size * 2, None),
                   epochs=config.epochs, verbose=0, shuffle=False,  # shuffled by tf.data
                   callbacks=[_EpochTimer(fitted, log, evaluate).callback(keras)])
        if fitted is model:
            forward = _forward(model, strategy)
            logits = _features(forward, x_test, prep, config.batch_size * 2, strategy)
            train_logits = _features(forward, x_train, prep, config.batch_size * 2, strategy)
        else:  # the head on the features: one matrix product each
            logits = fitted(plan.test_x, training=False).numpy()
            train_logits = fitted(plan.train_x, training=False).numpy()
    multilabel = splits.multilabel
    squash = tf.nn.sigmoid if multilabel else tf.nn.softmax
    probabilities = np.asarray(squash(logits.astype(np.float32)))
    train_logits = np.asarray(train_logits).astype(np.float32)
    return Trained(loaded.name, loaded.pretrained, device, probabilities,
                   None if multilabel else train_logits.argmax(1), plan.setup_seconds,
                   {"image_size": prep.image_size, "device": device, "head_path": info.path,
                    "head_found_by": info.found_by, "framework": "keras",
                    **device_facts(device, keras), **_distributed_facts(strategy)},
                   {w.path.rsplit("/", 1)[-1]: w.numpy().astype(np.float32)
                    for w in head.weights},
                   np.asarray(tf.nn.sigmoid(train_logits)) if multilabel else None)


def _strategy_note(strategy: Any, config: TrainConfig) -> str:
    devices = ", ".join(strategy.extended.worker_devices)
    statistics = "over the global batch" if config.sync_batchnorm else "per replica"
    return (f"MirroredStrategy over {devices}: each step splits the global batch of "
            f"{config.batch_size} into {config.workers} of {config.batch_size // config.workers}"
            f" and averages their gradients; BatchNorm statistics {statistics}")


def _distributed_facts(strategy: Any | None) -> dict[str, Any]:
    """What a data-parallel run adds to its record (nothing for one worker, whose record
    stays as it was before ``workers`` existed; ``workers`` itself is the config's)."""
    if strategy is None:
        return {}
    return {"backend": "MirroredStrategy", "devices": list(strategy.extended.worker_devices)}
