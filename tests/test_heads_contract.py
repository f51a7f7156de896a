"""The head contract for every torchvision classification architecture and a set of timm
models: the head is found without a hint, replaced, and a forward pass gives the new width.
(timm's own test_models.py checks its get_classifier/reset_classifier contract the same
way.) Random weights (weights=None): nothing is downloaded."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from pytest_modelgate.frameworks.torch.heads import replace_head, verify_width  # noqa: E402

TORCHVISION = torchvision.models.list_models(module=torchvision.models)
TIMM = ["convnext_atto", "resnet18", "vit_tiny_patch16_224", "efficientnet_b0",
        "mobilenetv3_small_050", "regnetx_002", "deit_tiny_patch16_224"]


def _input_size(name: str) -> int:
    if name.startswith(("vit", "swin", "maxvit", "deit")):
        return 224   # fixed-size position embeddings or windows
    return 96 if name.startswith("inception") else 64


def _check(model, name: str) -> str:
    size = _input_size(name)
    batch = 2   # inception_v3's BatchNorm in train mode needs more than one sample
    sample = torch.zeros(batch, 3, size, size)
    info = replace_head(model, 7)
    verify_width(model, sample, 7, info)
    return info.path


def test_every_torchvision_classifier_is_listed():
    assert len(TORCHVISION) >= 80 and "squeezenet1_0" in TORCHVISION


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_head_contract(name):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init notices
        model = torchvision.models.get_model(name, weights=None)
    with torch.no_grad():
        path = _check(model, name)
    assert path.split(".")[0] in ("fc", "classifier", "heads", "head")


@pytest.mark.parametrize("name", TIMM)
def test_timm_head_contract(name):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False)
    expected = model.get_classifier()
    with torch.no_grad():
        path = _check(model, name)
    assert model.get_classifier() is not expected   # replaced where timm looks for it
    assert model.get_classifier().out_features == 7, path
