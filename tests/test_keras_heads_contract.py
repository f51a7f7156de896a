"""Head replacement on real ``keras.applications`` architectures (random init): one per
family, as a name (built without top, a Dense head added) and as a user's model with its
own top (the head found by structure and replaced)."""

from __future__ import annotations

import pytest

from pytest_modelgate.train import run_finetune

keras = pytest.importorskip("keras", reason="Keras tests need pytest-modelgate[tensorflow]")

from pytest_modelgate.frameworks.keras.heads import add_or_replace_head, verify_width  # noqa: E402
from pytest_modelgate.frameworks.keras.zoo import load_model  # noqa: E402

# One architecture per family; together about 15 s to build twice on 2 cores. The larger
# members of each family share their head code.
FAMILIES = {
    "ConvNeXtTiny": "convnext_tiny_head_dense", "DenseNet121": "predictions",
    "EfficientNetB0": "predictions", "EfficientNetV2B0": "predictions",
    "InceptionResNetV2": "predictions", "InceptionV3": "predictions",
    "MobileNet": "conv_preds", "MobileNetV2": "predictions", "MobileNetV3Small": "logits",
    "NASNetMobile": "predictions", "ResNet50": "predictions", "ResNet50V2": "predictions",
    "VGG16": "predictions", "Xception": "predictions",
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_head_of_each_family(name):
    loaded = load_model(f"keras:{name}", weights=None, image_size=96)
    model, info = add_or_replace_head(loaded.model, 7, None, headless=True)
    verify_width(model, None, 7, info)
    assert model.output_shape == (None, 7) and info.path == "modelgate_head"

    with_top = getattr(keras.applications, name)(weights=None)
    model, info = add_or_replace_head(with_top, 7, None, headless=False)
    verify_width(model, None, 7, info)
    assert model.output_shape == (None, 7)
    assert (info.path, info.found_by) == (FAMILIES[name], "the layer that makes the output")
    assert info.in_features == with_top.get_layer(info.path).input.shape[-1]


def test_a_convolutional_head_trains_head_only_and_in_full(digits_small):
    """MobileNet's own top ends in a 1x1 convolution, a reshape and a softmax."""
    def mobilenet_with_top():
        return keras.applications.MobileNet(alpha=0.25, weights=None,
                                            input_shape=(32, 32, 3))

    for freeze in ("backbone", "none"):
        run = run_finetune(mobilenet_with_top, digits_small, epochs=1, freeze=freeze)
        assert run.config["head_path"] == "conv_preds"
        assert run.probabilities.shape == (len(digits_small.test), 3)
