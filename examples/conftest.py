"""Data for the example gates: scikit-learn's handwritten digits, real 8x8 scans."""

import pytest

from pytest_modelgate.data import load_digits


@pytest.fixture(scope="session")
def digits():
    """1,797 digit images in a seeded, stratified 70/30 split (1,258 train, 539 test)."""
    return load_digits(test_fraction=0.3, seed=0)
