"""The boundary between the framework-neutral orchestration and the framework adapters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_modelgate.frameworks import Framework, framework_for


def test_the_keras_adapter_fulfils_the_protocol():
    adapter = framework_for("keras:MobileNet(alpha=0.25)")
    assert isinstance(adapter, Framework) and adapter.name == "keras"
    assert adapter.identity("keras:MobileNet(alpha=0.25)", None) == {
        "name": "keras:MobileNet", "kwargs": [("alpha", 0.25)], "init": "random"}
    assert adapter.identity("keras:MobileNet", "DEFAULT") is None  # loaded and hashed
    assert adapter.device_fingerprint("cpu") == {"requested": "cpu"}
    assert "keras" in adapter.versions() and "torch" not in adapter.versions()


def test_the_keras_adapter_refuses_the_embedding_stage_before_loading_anything():
    from pytest_modelgate.errors import ModelGateError

    adapter = framework_for("keras:MobileNet")
    with pytest.raises(ModelGateError, match="the embedding stage runs PyTorch models"):
        adapter.feature_extractor(lambda size: pytest.fail("loaded"), 64)


def test_the_torch_adapter_fulfils_the_protocol():
    adapter = framework_for("resnet18")
    assert isinstance(adapter, Framework) and adapter.name == "torch"
    # A named model's identity needs no torch: unchanged cached runs stay framework-free.
    assert adapter.identity("efficientnet_lite0", "DEFAULT")["name"] == "efficientnet_lite0"
    assert adapter.device_fingerprint("cpu") == {"requested": "cpu"}
    assert set(adapter.versions()) <= {"torch", "torchvision", "timm"}
    assert "torch" in adapter.versions()
    assert adapter.resolve_device("cpu") == "cpu"


def test_adapters_are_found_by_name_and_the_default_is_torch():
    from pytest_modelgate.frameworks import default, named

    assert named("keras").name == "keras" and default().name == "torch"
    with pytest.raises(KeyError, match="no framework adapter named 'jax'"):
        named("jax")


def test_the_orchestration_and_adapter_packages_import_no_framework():
    code = ("import sys, pytest_modelgate.train, pytest_modelgate.frameworks.torch, "
            "pytest_modelgate.frameworks.keras, pytest_modelgate.train.config; "
            "from pytest_modelgate.frameworks import framework_for; "
            "a, b = framework_for('keras:MobileNet'), framework_for('resnet18'); "
            "a.versions(), b.versions(), a.device_fingerprint('auto'), "
            "b.device_fingerprint('auto'); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_adapters_are_found_as_subpackages_the_default_last():
    from pytest_modelgate.frameworks import adapters

    assert [a.name for a in adapters()] == ["keras", "torch"]
    assert all(isinstance(a, Framework) for a in adapters())


def test_triton_is_imported_just_before_tensorflow_and_not_before():
    """Loading the plugin leaves triton alone (it took 0.15-0.26 s of every plain pytest
    run); the first import of TensorFlow brings it in first (the other order crashes)."""
    import importlib.util

    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("tensorflow") \
            is None:
        pytest.skip("needs both triton (PyTorch's CUDA wheels) and tensorflow installed")
    code = ("import sys; from pytest_modelgate.frameworks import "
            "import_triton_before_tensorflow as f; f(); f(); "
            "print('triton' in sys.modules); import tensorflow; "
            "names = list(sys.modules); "
            "print(names.index('triton') < names.index('tensorflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]
