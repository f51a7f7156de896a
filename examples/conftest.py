"""Data for the example gates: scikit-learn's handwritten digits, real 8x8 scans."""

import os
from pathlib import Path

import pytest

from pytest_modelgate.data import load_digits


@pytest.fixture(scope="session")
def digits():
    """1,797 digit images in a seeded, stratified 70/30 split (1,258 train, 539 test)."""
    return load_digits(test_fraction=0.3, seed=0)


# Keras' MobileNet (alpha 0.25) ImageNet weights without top, the file Keras reads for
# inputs other than 128, 160 and 192 px. Keras does not ship it in a package: offline, it
# must already sit in the Keras cache.
KERAS_WEIGHTS = "mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture(scope="session")
def keras_imagenet():
    """Skips the Keras gate, naming the file, where its ImageNet weights are not cached."""
    pytest.importorskip("keras", reason="the Keras gate needs pytest-modelgate[tensorflow]")
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    if not (home / "models" / KERAS_WEIGHTS).is_file():
        pytest.skip(f"the Keras gate needs {KERAS_WEIGHTS} in {home / 'models'} (Keras' "
                    "MobileNet alpha 0.25 ImageNet weights; no network here to fetch them)")
