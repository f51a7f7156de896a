"""Shared test data: real digit scans from scikit-learn, small enough for CPU unit tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# from_folder keeps decoded splits in a cache (by default under ~/.cache): tests, and the
# pytester runs they start, keep theirs in a temporary folder instead.
os.environ.setdefault("MODELGATE_ARRAY_CACHE", tempfile.mkdtemp(prefix="modelgate-arrays-"))

# Real Keras ImageNet weights no registry ships: ../shared/data/keras-weights (CI has it), or
# the folder $MODELGATE_KERAS_WEIGHTS names. Keras reads its cache folder once, when it is
# imported, so every test (and pytester run) gets a temporary Keras home now, seeded with
# those files where they exist: the tests never read or fill the user's ~/.keras.
KERAS_WEIGHTS = Path(os.environ.get("MODELGATE_KERAS_WEIGHTS") or
                     Path(__file__).resolve().parents[2] / "shared" / "data" / "keras-weights")
_home = Path(os.environ.get("MODELGATE_TEST_KERAS_HOME") or
             tempfile.mkdtemp(prefix="modelgate-keras-"))  # inherited by workers and pytester
(_home / "models").mkdir(parents=True, exist_ok=True)
if KERAS_WEIGHTS.is_dir():
    for _file in KERAS_WEIGHTS.iterdir():
        if _file.suffix in (".h5", ".json") and not (_home / "models" / _file.name).exists():
            shutil.copy(_file, _home / "models" / _file.name)
os.environ["KERAS_HOME"] = os.environ["MODELGATE_TEST_KERAS_HOME"] = str(_home)
KERAS_HOME = _home

from pytest_modelgate.data import Splits, stratified_split


@pytest.fixture(scope="session")
def digits_small() -> Splits:
    """Three digit classes (0, 1, 7), 8x8 scans, 70/30 split: about 380 train, 160 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = np.isin(bunch.target, [0, 1, 7])
    images = np.round(bunch.images[keep] * (255 / 16)).astype(np.uint8)
    remap = {0: 0, 1: 1, 7: 2}
    labels = np.array([remap[t] for t in bunch.target[keep]])
    return stratified_split(images, labels, class_names=["zero", "one", "seven"],
                            test_fraction=0.3, seed=0)


def tiny_cnn(num_classes: int = 10):
    """A small grayscale CNN whose head is the last element of an nn.Sequential."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, num_classes),
    )


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server on 127.0.0.1 for the session (see tests/s3server.py)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from .s3server import s3_server

    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_cache_url(s3_endpoint, monkeypatch) -> str:
    """A fresh ``s3://`` prefix on the test server, with the client's endpoint and
    credentials set in the environment as a user sets them (pytester runs inherit them)."""
    import uuid

    from .s3server import BUCKET, client_environment

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in client_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}/cache"
