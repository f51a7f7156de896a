"""The leakage gate on folders of real photos: tiles of scikit-learn's two sample photos.

The digits are 8x8 scans, too small for the near-duplicate stages (distinct scans by one
writer look alike at that size), so these gates show the stages on photos: the perceptual
hashes, the aligned stage (copies cut, shifted and recoloured at once), and what a caught
leak looks like in the report.
"""

import shutil

import pytest
from PIL import Image, ImageEnhance, ImageOps

from pytest_modelgate import assert_no_leakage


@pytest.mark.modelgate
def test_photo_split_is_clean(photos):
    """No test photo may sit in train: the same pixels, a mirror, or a near-duplicate
    (re-encoded, resized, recoloured, noisy, cut, zoomed, shifted or turned a little)."""
    assert_no_leakage(photos / "train", photos / "test")


@pytest.mark.modelgate
def test_edited_copies_are_caught(photos, tmp_path):
    """Four test photos planted in a copy of train, edited as copies in real datasets
    are: saved as JPEG at twice the size, mirrored and brightened, turned to greyscale, and
    cut 10% tighter off centre, brightened and saved as JPEG, all at once. The gate must
    fail naming all four; the report shows each pair side by side."""
    train = shutil.copytree(photos / "train", tmp_path / "train")
    first, second, third, _, fourth = sorted((photos / "test").rglob("*.png"))[:5]
    with Image.open(first) as im:
        im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC).save(
            train / first.parent.name / "copy-resized.jpg", quality=75)
    with Image.open(second) as im:
        ImageEnhance.Brightness(ImageOps.mirror(im)).enhance(1.2).save(
            train / second.parent.name / "copy-mirrored-brighter.png")
    with Image.open(third) as im:
        im.convert("L").save(train / third.parent.name / "copy-greyscale.png")
    with Image.open(fourth) as im:
        tighter = im.convert("RGB").crop((2, 5, im.width - 5, im.height - 2))
        ImageEnhance.Brightness(tighter.resize(im.size, Image.Resampling.BICUBIC)).enhance(
            1.1).save(train / fourth.parent.name / "copy-cut-brighter.jpg", quality=80)
    with pytest.raises(AssertionError) as caught:
        assert_no_leakage(train, photos / "test")
    message = str(caught.value)
    assert ("4 of 30 test images also sit in train (4 pairs: 1 by aligned, 3 by phash)"
            in message)
    for copy in ("copy-resized.jpg", "copy-mirrored-brighter.png", "copy-greyscale.png",
                 "copy-cut-brighter.jpg"):
        assert copy in message
