"""Keras ``workers=N``: one process, N devices under ``tf.distribute.MirroredStrategy``.

TensorFlow's logical CPU devices must be configured before it initialises, which this test
process may have done already; so the runs that train over two CPU devices happen in a
fresh interpreter that configures them first, and report back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.train import run_finetune

from .test_keras import small_sequential

keras = pytest.importorskip("keras", reason="Keras tests need pytest-modelgate[tensorflow]")

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: two logical CPU devices, then the same tiny model and digits
# as tests/test_keras.py, each run once with workers=1 and twice with workers=2.
TWO_CPUS = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from sklearn.datasets import load_digits
    from pytest_modelgate.data import stratified_split
    from pytest_modelgate.frameworks.keras import engine
    from pytest_modelgate.train import run_finetune
    import keras

    bunch = load_digits()
    keep = np.isin(bunch.target, [0, 1, 7])
    images = np.round(bunch.images[keep] * (255 / 16)).astype(np.uint8)
    labels = np.array([{0: 0, 1: 1, 7: 2}[t] for t in bunch.target[keep]])
    data = stratified_split(images, labels, class_names=["zero", "one", "seven"],
                            test_fraction=0.3, seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([  # its own weights play the pretrained ones
        keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(5, name="fc")])
    out = {"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}
    for freeze in ("none", "backbone"):
        runs = []
        for workers in (1, 2, 2):
            start = time.perf_counter()
            run = run_finetune(model, data, epochs=4, freeze=freeze, lr=1e-2, seed=3,
                               batch_size=32, device="cpu", workers=workers)
            runs.append({"wall": time.perf_counter() - start, "seconds": run.seconds,
                         "accuracy": run.accuracy, "shape": list(run.probabilities.shape),
                         "probabilities": run.probabilities.tolist(), "notes": run.notes,
                         "config": {k: run.config.get(k) for k in
                                    ("workers", "backend", "devices", "device")},
                         "has_backend": "backend" in run.config})
        out[freeze] = runs

    # The sharded forward pass returns the batch's outputs in order, a short last batch too.
    strategy = engine.distribute(2, "cpu", "cpu")[1]
    x = data.test.images[:21]
    prep = engine.Preprocess(image_size=8, channels=1)
    one = engine._features(engine._forward(model), x, prep, 8)
    sharded = engine._forward(model, strategy)
    engine._features(sharded, x[:5], prep, 4, strategy)  # as the head-only warm-up does
    traced = sharded.experimental_get_tracing_count()
    two = engine._features(sharded, x, prep, 8, strategy)
    out["retraced"] = sharded.experimental_get_tracing_count() - traced
    # The copy in the strategy's scope keeps the weights; sync_batchnorm synchronises BN.
    from pytest_modelgate.frameworks.keras.zoo import load_model
    from pytest_modelgate.train.config import TrainConfig

    loaded = load_model(keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]))
    with strategy.scope():
        copy = engine._mirrored(loaded, TrainConfig(workers=2, sync_batchnorm=True))
    out["weights_kept"] = all(np.array_equal(a, b) for a, b in
                              zip(copy.get_weights(), loaded.model.get_weights(), strict=True))
    out["mirrored"] = sorted({type(v.value).__name__ for v in copy.weights})
    out["synchronized"] = [layer.synchronized for layer in copy.layers
                           if isinstance(layer, keras.layers.BatchNormalization)]
    out["sharded_max_difference"] = float(np.abs(one - two).max())
    out["sharded_shape"] = list(two.shape)
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def two_cpus() -> dict:
    """The runs of ``TWO_CPUS``, made once for this module's tests."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", TWO_CPUS], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_keras_workers_train_under_mirrored_strategy(two_cpus):
    assert two_cpus["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    for freeze in ("none", "backbone"):
        one, two, again = two_cpus[freeze]
        # workers=1 keeps the record it had before workers existed; workers=2 says how.
        assert one["config"]["workers"] == 1 and not one["has_backend"]
        assert two["config"] == {"workers": 2, "backend": "MirroredStrategy",
                                 "devices": ["/job:localhost/replica:0/task:0/device:CPU:0",
                                             "/job:localhost/replica:0/task:0/device:CPU:1"],
                                 "device": "cpu"}
        assert two["notes"][0].startswith("MirroredStrategy over ")
        assert two["shape"] == one["shape"] == [len(two["probabilities"]), 3]
        # Same seed and workers: the same predictions; and about what one worker learns.
        assert two["probabilities"] == again["probabilities"]
        assert two["accuracy"] > 0.5
        assert abs(two["accuracy"] - one["accuracy"]) <= 0.05
    assert "sharded over 2 replicas" in two_cpus["backbone"][1]["notes"][1]


def test_keras_model_copied_into_the_strategy_keeps_its_weights(two_cpus):
    assert two_cpus["weights_kept"] and two_cpus["synchronized"] == [True]
    assert two_cpus["mirrored"] == ["MirroredVariable"]


def test_keras_sharded_forward_pass_keeps_the_order(two_cpus):
    assert two_cpus["sharded_shape"] == [21, 5]
    assert two_cpus["sharded_max_difference"] < 1e-5
    # Traced off the clock for two shapes, the graph then takes any batch size.
    assert two_cpus["retraced"] == 0


def test_keras_workers_beyond_tensorflows_devices_are_refused(digits_small):
    with pytest.raises(ModelGateError) as info:
        run_finetune(small_sequential, digits_small, epochs=1, device="cpu", workers=3,
                     batch_size=63)
    message = str(info.value)
    assert message.startswith("workers=3 trains a Keras model under tf.distribute."
                              "MirroredStrategy over 3 devices of this process, but "
                              "TensorFlow sees ")
    assert "GPU(s) and 1 logical CPU device(s) (device='cpu'); use fewer workers (at most " \
           "1)" in message
    assert "tf.config.set_logical_device_configuration(tf.config.list_physical_devices(" \
           "'CPU')[0], [tf.config.LogicalDeviceConfiguration()] * 3)" in message
    assert message.endswith("or use a PyTorch model, whose ranks are processes")


def test_keras_runs_launch_no_rank_processes(digits_small):
    from pytest_modelgate.frameworks import framework_for
    from pytest_modelgate.train.config import TrainConfig

    adapter = framework_for(small_sequential)
    assert not adapter.rank_processes and adapter.backend("cpu") == "MirroredStrategy"
    with pytest.raises(ModelGateError, match=r"workers=2 at 'ray': a Keras model's workers "
                                             r"are devices of this process.*use a PyTorch"):
        adapter.launch(None, digits_small, TrainConfig(workers=2), place="ray", progress=None,
                       head_finder=None, ray="auto")
