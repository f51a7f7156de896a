from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pytest_modelgate import assert_no_leakage
from pytest_modelgate.data import ImageSet, from_folder
from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.leakage import LeakPair, find_leaks


def _set(images, name):
    return ImageSet(np.asarray(images), [0] * len(images), ("x",), name=name)


def test_exact_and_flipped_copies_are_found():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    train = _set(x[:3], "train")
    test = _set(np.stack([x[1], x[0][:, ::-1], x[3]]), "test")
    assert find_leaks(train, test) == [LeakPair(1, 0, "exact"), LeakPair(0, 1, "flipped")]


def test_clean_split_has_no_leaks(digits_small):
    assert find_leaks(digits_small.train, digits_small.test) == []
    assert_no_leakage(digits_small.train, digits_small.test)


def test_reencoded_copy_is_caught_and_named(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    for i, cls in enumerate(("a", "b")):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.fromarray(x[i]).save(tmp_path / "train" / cls / f"{i}.png")
    (tmp_path / "test" / "a").mkdir(parents=True)
    Image.fromarray(x[0]).save(tmp_path / "test" / "a" / "copy.bmp")   # same pixels, other format
    Image.fromarray(x[2]).save(tmp_path / "test" / "a" / "new.png")
    splits = from_folder(tmp_path)
    with pytest.raises(AssertionError) as info:
        assert_no_leakage(splits.train, splits.test)
    message = str(info.value)
    assert "1 of 2 test images also sit in train (1 pairs)" in message
    assert "copy.bmp  ==  " in message and "0.png  (exact)" in message
    assert "Fix: remove these images" in message


def test_long_lists_are_cut():
    x = np.random.default_rng(2).integers(0, 256, size=(15, 8, 8), dtype=np.uint8)
    with pytest.raises(AssertionError, match=r"\.\.\. and 5 more"):
        assert_no_leakage(_set(x, "train"), _set(x, "test"))


def test_bad_arguments():
    with pytest.raises(ModelGateError, match="train must be an ImageSet"):
        assert_no_leakage(np.zeros((2, 8, 8)), None)
