"""Data for the example gates: scikit-learn's handwritten digits, real 8x8 scans."""

import os
from pathlib import Path

import pytest

from pytest_modelgate.data import from_manifest, load_digits


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """1,797 digit images in a seeded, stratified 70/30 split (1,258 train, 539 test), kept
    as teams keep data: PNG files and a manifest, ``digits.csv``, with one row per image
    (``path,label,split,ink``). ``ink`` is what a team would record of each scan: ``heavy``
    where more than 24 of its 64 pixels are inked, else ``light``; slices gate on it."""
    from PIL import Image

    split = load_digits(test_fraction=0.3, seed=0)
    root = tmp_path_factory.mktemp("digits")
    rows = ["path,label,split,ink"]
    for part in (split.train, split.test):
        for i, (image, label) in enumerate(zip(part.images, part.labels, strict=True)):
            path = f"{part.name}/{part.class_names[label]}/{i:04d}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / path)
            ink = "heavy" if int((image > 64).sum()) > 24 else "light"
            rows.append(f"{path},{part.class_names[label]},{part.name},{ink}")
    (root / "digits.csv").write_text("\n".join(rows) + "\n")
    return from_manifest(root / "digits.csv")


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


PHOTO_TILE = 64  # pixels a side: 60 tiles from each photo


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of real photos: scikit-learn's two sample photos (a temple in China, a
    flower) cut into 120 tiles of 64x64, written as PNG files in a seeded split,
    ``train/<photo>/r<row>c<col>.png`` (90) and ``test/<photo>/...`` (30)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    root = tmp_path_factory.mktemp("photos")
    sample = load_sample_images()
    rng = np.random.default_rng(0)
    for path, image in zip(sample.filenames, sample.images, strict=True):
        rows, cols = image.shape[0] // PHOTO_TILE, image.shape[1] // PHOTO_TILE
        for k, tile in enumerate(rng.permutation(rows * cols)):
            r, c = divmod(int(tile), cols)
            folder = root / ("test" if k % 4 == 0 else "train") / Path(path).stem
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[r * PHOTO_TILE:(r + 1) * PHOTO_TILE,
                                  c * PHOTO_TILE:(c + 1) * PHOTO_TILE]).save(
                folder / f"r{r}c{c}.png")
    return root
