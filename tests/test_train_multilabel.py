"""Fine-tuning on multilabel data (labels an (N, classes) 0/1 matrix): ``task=``, sigmoid
heads with binary cross-entropy in both engines, per-class thresholds, the run record and
the run cache.

The data: 8x8 gray noise where class k is a bright 2x2 square in quadrant k, any number of
them per image, learnable by the tiny models in a few epochs.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_modelgate.cache import RunCache, decode_run, encode_run
from pytest_modelgate.data import from_arrays
from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.train.config import TrainConfig
from pytest_modelgate.train.record import f1_best_thresholds, label_accuracy

GRAY = dict(image_size=8, mean=(0.5,), std=(0.5,), device="cpu")
CLASSES = ("top_left", "top_right", "bottom_left", "bottom_right")


def quadrant_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 8x8 images and their (n, 4) labels: class k, a bright square in
    quadrant k (each present with probability 0.4)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 4)) < 0.4).astype(np.int64)
    images = rng.integers(0, 60, (n, 8, 8)).astype(np.uint8)
    for i, k in zip(*np.nonzero(labels), strict=True):
        row, col = divmod(int(k), 2)
        images[i, row * 4 + 1:row * 4 + 3, col * 4 + 1:col * 4 + 3] = 230
    return images, labels


@pytest.fixture(scope="module")
def quadrants():
    x_train, y_train = quadrant_images(160, 0)
    x_test, y_test = quadrant_images(80, 1)
    return from_arrays(x_train, y_train, x_test, y_test, class_names=CLASSES)


def _check_record(run, data) -> None:
    """What every multilabel run records: (n, classes) 0/1 predictions, sigmoid
    probabilities (rows need not sum to 1), the thresholds that made the predictions."""
    n, k = len(data.test), len(CLASSES)
    assert run.y_true.shape == run.y_pred.shape == run.probabilities.shape == (n, k)
    assert run.train_y_true.shape == run.train_y_pred.shape == (len(data.train), k)
    assert set(np.unique(run.y_pred)) <= {0, 1} and run.y_pred.dtype == np.int64
    assert len(run.thresholds) == k
    np.testing.assert_array_equal(run.y_pred, run.probabilities >= np.array(run.thresholds))
    np.testing.assert_array_equal(run.y_true, data.test.labels)
    assert run.config["task"] == "multilabel"
    assert run.config["thresholds"] == list(run.thresholds)
    assert "4 classes" in repr(run)


# --- configuration --------------------------------------------------------------------------


def test_task_defaults_to_what_the_data_says_and_enters_the_key_only_when_multilabel(
        quadrants, digits_small):
    from pytest_modelgate.train.plan import plan_run

    multi = plan_run("efficientnet_lite0", quadrants).config
    single = plan_run("efficientnet_lite0", digits_small).config
    assert (multi.task, multi.threshold) == ("multilabel", 0.5)
    assert (single.task, single.threshold) == ("multiclass", None)
    # A multiclass run keeps the cache key it had before task= existed.
    assert not {"task", "threshold"} & set(single.key_fields())
    assert multi.key_fields()["task"] == "multilabel"
    assert plan_run("efficientnet_lite0", quadrants, task="multilabel").config == multi


def test_a_task_that_contradicts_the_data_names_task_and_the_fix(quadrants, digits_small):
    from pytest_modelgate.train.plan import plan_run

    with pytest.raises(ModelGateError, match=r"task='multilabel' but the data holds one label "
                                             r"per image; pass the labels as an \(N, classes\) "
                                             r"0/1 matrix .*label_sep='\|'.*or leave task= out"):
        plan_run("efficientnet_lite0", digits_small, task="multilabel")
    with pytest.raises(ModelGateError, match=r"task='multiclass' but the data's labels are a "
                                             r"0/1 matrix .*leave task= out, pass "
                                             r"task='multilabel'"):
        plan_run("efficientnet_lite0", quadrants, task="multiclass")
    with pytest.raises(ModelGateError, match=r"task must be 'multiclass', 'multilabel' or "
                                             r"None \(what the data says\), got 'binary'"):
        TrainConfig(task="binary")


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1, True, "best", float("nan"), [],
                                       [0.5, "x"], {"a": 0.5}])
def test_bad_thresholds_say_what_is_accepted(threshold):
    with pytest.raises(ModelGateError, match=r"threshold must be a probability in \(0, 1\) "
                                             r"\(default 0.5\), a sequence of them \(one per "
                                             r"class, in class_names order\) or 'train'.*; got"):
        TrainConfig(threshold=threshold)


def test_thresholds_are_checked_against_the_data(quadrants, digits_small):
    from pytest_modelgate.train.plan import plan_run

    assert plan_run("efficientnet_lite0", quadrants,
                    threshold=np.array([0.2, 0.4, 0.6, 0.8])).config.threshold == \
        (0.2, 0.4, 0.6, 0.8)
    with pytest.raises(ModelGateError, match=r"threshold= holds 3 per-label thresholds but the "
                                             r"data has 4 classes; pass one per class"):
        plan_run("efficientnet_lite0", quadrants, threshold=[0.5, 0.5, 0.5])
    with pytest.raises(ModelGateError, match=r"threshold='train' applies to multilabel data .*"
                                             r"leave threshold= out"):
        plan_run("efficientnet_lite0", digits_small, threshold="train")


def test_from_arrays_takes_matrices_and_names_their_columns():
    x, y = quadrant_images(12, 3)
    data = from_arrays(x, y, x[:4], y[:4])
    assert data.multilabel and data.class_names == ("0", "1", "2", "3")
    with pytest.raises(ModelGateError, match=r"a multilabel matrix holds 0 and 1 only"):
        from_arrays(x, y * 2, x[:4], y[:4])


# --- the pure parts ---------------------------------------------------------------------------


def test_label_accuracy_is_the_mean_per_label_accuracy_at_one_half():
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, -0.2, 1.0]])
    labels = np.array([[1, 0, 0], [0, 1, 1]])
    assert label_accuracy(logits, labels) == pytest.approx(4 / 6)
    assert label_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5


def test_f1_best_thresholds_sit_between_the_scores_they_separate():
    scores = np.array([[0.9, 0.2, 0.3], [0.6, 0.1, 0.3], [0.4, 0.7, 0.3], [0.2, 0.8, 0.3]])
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    chosen, f1s = f1_best_thresholds(scores, labels)
    # Class 0: calling 0.9 and 0.6 is perfect; midway to the next score, 0.4.
    # Class 1: calling the top two (0.8, 0.7) gives F1 2/3, the best; midway to 0.2.
    # Class 2: no positive image: 0.5, no F1.
    assert chosen == pytest.approx((0.5, 0.45, 0.5)) and f1s[:2] == pytest.approx([1, 2 / 3])
    assert f1s[2] is None


def test_the_record_applies_the_thresholds_and_a_cut_race_run_keeps_one_half(quadrants,
                                                                            digits_small):
    from pytest_modelgate.train.record import EpochLog, Trained, run_record

    n, k = len(quadrants.test), len(CLASSES)
    probabilities = np.tile(np.array([0.2, 0.4, 0.6, 0.8], np.float32), (n, 1))
    config = TrainConfig(epochs=1).for_data(True, k)
    fixed = run_record(Trained("net", True, "cpu", probabilities, None, 0.0, {}), quadrants,
                       TrainConfig(threshold=(0.1, 0.5, 0.5, 0.9)).for_data(True, k),
                       EpochLog(config))
    assert fixed.y_pred[0].tolist() == [1, 0, 1, 0] and fixed.train_y_pred is None
    # threshold="train" on a race run cut at its budget (no train-split pass): 0.5, noted.
    log = EpochLog(config)
    cut = run_record(Trained("net", True, "cpu", probabilities, None, 0.0, {}), quadrants,
                     TrainConfig(threshold="train").for_data(True, k), log)
    assert cut.thresholds == (0.5,) * k and cut.y_pred[0].tolist() == [0, 0, 1, 1]
    assert "no train-split pass" in cut.notes[-1]
    # A multiclass record stays as it was before task= existed.
    single = run_record(Trained("net", True, "cpu", np.full((len(digits_small.test), 3), 1 / 3),
                                None, 0.0, {}), digits_small,
                        TrainConfig().for_data(False, 3), EpochLog(config))
    assert single.thresholds is None and not {"task", "threshold"} & set(single.config)


# --- PyTorch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("freeze,lr", [("backbone", 5e-2), ("none", 2e-2)])
def test_torch_learns_multilabel_with_sigmoids(quadrants, freeze, lr):
    pytest.importorskip("torch")
    from pytest_modelgate.train import run_finetune

    from .conftest import tiny_cnn

    run = run_finetune(tiny_cnn, quadrants, epochs=8, freeze=freeze, lr=lr, batch_size=32,
                       **GRAY)
    _check_record(run, quadrants)
    assert run.thresholds == (0.5,) * 4 and run.config["threshold"] == 0.5
    # Sigmoids, not a softmax: rows do not sum to 1.
    assert not np.allclose(run.probabilities.sum(axis=1), 1)
    first, last = run.history[0], run.history[-1]
    assert last.loss < first.loss
    # The history's accuracy is the per-label one at 0.5: the run's final predictions'.
    assert last.test_accuracy == pytest.approx(np.mean(run.y_pred == run.y_true))
    assert last.test_accuracy > 0.75


@pytest.mark.gpu
def test_cuda_multilabel_runs_bce_under_autocast(quadrants):
    """On CUDA the step runs under autocast (bf16/fp16): BCEWithLogits must still learn."""
    from pytest_modelgate.train import run_finetune

    from .conftest import tiny_cnn

    run = run_finetune(tiny_cnn, quadrants, epochs=8, freeze="none", lr=2e-2, batch_size=32,
                       **{**GRAY, "device": "cuda"})
    _check_record(run, quadrants)
    assert run.device.startswith("cuda")
    assert run.config["autocast_dtype"] in ("bfloat16", "float16")
    assert run.history[-1].loss < run.history[0].loss
    assert run.history[-1].test_accuracy > 0.75


def test_threshold_train_picks_per_class_thresholds_and_notes_them(quadrants):
    pytest.importorskip("torch")
    from pytest_modelgate.train import run_finetune

    from .conftest import tiny_cnn

    kwargs = dict(epochs=5, freeze="backbone", lr=5e-2, batch_size=32, **GRAY)
    tuned = run_finetune(tiny_cnn, quadrants, threshold="train", **kwargs)
    plain = run_finetune(tiny_cnn, quadrants, **kwargs)
    _check_record(tuned, quadrants)
    np.testing.assert_array_equal(tuned.probabilities, plain.probabilities)
    note = next(n for n in tuned.notes if n.startswith("threshold='train'"))
    assert "the best F1 on the train split's predictions" in note
    for name, t in zip(CLASSES, tuned.thresholds, strict=True):
        assert f"{name} {t:.3f} (train F1 " in note
    assert tuned.config["threshold"] == "train" and tuned.thresholds != (0.5,) * 4
    # Chosen on train, per class they call the train split at least as well as 0.5 does.
    truth = quadrants.train.labels
    assert np.all(_f1(tuned.train_y_pred, truth) >= _f1(plain.train_y_pred, truth))
    fixed = run_finetune(tiny_cnn, quadrants, threshold=[0.3, 0.4, 0.6, 0.7], **kwargs)
    assert fixed.thresholds == (0.3, 0.4, 0.6, 0.7)
    np.testing.assert_array_equal(fixed.y_pred, plain.probabilities >= [0.3, 0.4, 0.6, 0.7])


def _f1(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per class F1 of 0/1 matrices."""
    tp = np.sum((pred == 1) & (true == 1), axis=0)
    return 2 * tp / np.maximum(pred.sum(axis=0) + true.sum(axis=0), 1)


def test_a_multilabel_run_round_trips_the_run_cache(quadrants, tmp_path):
    pytest.importorskip("torch")
    from pytest_modelgate.train import run_finetune

    from .conftest import tiny_cnn

    cache = RunCache(tmp_path / "runs")
    kwargs = dict(epochs=2, freeze="backbone", lr=5e-2, batch_size=32, cache=cache,
                  threshold="train", **GRAY)
    first = run_finetune(tiny_cnn, quadrants, **kwargs)
    second = run_finetune(tiny_cnn, quadrants, **kwargs)
    assert not first.cached and second.cached and (cache.hits, cache.stored) == (1, 1)
    _check_record(second, quadrants)
    assert second.thresholds == first.thresholds
    for name in ("y_true", "y_pred", "probabilities", "train_y_true", "train_y_pred"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    # Another threshold is another entry: the cached predictions were made with these.
    other = run_finetune(tiny_cnn, quadrants, **{**kwargs, "threshold": 0.5})
    assert not other.cached and other.cache_key != first.cache_key
    # The encoding itself: arrays stay (n, classes), thresholds are floats again.
    back = decode_run(encode_run(first, {}))
    assert back.thresholds == first.thresholds and back.y_pred.shape == first.y_pred.shape


@pytest.mark.parametrize("freeze", ["none", "backbone"])
def test_two_ranks_train_multilabel_the_same_step_code(freeze):
    """``workers=2``: the ranks' gathered outputs (a head-only run's features, every
    run's predictions) are (n, classes) rows in order."""
    pytest.importorskip("torch")
    from pytest_modelgate.train import run_finetune

    from .conftest import tiny_cnn

    x_train, y_train = quadrant_images(64, 0)
    x_test, y_test = quadrant_images(21, 1)   # odd: the ranks' chunks differ in length
    data = from_arrays(x_train, y_train, x_test, y_test, class_names=CLASSES)
    kwargs = dict(epochs=2, freeze=freeze, lr=2e-2, batch_size=32, **GRAY)
    ranks = run_finetune(tiny_cnn, data, workers=2, **kwargs)
    here = run_finetune(tiny_cnn, data, **kwargs)
    assert ranks.y_pred.shape == ranks.probabilities.shape == (21, 4)
    assert ranks.config["workers"] == 2
    np.testing.assert_allclose(ranks.probabilities, here.probabilities, atol=1e-4)


# --- Keras ------------------------------------------------------------------------------------


def _keras_net():
    """A user's Keras model that keeps where things are: pooled to 2x2, flattened, a Dense
    ``fc`` and a softmax (dropped with the head replacement)."""
    import keras

    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                             keras.layers.AveragePooling2D(4), keras.layers.Flatten(),
                             keras.layers.Dense(3, name="fc"), keras.layers.Softmax()],
                            name="quadrants_net")


@pytest.mark.parametrize("freeze,lr", [("backbone", 5e-2), ("none", 2e-2)])
def test_keras_learns_multilabel_with_sigmoids(quadrants, freeze, lr):
    pytest.importorskip("keras", reason="Keras tests need pytest-modelgate[tensorflow]")
    from pytest_modelgate.train import run_finetune

    run = run_finetune(_keras_net, quadrants, epochs=6, freeze=freeze, lr=lr, batch_size=32,
                       weights=None, device="cpu", threshold="train")
    _check_record(run, quadrants)
    assert run.config["framework"] == "keras"
    assert not np.allclose(run.probabilities.sum(axis=1), 1)
    assert any(n.startswith("threshold='train': per class") for n in run.notes)
    first, last = run.history[0], run.history[-1]
    assert last.loss < first.loss and last.test_accuracy > 0.7
    assert 0 <= last.train_accuracy <= 1
    # The tuned thresholds call the test split better than chance.
    assert np.mean(run.y_pred == run.y_true) > 0.8
