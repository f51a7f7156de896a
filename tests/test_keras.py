"""Keras models through the same fine-tuning, heads, race and cache as PyTorch models.

Everything here runs with ``weights=None`` (random init) on a fresh machine, except the last
tests, which need the real Keras MobileNet (alpha 0.25) ImageNet files from
``../shared/data/keras-weights`` (conftest seeds a temporary Keras home with them) and skip
with a reason where they are absent.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pytest_modelgate import assert_accuracy_above, assert_faster_than_scratch
from pytest_modelgate.cache import RunCache
from pytest_modelgate.errors import AdapterUnavailableError, HeadNotFoundError, ModelGateError
from pytest_modelgate.frameworks import framework_for
from pytest_modelgate.train import run_finetune

from .conftest import KERAS_HOME

keras = pytest.importorskip("keras", reason="Keras tests need pytest-modelgate[tensorflow]")

MOBILENET = "keras:MobileNet(alpha=0.25)"
# 32 px: the smallest input MobileNet takes. The device is pinned: these tests check CPU
# facts (the device, exact repeats), and the suite must pass on a GPU machine too.
SMALL = dict(image_size=32, batch_size=64, seed=0, device="cpu")


def small_sequential(classes: int = 5, activation: bool = True):
    """A user's model: its head is a Dense layer called ``fc``, then a softmax."""
    layers = [keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255),
              keras.layers.Conv2D(8, 3, activation="relu"),
              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes, name="fc")]
    return keras.Sequential(layers + ([keras.layers.Softmax()] if activation else []),
                            name="digits_net")


def test_a_keras_applications_name_trains_a_new_head_on_features_computed_once(digits_small):
    run = run_finetune(MOBILENET, digits_small, epochs=2, weights=None, **SMALL)
    assert run.model == MOBILENET and run.device == "cpu" and not run.pretrained
    assert run.config["head_path"] == "modelgate_head"
    assert run.config["head_found_by"] == "keras.applications without top"
    assert run.probabilities.shape == (len(digits_small.test), 3)
    assert np.allclose(run.probabilities.sum(axis=1), 1, atol=1e-5)
    assert [h.epoch for h in run.history] == [1, 2]
    assert 0 < run.setup_seconds <= run.history[0].seconds <= run.seconds
    assert run.notes[0].startswith("head-only: backbone features computed once")
    assert any(n.startswith("warm-up (step functions traced, then reset)") for n in run.notes)
    # The history's last test accuracy is the accuracy of the predictions returned.
    assert run.history[-1].test_accuracy == pytest.approx(run.accuracy)


def test_seeded_keras_runs_repeat_exactly(digits_small):
    kwargs = dict(epochs=2, freeze="none", weights=None, seed=3, device="cpu")
    first = run_finetune(small_sequential, digits_small, lr=1e-2, **kwargs)
    second = run_finetune(small_sequential, digits_small, lr=1e-2, **kwargs)
    assert [h.loss for h in first.history] == [h.loss for h in second.history]
    assert np.array_equal(first.probabilities, second.probabilities)


def test_a_users_model_keeps_its_body_and_gets_a_new_head(digits_small):
    model = small_sequential()
    before = [w.copy() for w in model.get_weights()]
    run = run_finetune(model, digits_small, epochs=3, freeze="none", lr=1e-2, seed=0)
    assert run.config["head_path"] == "fc"
    assert run.config["head_found_by"] == "the layer that makes the output"
    assert run.probabilities.shape[1] == 3
    if run.device == "cpu":
        from pytest_modelgate.frameworks import cpu_name

        assert run.config["device_name"] == cpu_name()
    assert run.config["autocast_dtype"] is None and run.config["channels_last"] is True
    # The user's model is copied, never changed.
    assert model.output_shape == (None, 5)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert_accuracy_above(run, 0.5)


def test_freeze_n_trains_the_last_n_layers_with_weights(digits_small):
    run = run_finetune(MOBILENET, digits_small, epochs=1, freeze=2, weights=None, **SMALL)
    assert run.notes[0] == ("trains the head and the last 2 layers with weights: "
                            "conv_pw_13, conv_pw_13_bn")
    with pytest.raises(ModelGateError, match=r"freeze=500 asks to train the last 500 layers "
                                             r"with weights, but keras:MobileNet\(alpha=0.25\) "
                                             r"has \d+"):
        run_finetune(MOBILENET, digits_small, epochs=1, freeze=500, weights=None, **SMALL)


def test_heads_that_cannot_be_found_say_how_to_name_them(digits_small):
    no_dense = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3),
                                 keras.layers.GlobalAveragePooling2D()], name="convs")
    with pytest.raises(HeadNotFoundError, match=r"could not find the classifier head of convs.*"
                                                r"pass head='<name of the final Dense layer>' "
                                                r"\(its Dense layers and 1x1 classifier "
                                                r"convolutions: none\)"):
        run_finetune(no_dense, digits_small, epochs=1)
    with pytest.raises(HeadNotFoundError, match=r"head='nope' \(head=\) is not a layer of "
                                                r"digits_net.*convolutions: fc"):
        run_finetune(small_sequential(), digits_small, epochs=1, head="nope")
    model = small_sequential()
    conv_name = model.layers[1].name
    with pytest.raises(HeadNotFoundError, match=f"head='{conv_name}'.*is a Conv2D, not a Dense"):
        run_finetune(model, digits_small, epochs=1, head=conv_name)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(3)

        def call(self, x):
            return self.fc(keras.ops.mean(x, axis=(1, 2)))

    with pytest.raises(ModelGateError, match="cannot copy the Keras model|subclassed Keras"):
        run_finetune(Subclassed(), digits_small, epochs=1)


def test_head_named_by_the_user(digits_small):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, name="hidden"),
                              keras.layers.Dense(4, name="logits"),
                              keras.layers.Dense(4, name="calibration")], name="two_heads")
    run = run_finetune(model, digits_small, epochs=1, head="logits")
    assert run.config["head_path"] == "logits" and run.config["head_found_by"] == "head="


@pytest.mark.parametrize(("model", "message"), [
    ("keras:MobileNett", r"unknown keras.applications model 'MobileNett'; did you mean "
                         r"MobileNet"),
    ("keras:MobileNet(alpha=x)", r"keyword arguments as literals.*"
                                 r"'keras:MobileNet\(alpha=0.25\)'"),
    ("keras:MobileNet(include_top=True)", r"include_top are set by finetune"),
    ("keras:MobileNet(alpha=0.3)", r"model='keras:MobileNet\(alpha=0.3\)'.*alpha"),
])
def test_bad_keras_names(digits_small, model, message):
    with pytest.raises(ModelGateError, match=message):
        run_finetune(model, digits_small, epochs=1, image_size=32)


def test_bad_keras_arguments(digits_small, tmp_path):
    with pytest.raises(ModelGateError, match=r"backbone_lr=0.0001: Keras' optimizers take "
                                             r"one learning rate"):
        run_finetune(small_sequential(), digits_small, freeze="none", backbone_lr=1e-4)
    with pytest.raises(ModelGateError, match=r"device='mps' is PyTorch's"):
        run_finetune(small_sequential(), digits_small, device="mps")
    with pytest.raises(ModelGateError, match=r"compile=True is torch.compile, for PyTorch "
                                             r"models; Keras compiles"):
        run_finetune(small_sequential(), digits_small, compile=True, device="cpu")
    with pytest.raises(ModelGateError, match=r"weights=.*missing.weights.h5.*no such weights"):
        run_finetune(small_sequential(), digits_small, weights=tmp_path / "missing.weights.h5")
    with pytest.raises(ModelGateError, match=r"model=.*gone.keras.*no such file"):
        run_finetune(str(tmp_path / "gone.keras"), digits_small)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ModelGateError, match=r"is not a Keras model file Keras can load"):
        run_finetune(str(broken), digits_small)
    with pytest.raises(ModelGateError, match="pass mean= and std= together"):
        run_finetune(small_sequential(), digits_small, mean=(0.5,))


def test_a_factory_is_routed_by_what_it_builds(digits_small):
    assert framework_for(small_sequential).name == "keras"
    assert framework_for(lambda: __import__("torch").nn.Linear(2, 2)).name == "torch"
    assert framework_for("keras:MobileNet").name == "keras"
    assert framework_for("model.keras").name == "keras"
    assert framework_for("resnet18").name == "torch"
    run = run_finetune(small_sequential, digits_small, epochs=1)
    assert run.model == "small_sequential"


def test_saved_models_and_weights_files_load(digits_small, tmp_path):
    model = small_sequential()
    model.save(tmp_path / "net.keras")
    model.save_weights(tmp_path / "net.weights.h5")
    from_file = run_finetune(str(tmp_path / "net.keras"), digits_small, epochs=1)
    assert from_file.model == "net.keras" and from_file.config["head_path"] == "fc"
    with_weights = run_finetune(small_sequential(), digits_small, epochs=1,
                                weights=tmp_path / "net.weights.h5")
    assert with_weights.pretrained
    assert np.array_equal(with_weights.probabilities, from_file.probabilities)


def test_unchanged_keras_runs_come_from_the_cache(digits_small, tmp_path):
    cache = RunCache(tmp_path / "runs")
    kwargs = dict(epochs=1, freeze="none", weights=None, cache=cache, **SMALL)
    first = run_finetune(MOBILENET, digits_small, **kwargs)
    scratch = first.scratch_runner(target_accuracy=0.99, epochs=1)
    assert (cache.hits, cache.stored) == (0, 2) and not first.cached and not scratch.cached
    second = run_finetune(MOBILENET, digits_small, **kwargs)
    assert second.cached and np.array_equal(second.probabilities, first.probabilities)
    assert second.scratch_runner(target_accuracy=0.99, epochs=1).cached
    assert (cache.hits, cache.stored) == (2, 2)
    # Weights are stored as arrays, never pickled: every blob is JSON or an .npz that
    # loads without pickle.
    for blob in (tmp_path / "runs" / "blobs").rglob("*"):
        if blob.is_file() and blob.read_bytes()[:1] != b"{":
            with np.load(blob, allow_pickle=False) as arrays:
                assert all(arrays[k].dtype != object for k in arrays.files)


def test_the_leakage_embedding_stage_refuses_a_keras_model(digits_small):
    from pytest_modelgate.leakage import find_leaks

    run = run_finetune(small_sequential(), digits_small, epochs=1)
    for model in (run, MOBILENET, small_sequential()):
        with pytest.raises(ModelGateError, match="the embedding stage runs PyTorch models, "
                                                 "and this is a Keras model; pass "
                                                 "embeddings='efficientnet_lite0'"):
            find_leaks(digits_small.train, digits_small.test, embeddings=model)


def test_a_missing_imagenet_file_names_the_file_and_the_folder(digits_small):
    with pytest.raises(ModelGateError) as info:
        run_finetune("keras:MobileNetV2(alpha=0.35)", digits_small, image_size=96)
    message = str(info.value)
    assert "pretrained weights for 'keras:MobileNetV2(alpha=0.35)' at 96 px are not in the " \
           "Keras cache: place mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top" \
           ".h5 in " in message
    assert str(KERAS_HOME / "models") in message and "weights=None" in message


def test_without_tensorflow_a_keras_model_names_the_extra():
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from pytest_modelgate.frameworks.keras.zoo import load_model\n"
            "from pytest_modelgate.errors import AdapterUnavailableError\n"
            "try:\n    load_model('keras:MobileNet')\n"
            "except AdapterUnavailableError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ("Keras models need TensorFlow and Keras 3: pip install "
                                  "'pytest-modelgate[tensorflow]'")
    assert issubclass(AdapterUnavailableError, ImportError)


# --- real ImageNet weights (../shared/data/keras-weights) --------------------------------

def _need(*names: str) -> None:
    missing = [n for n in names if not (KERAS_HOME / "models" / n).is_file()]
    if missing:
        pytest.skip(f"needs the real Keras ImageNet weights {', '.join(missing)} (from "
                    "../shared/data/keras-weights, or the folder $MODELGATE_KERAS_WEIGHTS names)")


def test_pretrained_mobilenet_learns_digits_faster_than_from_scratch(digits_small):
    _need("mobilenet_2_5_224_tf_no_top.h5")
    run = run_finetune(MOBILENET, digits_small, epochs=5, lr=1e-2, image_size=64,
                       batch_size=32, seed=0)
    assert run.pretrained
    assert_accuracy_above(run, 0.9)
    assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=2.0, scratch_epochs=3)


def test_imagenet_features_are_keras_own(digits_small):
    _need("mobilenet_2_5_128_tf_no_top.h5")
    from pytest_modelgate.frameworks.keras.zoo import load_model, weights_hash

    loaded = load_model(MOBILENET, image_size=128)
    own = keras.applications.MobileNet(
        alpha=0.25, include_top=False, pooling="avg", input_shape=(128, 128, 3),
        weights=str(KERAS_HOME / "models" / "mobilenet_2_5_128_tf_no_top.h5"))
    assert weights_hash(loaded.model) == weights_hash(own)
    assert loaded.preprocess.function.endswith("mobilenet.preprocess_input")
