"""Every data source gives the same Splits for the same pictures (one contract test over
folders, manifests, torch, tf and Hugging Face datasets and arrays), and each source's bad
input is a ModelGateError naming the row, the column and the fix."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_modelgate.data import (
    content_id,
    from_arrays,
    from_folder,
    from_hf,
    from_manifest,
    from_tf,
    stratified_split,
)
from pytest_modelgate.errors import AdapterUnavailableError, ModelGateError

CLASSES = ("ants", "bees")
COUNTS = {"train": 3, "test": 2}


def _pictures(seed: int = 0) -> list[tuple[str, str, int, np.ndarray, str]]:
    """(split, class, index, RGB pixels, camera) of the contract's small picture set."""
    rng = np.random.default_rng(seed)
    return [(split, cls, i, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), f"cam{i % 2}")
            for split, n in COUNTS.items() for cls in CLASSES for i in range(n)]


def _tree(root: Path) -> list[tuple[str, str, int, np.ndarray, str]]:
    pictures = _pictures()
    for split, cls, i, pixels, _ in pictures:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return pictures


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def _manifest_rows(pictures) -> list[list[str]]:
    return [["path", "label", "split", "camera"]] + [
        [f"{split}/{cls}/{i}.png", cls, split, camera]
        for split, cls, i, _, camera in pictures]


@pytest.fixture
def hf(tmp_path, monkeypatch):
    """``datasets``, offline, its cache under tmp_path: nothing read from the hub or
    written to ~."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return pytest.importorskip("datasets")


def _keras():
    pytest.importorskip("tensorflow")
    return pytest.importorskip("keras")


def _from_folder(root, pictures, request):
    return from_folder(root, cache=root.parent / "arrays"), False


def _from_csv(root, pictures, request):
    path = _write_csv(root / "manifest.csv", _manifest_rows(pictures))
    return from_manifest(path, cache=root.parent / "arrays"), True


def _from_parquet(root, pictures, request):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    header, *rows = _manifest_rows(pictures)
    pq.write_table(pa.table({c: [r[k] for r in rows] for k, c in enumerate(header)}),
                   root / "manifest.parquet")
    return from_manifest(root / "manifest.parquet", cache=False), True


def _from_torch(root, pictures, request):
    datasets = pytest.importorskip("torchvision.datasets")
    from pytest_modelgate.data import from_torch

    return from_torch(datasets.ImageFolder(root / "train"),
                      datasets.ImageFolder(root / "test")), False


def _from_tf(root, pictures, request):
    keras = _keras()
    load = keras.utils.image_dataset_from_directory
    return from_tf(load(root / "train", image_size=(8, 8), batch_size=2, seed=0),
                   load(root / "test", image_size=(8, 8), label_mode="categorical",
                        shuffle=False)), False


def _from_hf_imagefolder(root, pictures, request):
    datasets = request.getfixturevalue("hf")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(root),
                                   cache_dir=str(root.parent / "hf-cache"))
    return from_hf(loaded), False


def _from_hf_dict(root, pictures, request):
    datasets = request.getfixturevalue("hf")

    def split(name):
        rows = [p for p in pictures if p[0] == name]
        ds = datasets.Dataset.from_dict({
            "image": [Image.fromarray(p[3]) for p in rows],
            "label": [CLASSES.index(p[1]) for p in rows],
            "camera": [p[4] for p in rows]})
        return ds.cast_column("image", datasets.Image()).cast_column(
            "label", datasets.ClassLabel(names=list(CLASSES)))

    return from_hf(datasets.DatasetDict(train=split("train"), test=split("test"))), True


def _from_arrays(root, pictures, request):
    def part(name):
        rows = [p for p in pictures if p[0] == name]
        return np.stack([p[3] for p in rows]), [CLASSES.index(p[1]) for p in rows]

    return from_arrays(*part("train"), *part("test"), class_names=CLASSES), False


SOURCES = {"folder": _from_folder, "manifest-csv": _from_csv,
           "manifest-parquet": _from_parquet, "torch": _from_torch, "tf": _from_tf,
           "hf-imagefolder": _from_hf_imagefolder, "hf-dict": _from_hf_dict,
           "arrays": _from_arrays}


@pytest.mark.parametrize("source", list(SOURCES))
def test_every_source_gives_the_same_splits(tmp_path, request, source):
    root = tmp_path / "data"
    pictures = _tree(root)
    splits, has_attributes = SOURCES[source](root, pictures, request)
    assert splits.class_names == CLASSES and not splits.multilabel
    for name in COUNTS:
        part = getattr(splits, name)
        expected = sorted((content_id(p[3]), CLASSES.index(p[1]), p[4])
                          for p in pictures if p[0] == name)
        # Identical pixels, identical ids: the ids name the pictures whatever the source.
        got = sorted(zip(part.ids, part.labels.tolist(),
                         part.attributes.get("camera", [None] * len(part)), strict=True))
        assert [(i, y) for i, y, _ in got] == [(i, y) for i, y, _ in expected]
        if has_attributes:
            assert list(part.attributes) == ["camera"]
            assert [c for *_, c in got] == [c for *_, c in expected]
        else:
            assert part.attributes == {}
        for k, img in enumerate(part.images):
            assert content_id(img) == part.ids[k]


# from_manifest --------------------------------------------------------------------------

def _pngs(folder: Path, n: int, size: int = 8, seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    return [f"{folder.name}/{i}.png" for i in range(n)]


def _manifest(tmp_path, rows, header=("path", "label", "split"), name="m.csv") -> Path:
    return _write_csv(tmp_path / name, [list(header), *rows])


def _basic_rows(tmp_path, n=6):
    files = _pngs(tmp_path / "img", n)
    return [[f, "ab"[i % 2], "train" if i < n - 2 else "test"] for i, f in enumerate(files)]


def test_manifest_attributes_are_typed_and_follow_their_rows(tmp_path):
    rows = [r + [str(i), str(i / 2) if i != 1 else "", f"site {i % 3}"]
            for i, r in enumerate(_basic_rows(tmp_path))]
    path = _manifest(tmp_path, rows, ("path", "label", "split", "frame", "lux", "site"))
    splits = from_manifest(path, cache=False)
    train = splits.train.attributes
    assert train["frame"].dtype == np.int64 and train["frame"].tolist() == [0, 1, 2, 3]
    assert np.isnan(train["lux"][1]) and train["lux"][2] == 1.0
    assert splits.test.attributes["site"].tolist() == ["site 1", "site 2"]
    assert splits.test.sources == (str(tmp_path / "img" / "4.png"),
                                   str(tmp_path / "img" / "5.png"))
    with pytest.raises(ValueError):
        train["frame"][0] = 9   # read-only, like the labels


def test_manifest_multilabel_cells_and_empty_cells(tmp_path):
    files = _pngs(tmp_path / "img", 5)
    labels = ["cat|dog", "dog", "", " cat | bird ", "bird|cat|dog"]
    rows = [[f, y, "test" if i == 4 else "train"] for i, (f, y) in enumerate(zip(
        files, labels, strict=True))]
    splits = from_manifest(_manifest(tmp_path, rows), label_sep="|", cache=False)
    assert splits.multilabel and splits.class_names == ("bird", "cat", "dog")
    assert splits.train.labels.tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 1, 0]]
    assert splits.test.labels.tolist() == [[1, 1, 1]]


def test_manifest_paths_written_on_windows(tmp_path):
    rows = [["img\\" + r[0].split("/")[1], *r[1:]] for r in _basic_rows(tmp_path)]
    assert len(from_manifest(_manifest(tmp_path, rows), cache=False).train) == 4


def test_manifest_integer_labels_sort_as_numbers(tmp_path):
    files = _pngs(tmp_path / "img", 6)
    rows = [[f, str([2, 10, 1][i % 3]), "train" if i < 3 else "test"]
            for i, f in enumerate(files)]
    splits = from_manifest(_manifest(tmp_path, rows), cache=False)
    assert splits.class_names == ("1", "2", "10")
    assert splits.train.labels.tolist() == [1, 2, 0]


def test_manifest_split_values_val_and_names_of_ones_own(tmp_path):
    files = _pngs(tmp_path / "img", 6)
    words = ["Train", "train", "VALID", "validation", "test", "test"]
    rows = [[f, "ab"[i % 2], w] for i, (f, w) in enumerate(zip(files, words, strict=True))]
    splits = from_manifest(_manifest(tmp_path, rows), cache=False)
    assert len(splits.train) == 2 and len(splits.val) == 2 and len(splits.test) == 2
    # train and val only: val is the test split, as from_folder does.
    rows = [r for r in rows if r[2] != "test"]
    only = from_manifest(_manifest(tmp_path, rows), cache=False)
    assert only.val is None and len(only.test) == 2
    mine = [[f, "ab"[i % 2], "fit" if i < 4 else "holdout"] for i, f in enumerate(files)]
    path = _manifest(tmp_path, mine, ("file", "class", "stage"))
    for given in (("fit", "holdout"), {"fit": "train", "holdout": "test"}):
        splits = from_manifest(path, image="file", label="class", split="stage",
                               splits=given, cache=False)
        assert (len(splits.train), len(splits.test)) == (4, 2)


def test_manifest_without_a_split_column_splits_by_fraction_with_attributes(tmp_path):
    files = _pngs(tmp_path / "img", 10)
    rows = [[f, "ab"[i % 2], f"cam{i}"] for i, f in enumerate(files)]
    path = _manifest(tmp_path, rows, ("path", "label", "camera"))
    splits = from_manifest(path, test_fraction=0.4, seed=1, cache=False)
    assert (len(splits.train), len(splits.test)) == (6, 4)
    for part in (splits.train, splits.test):
        # Each image keeps its own camera and its own file through the split.
        for source, camera in zip(part.sources, part.attributes["camera"], strict=True):
            assert camera == f"cam{Path(source).stem}"
    again = from_manifest(path, test_fraction=0.4, seed=1, cache=False)
    assert again.test.ids == splits.test.ids


def test_manifest_root_and_parquet_lists(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    files = _pngs(tmp_path / "pics" / "img", 4)
    pq.write_table(pa.table({"path": files, "label": [["x"], ["y"], ["x", "y"], []],
                             "split": ["train", "train", "test", "test"],
                             "frame": [0, 1, 2, 3], "lux": [0.5, None, 1.0, 2.0]}),
                   tmp_path / "m.parquet")
    splits = from_manifest(tmp_path / "m.parquet", root=tmp_path / "pics", cache=False)
    assert splits.multilabel and splits.test.labels.tolist() == [[1, 1], [0, 0]]
    assert splits.train.attributes["frame"].dtype == np.int64
    assert np.isnan(splits.train.attributes["lux"][1])


def test_manifest_cache_keeps_pixels_but_never_stale_labels(tmp_path, monkeypatch):
    import PIL.Image

    rows = [r + ["north"] for r in _basic_rows(tmp_path)]
    header = ("path", "label", "split", "site")
    path = _manifest(tmp_path, rows, header)
    first = from_manifest(path, cache=tmp_path / "cache")
    # The manifest edited: labels and an attribute change, the files do not.
    rows = [[f, "b" if y == "a" else "a", s, "south"] for f, y, s, _ in rows]
    _manifest(tmp_path, rows, header)
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("decoded again"))
    second = from_manifest(path, cache=tmp_path / "cache")
    assert second.train.ids == first.train.ids
    assert second.train.labels.tolist() == (1 - first.train.labels).tolist()
    assert set(second.test.attributes["site"]) == {"south"}


def _error(tmp_path, rows, match, header=("path", "label", "split"), **kwargs):
    with pytest.raises(ModelGateError, match=match):
        from_manifest(_manifest(tmp_path, rows, header), cache=False, **kwargs)


def test_manifest_names_missing_files_by_line(tmp_path):
    rows = _basic_rows(tmp_path)
    rows += [[f"img/gone{i}.png", "a", "train"] for i in range(7)]
    _error(tmp_path, rows, r"m\.csv names 7 image files that do not exist \(column 'path'\): "
           r"line 8: .*gone0\.png; line 9: .*gone1\.png;.* and 2 more; paths are relative "
           r"to .*\(root=\).*pass root=")


def test_manifest_duplicate_rows(tmp_path):
    rows = _basic_rows(tmp_path)
    _error(tmp_path, [*rows, [rows[0][0], "a", "train"]],
           r"m\.csv lists img/0\.png twice, line 2 and line 8 \(column 'path'\); delete one")
    _error(tmp_path, [*rows, ["./" + rows[0][0], "a", "test"]],
           r"lists \./img/0\.png in train \(line 2\) and in test \(line 8\) .*leaks the test "
           r"set into training")


def test_manifest_unknown_and_blank_split_values(tmp_path):
    rows = _basic_rows(tmp_path)
    rows[1][2], rows[2][2], rows[3][2] = "holdout", "", "holdout"
    _error(tmp_path, rows, r"column 'split' holds split values \['holdout', ''\] that are not "
           r"splits \('holdout' at m\.csv line 3, line 5; '\(blank\)' at m\.csv line 4\); "
           r"accepted: test, train, val, valid, validation \(any case\); name every value "
           r"of the column \(a mapping replaces the defaults\): splits=\{'train': 'train', "
           r"'test': 'test', 'holdout': 'test', '': 'train\|test\|val'\}")
    _error(tmp_path, _basic_rows(tmp_path), r"splits= maps values to \['testing'\]",
           splits={"train": "train", "test": "testing"})
    rows = [r[:2] + ["train"] for r in _basic_rows(tmp_path)]
    _error(tmp_path, rows, r"m\.csv has no test rows \(column 'split' holds \['train'\]\)")


def test_manifest_blank_cells(tmp_path):
    rows = _basic_rows(tmp_path)
    rows[2][1] = "  "
    _error(tmp_path, rows, r"m\.csv line 4 \(column 'label'\): no label; every image needs "
           r"its class \(for a multilabel manifest pass label_sep='\|'")
    rows = _basic_rows(tmp_path)
    rows[0][0] = ""
    _error(tmp_path, rows, r"m\.csv line 2 \(column 'path'\): no image path")


def test_manifest_missing_columns_and_split_choices(tmp_path):
    rows = _basic_rows(tmp_path)
    _error(tmp_path, rows, r"m\.csv has no column 'label' \(its columns: 'path', 'class', "
           r"'split'\); pass label='<column>'", header=("path", "class", "split"))
    _error(tmp_path, [r[:2] for r in rows], r"has no column 'split' .*or pass "
           r"test_fraction=", header=("path", "label"))
    _error(tmp_path, rows, r"has a 'split' column and test_fraction=0\.2 was passed",
           test_fraction=0.2)


def test_manifest_empty_files_and_bad_rows(tmp_path):
    _error(tmp_path, [], r"m\.csv is empty: it has no rows under its header \(path, label, "
           r"split\); add one row per image")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(ModelGateError, match=r"blank\.csv is empty.*no header either"):
        from_manifest(tmp_path / "blank.csv")
    rows = _basic_rows(tmp_path)
    rows[1] = rows[1] + ["extra"]
    _error(tmp_path, rows, r"m\.csv line 3 has 4 cells but the header \(line 1\) names 3 "
           r"columns; quote cells that hold a comma")
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ModelGateError, match=r"a manifest is a CSV \(\.csv, \.tsv, \.txt\) "
                                             r"or Parquet"):
        from_manifest(tmp_path / "m.json")


def test_manifest_test_rows_of_a_class_train_lacks_are_named(tmp_path):
    rows = _basic_rows(tmp_path)
    rows[5][1] = "c"
    _error(tmp_path, rows, r"m\.csv line 7 \(column 'label'\): test rows of \['c'\], a class "
           r"no train row has; add train rows of it, or drop those rows")


def test_manifest_mixed_sizes_name_the_rows(tmp_path):
    rows = _basic_rows(tmp_path)
    big = _pngs(tmp_path / "big", 2, size=12)
    rows[1][0] = big[0]
    _error(tmp_path, rows, r"images of mixed sizes in m\.csv: line 2 .*0\.png is \(8, 8, 3\), "
           r"line 3 .*big/0\.png is \(12, 12, 3\); pass size=\(H, W\) to from_manifest")
    rows = _basic_rows(tmp_path)
    rows[4][0], rows[5][0] = big
    _error(tmp_path, rows, r"images of mixed sizes in m\.csv: train \(line 2 .*\) \(8, 8, 3\), "
           r"test \(line 6 .*big/0\.png\) \(12, 12, 3\)")
    assert from_manifest(tmp_path / "m.csv", size=(6, 6), cache=False).test.images.shape[1:] \
        == (6, 6, 3)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "m.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(AdapterUnavailableError, match=r"pip install "
                                                      r"pytest-modelgate\[parquet\]"):
        from_manifest(tmp_path / "m.parquet")


def test_stratified_split_carries_attributes_and_splits_multilabel_rows():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 4, 4), dtype=np.uint8)
    y = np.array([[1, 0], [0, 1], [1, 1]] * 4)
    splits = stratified_split(x, y, class_names=["a", "b"], test_fraction=0.25,
                              attributes={"k": np.arange(12)})
    assert splits.multilabel and len(splits.test) == 3
    assert sorted(map(tuple, splits.test.labels.tolist())) == [(0, 1), (1, 0), (1, 1)]
    for part in (splits.train, splits.test):
        for img, k in zip(part.images, part.attributes["k"], strict=True):
            np.testing.assert_array_equal(img, x[k])
    with pytest.raises(ModelGateError, match=r"attribute 'k' must hold one value per image"):
        stratified_split(x, y, class_names=["a", "b"], attributes={"k": [1]})


# from_tf ---------------------------------------------------------------------------------

def test_from_tf_grayscale_has_from_folders_ids(tmp_path):
    keras = _keras()
    rng = np.random.default_rng(0)
    for split in COUNTS:
        for cls in CLASSES:
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png")
    load = keras.utils.image_dataset_from_directory
    splits = from_tf(*(load(tmp_path / s, image_size=(8, 8), color_mode="grayscale")
                       for s in COUNTS))
    folder = from_folder(tmp_path, cache=False)
    assert splits.train.images.shape == (4, 8, 8)
    assert sorted(splits.test.ids) == sorted(folder.test.ids)


def test_from_tf_bad_datasets(tmp_path):
    keras = _keras()
    _tree(tmp_path)
    (tmp_path / "other" / "wasps").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "other" / "wasps" / "0.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "other" / "0.png")
    (tmp_path / "other" / "ants").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "other" / "ants" / "0.png")

    def load(folder, **kwargs):
        return keras.utils.image_dataset_from_directory(tmp_path / folder, image_size=(8, 8),
                                                        **kwargs)

    with pytest.raises(ModelGateError, match=r"the train dataset yields images without labels "
                                             r"\(label_mode=None\?\); load it with "
                                             r"label_mode='int'"):
        from_tf(load("train", label_mode=None), load("test"))
    with pytest.raises(ModelGateError, match=r"class_names \['ants', 'bees'\] differ from the "
                                             r"test dataset's \['ants', 'wasps'\]"):
        from_tf(load("train"), load("other"))
    with pytest.raises(ModelGateError, match=r"the test dataset yields pixels in -1\.\.1: "
                                             r"from_tf expects 0-255"):
        from_tf(load("train"), load("test").map(lambda x, y: (x / 127.5 - 1, y)))
    with pytest.raises(ModelGateError, match=r"looks rescaled to 0-1 \(Rescaling\(1/255\)\)"):
        from_tf(load("train").map(lambda x, y: (x / 255, y)), load("test"))
    with pytest.raises(ModelGateError, match=r"the train dataset is a list, not a "
                                             r"tf\.data\.Dataset"):
        from_tf([], load("test"))
    with pytest.raises(ModelGateError, match=r"yields dicts \(keys \['image', 'label'\]\); "
                                             r"from_tf takes \(image, label\) pairs"):
        from_tf(load("train").map(lambda x, y: {"image": x, "label": y}), load("test"))
    # After .map() the class names are gone: class_names= gives them back.
    mapped = from_tf(load("train").map(lambda x, y: (x, y)), load("test").map(
        lambda x, y: (x, y)), class_names=CLASSES)
    assert mapped.class_names == CLASSES


# from_hf ---------------------------------------------------------------------------------

def _hf_split(datasets, n, names=CLASSES, size=8, seed=0):
    rng = np.random.default_rng(seed)
    ds = datasets.Dataset.from_dict({
        "image": [Image.fromarray(rng.integers(0, 256, (size + (i == n - 1 and size > 8),
                                                        size, 3), dtype=np.uint8))
                  for i in range(n)],
        "label": [i % 2 for i in range(n)], "tags": [[i % 2] for i in range(n)]})
    return ds.cast_column("image", datasets.Image()).cast_column(
        "label", datasets.ClassLabel(names=list(names))).cast_column(
        "tags", datasets.Sequence(datasets.ClassLabel(names=["x", "y"])))


def test_from_hf_without_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(AdapterUnavailableError, match=r"pip install pytest-modelgate\[hf\]"):
        from_hf({})


def test_from_hf_multilabel_and_bad_datasets(hf):
    train, test = _hf_split(hf, 4), _hf_split(hf, 2, seed=1)
    multi = from_hf((train, test), label="tags")
    assert multi.multilabel and multi.class_names == ("x", "y")
    # The other ClassLabel column is an attribute: its names, as text.
    assert multi.test.attributes["label"].tolist() == ["ants", "bees"]
    data = hf.DatasetDict(train=train, validation=test)
    with pytest.raises(ModelGateError, match=r"the dataset has no 'test' split \(its splits: "
                                             r"'train', 'validation'\); pass train=/test= "
                                             r"naming yours, e\.g\. test='validation'"):
        from_hf(data)
    assert len(from_hf(data, test="validation").test) == 2
    with pytest.raises(ModelGateError, match=r"the train split has no column 'img' \(its "
                                             r"columns: image, label, tags\); pass image="):
        from_hf(data, test="validation", image="img")
    other = _hf_split(hf, 2, names=("ants", "wasps"))
    with pytest.raises(ModelGateError, match=r"the train split's 'label' ClassLabel names "
                                             r"\['ants', 'bees'\] but test's names "
                                             r"\['ants', 'wasps'\]"):
        from_hf((train, other))
    unlabeled = test.map(lambda row: {"label": -1})
    with pytest.raises(ModelGateError, match=r"2 of the test split's 2 images have no label "
                                             r"\(-1: an unlabeled split.*pass test= naming a "
                                             r"labeled split"):
        from_hf((train, unlabeled))
    odd = _hf_split(hf, 3, size=9)
    with pytest.raises(ModelGateError, match=r"images of mixed sizes in the test split: "
                                             r"test\[0\] is \(9, 9, 3\), test\[2\] is "
                                             r"\(10, 9, 3\); pass size=\(H, W\) to from_hf"):
        from_hf((train, odd))
    assert from_hf((train, odd), size=(8, 8)).test.images.shape == (3, 8, 8, 3)


def test_a_manifests_columns_reach_a_runs_slices(tmp_path):
    """The manifest's camera column is the run's attribute, and a slice gate reads it."""
    from pytest_modelgate import assert_accuracy_above
    from pytest_modelgate.assertions import recording
    from pytest_modelgate.run import EpochStats, FinetuneRun

    files = _pngs(tmp_path / "img", 12)
    rows = [[f, "ab"[i % 2], "train" if i < 4 else "test", "AB"[i % 4 // 2]]
            for i, f in enumerate(files)]
    splits = from_manifest(_manifest(tmp_path, rows, ("path", "label", "split", "camera")),
                           cache=False)
    y = splits.test.labels
    wrong_on_b = np.where(splits.test.attributes["camera"] == "B", 1 - y, y)
    history = (EpochStats(1, 1.0, 0.9, 0.9, 1.0),)
    run = FinetuneRun(model="toy", class_names=splits.class_names, y_true=y,
                      y_pred=wrong_on_b, probabilities=np.eye(2)[wrong_on_b],
                      history=history, seconds=1.0, setup_seconds=0.0, device="cpu",
                      freeze="backbone", pretrained=True, config={},
                      test_set=splits.test)
    assert run.attributes["camera"].tolist() == ["A", "A", "B", "B"] * 2
    with recording():
        assert_accuracy_above(run, 0.9, where={"camera": "A"}, min_slice_size=None)
        with pytest.raises(AssertionError, match=r"accuracy on camera=B = 0\.000 < 0\.900"):
            assert_accuracy_above(run, 0.9, where={"camera": "B"}, min_slice_size=None)
