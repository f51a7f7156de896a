"""Keras through the gate against a hand-written ``model.fit`` (issue 10).

The same small fine-tune (Keras MobileNet alpha 0.25 with its ImageNet weights, scikit-learn's
digits at 64 px, 1,258 train and 539 test images, batch 32, Adam) three ways, alternated in
one process for ROUNDS rounds; the median wall time of each, everything included (building
the model, loading the weights, training, test predictions):

- ``full``: every layer trained for EPOCHS epochs, through ``run_finetune`` and through
  ``model.fit(..., validation_data=test)`` on the same ``tf.data`` input: ratio at most 1.10;
- ``head-only``: ``freeze="backbone"`` through the gate (features computed once) against
  ``model.fit`` with the backbone frozen (``trainable=False``), which runs it every epoch:
  at least 5x.

    KERAS_HOME=<folder whose models/ holds mobilenet_2_5_224_tf_no_top.h5> \\
        python benchmarks/bench_keras.py [ROUNDS] [EPOCHS] [HEAD_EPOCHS]

The weights are in ../shared/data/keras-weights; the script seeds a temporary Keras home
with them when KERAS_HOME is not set.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "keras-weights"
FILE = "mobilenet_2_5_224_tf_no_top.h5"
if "KERAS_HOME" not in os.environ:
    home = Path(tempfile.mkdtemp(prefix="bench-keras-"))
    (home / "models").mkdir()
    if (WEIGHTS / FILE).is_file():
        shutil.copy(WEIGHTS / FILE, home / "models" / FILE)
    os.environ["KERAS_HOME"] = str(home)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=".*Weights for input shape")

SIZE, BATCH, LR = 64, 32, 1e-3


def gate(data, epochs: int, freeze: str) -> float:
    from pytest_modelgate.train import run_finetune

    run = run_finetune("keras:MobileNet(alpha=0.25)", data, epochs=epochs, freeze=freeze,
                       image_size=SIZE, batch_size=BATCH, lr=LR, seed=0)
    return run.accuracy


def hand(data, epochs: int, freeze: str) -> float:
    """What a Keras user writes: the backbone without top, a Dense head, compile, fit with
    the test split as validation data, predict."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNet(alpha=0.25, include_top=False, pooling="avg",
                                        weights="imagenet", input_shape=(SIZE, SIZE, 3))
    base.trainable = freeze != "backbone"
    out = keras.layers.Dense(len(data.class_names))(base.output)
    model = keras.Model(base.inputs, out)
    model.compile(optimizer=keras.optimizers.Adam(LR), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pre = keras.applications.mobilenet.preprocess_input

    def pipeline(split, shuffle: bool):
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels.astype("int64")))
        if shuffle:
            ds = ds.shuffle(len(split.images), seed=0)

        def prep(x, y):
            x = tf.image.resize(tf.repeat(tf.cast(x[..., None], tf.float32), 3, -1),
                                (SIZE, SIZE))
            return pre(x), y

        return ds.batch(BATCH).map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)

    model.fit(pipeline(data.train, True), validation_data=pipeline(data.test, False),
              epochs=epochs, verbose=0)
    logits = model.predict(pipeline(data.test, False), verbose=0)
    return float(np.mean(logits.argmax(1) == data.test.labels))


def main() -> None:
    if not (Path(os.environ["KERAS_HOME"]) / "models" / FILE).is_file():
        sys.exit(f"{FILE} is not in $KERAS_HOME/models: it comes from ../shared/data")
    from pytest_modelgate.data import load_digits

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    head_epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    data = load_digits(test_fraction=0.3, seed=0)
    gate(data, 1, "backbone")  # TensorFlow's one-time start-up, for neither side
    cases = {"full": (epochs, "none"), "head-only": (head_epochs, "backbone")}
    times: dict[tuple[str, str], list[float]] = {}
    accuracy: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for case, (n, freeze) in cases.items():
            for side, fn in (("gate", gate), ("model.fit", hand)):
                import gc

                import keras

                keras.backend.clear_session()  # each side starts from an empty Keras state
                gc.collect()
                t0 = time.perf_counter()
                accuracy[case, side] = fn(data, n, freeze)
                times.setdefault((case, side), []).append(time.perf_counter() - t0)
    print(f"Keras MobileNet alpha 0.25, ImageNet weights, digits at {SIZE} px "
          f"({len(data.train)} train, {len(data.test)} test), batch {BATCH}; median of "
          f"{rounds} alternated rounds, wall time")
    for case, (n, _) in cases.items():
        g = statistics.median(times[case, "gate"])
        h = statistics.median(times[case, "model.fit"])
        spread = {side: ", ".join(f"{t:.1f}" for t in times[case, side])
                  for side in ("gate", "model.fit")}
        print(f"  {case:9s} {n:2d} epochs: gate {g:6.1f} s (acc {accuracy[case, 'gate']:.3f}; "
              f"{spread['gate']}), model.fit {h:6.1f} s (acc "
              f"{accuracy[case, 'model.fit']:.3f}; {spread['model.fit']}): gate/fit "
              f"{g / h:.2f}, fit/gate {h / g:.1f}x")


if __name__ == "__main__":
    main()
