from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_modelgate.data import ImageSet, Splits, from_arrays, from_folder, stratified_split
from pytest_modelgate.errors import ModelGateError, ModelGateWarning


def _images(n: int, seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


def test_ids_are_content_hashes_and_arrays_are_read_only():
    x = _images(3)
    a = ImageSet(x, [0, 1, 0], ("a", "b"))
    b = ImageSet(x.copy(), [1, 1, 1], ("a", "b"))
    assert a.ids == b.ids and len(set(a.ids)) == 3
    with pytest.raises(ValueError):
        a.images[0, 0, 0] = 1
    assert a.fingerprint() != b.fingerprint()  # labels are part of the fingerprint


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(images=np.zeros((0, 8, 8), np.uint8), labels=[]), "train split is empty"),
        (dict(images=_images(2), labels=[0, 5]), r"labels must lie in 0..1"),
        (dict(images=_images(2), labels=[0]), "2 images but labels of shape"),
        (dict(images=_images(2).astype(np.float32), labels=[0, 1]), "must be uint8"),
        (dict(images=np.zeros((2, 8, 8, 4), np.uint8), labels=[0, 1]), "1 or 3 channels"),
        (dict(images=np.zeros((2, 8), np.uint8), labels=[0, 1]), r"\(N, H, W\)"),
        (dict(images=_images(2), labels=[0.0, 1.0]), "labels must be integers"),
    ],
)
def test_bad_image_sets(kwargs, message):
    with pytest.raises(ModelGateError, match=message):
        ImageSet(class_names=("a", "b"), name="train", **kwargs)


def test_class_in_test_but_not_train():
    with pytest.raises(ModelGateError, match=r"test has classes \['c'\] that train never shows"):
        from_arrays(_images(4), [0, 1, 0, 1], _images(2, 1), [2, 0], class_names=["a", "b", "c"])


def test_single_class_is_rejected():
    with pytest.raises(ModelGateError, match="only one class"):
        from_arrays(_images(2), [0, 0], _images(2, 1), [0, 0], class_names=["a"])
    with pytest.raises(ModelGateError, match="train split holds a single class"):
        from_arrays(_images(2), [0, 0], _images(2, 1), [0, 0], class_names=["a", "b"])


def test_mixed_shapes_between_splits():
    with pytest.raises(ModelGateError, match="different shapes"):
        from_arrays(_images(2), [0, 1], _images(2, 1, size=9), [0, 1])


def test_stratified_split_keeps_duplicates_on_one_side():
    x = _images(40)
    x[20:] = x[:20]  # every image twice
    labels = np.arange(40) % 2
    labels[20:] = labels[:20]
    splits = stratified_split(x, labels, class_names=["a", "b"], test_fraction=0.3, seed=1)
    assert not set(splits.train.ids) & set(splits.test.ids)
    assert len(splits.train) + len(splits.test) == 40
    again = stratified_split(x, labels, class_names=["a", "b"], test_fraction=0.3, seed=1)
    assert again.test.ids == splits.test.ids
    with pytest.raises(ModelGateError, match="test_fraction"):
        stratified_split(x, labels, class_names=["a", "b"], test_fraction=1.0)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_from_folder_reads_an_image_tree(tmp_path):
    x = _images(6)
    for i in range(4):
        _write(tmp_path / "train" / ("cat" if i % 2 else "dog") / f"{i}.png", x[i])
    _write(tmp_path / "test" / "cat" / "a.bmp", x[4])
    _write(tmp_path / "test" / "dog" / "b.png", x[5])
    splits = from_folder(tmp_path)
    assert splits.class_names == ("cat", "dog")
    assert len(splits.train) == 4 and len(splits.test) == 2
    assert splits.test.describe(0).endswith("a.bmp")
    np.testing.assert_array_equal(splits.test.images[0], x[4])


def test_from_folder_bad_inputs(tmp_path):
    with pytest.raises(ModelGateError, match="is not a directory"):
        from_folder(tmp_path)
    _write(tmp_path / "train" / "a" / "1.png", _images(1)[0])
    _write(tmp_path / "train" / "b" / "1.png", _images(1, size=10)[0])
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(ModelGateError, match=r"mixed sizes.*pass size=\(H, W\)"):
        from_folder(tmp_path)
    with pytest.raises(ModelGateError, match=r"class folder .*test/a holds no images"):
        from_folder(tmp_path, size=(8, 8))
    (tmp_path / "test" / "a").rmdir()
    (tmp_path / "test" / "a").mkdir()
    (tmp_path / "test" / "a").rmdir()
    with pytest.raises(ModelGateError, match="test split is empty: no class folders with images"):
        from_folder(tmp_path, size=(8, 8))
    (tmp_path / "test" / "a").mkdir()
    broken = tmp_path / "test" / "a" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ModelGateError, match=r"cannot read image .*broken\.png"):
        from_folder(tmp_path, size=(8, 8))


def test_from_folder_truncated_file_names_the_path(tmp_path):
    x = _images(3, size=32)
    for i, cls in enumerate("ab"):
        _write(tmp_path / "train" / cls / "1.png", x[i])
    path = tmp_path / "test" / "a" / "cut.png"
    _write(path, x[2])
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ModelGateError, match=r"cut\.png"):
        from_folder(tmp_path)


def test_repr_is_short():
    splits = from_arrays(_images(4), [0, 1, 0, 1], _images(2, 1), [0, 1], class_names=["a", "b"])
    assert repr(splits) == ("Splits(train=ImageSet('train', 4 images of 8x8, 2 classes: a, b), "
                            "test=ImageSet('test', 2 images of 8x8, 2 classes: a, b))")


def test_repr_says_which_classes_a_split_has_no_images_of():
    with pytest.warns(ModelGateWarning, match="no images of class"):
        splits = from_arrays(_images(4), [0, 1, 0, 1], _images(2, 1), [0, 0],
                             class_names=["a", "b"])
    assert repr(splits.test) == "ImageSet('test', 2 images of 8x8, 2 classes: a, b; no images of b)"


def test_splits_must_share_class_names():
    train = ImageSet(_images(2), [0, 1], ("a", "b"), name="train")
    test = ImageSet(_images(2, 1), [0, 1], ("a", "c"), name="test")
    with pytest.raises(ModelGateError, match="share one class list"):
        Splits(train, test)


def test_from_folder_with_a_split_rule_keeps_sources(tmp_path):
    x = _images(20)
    for i in range(20):
        _write(tmp_path / ("cat" if i % 2 else "dog") / f"{i}.png", x[i])
    splits = from_folder(tmp_path, test_fraction=0.3, seed=1)
    assert splits.class_names == ("cat", "dog")
    assert (len(splits.train), len(splits.test)) == (14, 6)
    assert all(s.endswith(".png") for s in splits.test.sources)
    again = from_folder(tmp_path, test_fraction=0.3, seed=1)
    assert again.test.sources == splits.test.sources
    with pytest.raises(ModelGateError, match="has no train/ folder; from_folder expects .* "
                                             "for a folder of class folders pass test_fraction="):
        from_folder(tmp_path)


def _tree(root: Path, layout: dict[str, dict[str, int]], size: int = 8) -> None:
    """``{"train": {"ants": 3, ...}, ...}``: that many distinct images per class folder
    (0 makes an empty folder)."""
    seed = 0
    for split, classes in layout.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(_images(n, seed, size)):
                _write(root / split / cls / f"{i}.png", image)
            seed += 1


def test_a_test_class_with_no_train_folder_is_an_error(tmp_path):
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3},
                     "test": {"ants": 2, "bees": 2, "wasps": 5}})
    with pytest.raises(ModelGateError, match=r"test has class folders \['wasps'\] that .*train "
                                             r"does not have: a class in test that train never "
                                             r"shows; add training images under .*train/wasps"):
        from_folder(tmp_path)
    # The same when the train folder exists but holds no image.
    (tmp_path / "train" / "wasps").mkdir()
    (tmp_path / "train" / "wasps" / "notes.txt").write_text("todo")
    with pytest.raises(ModelGateError, match=r"class folder .*train/wasps holds no images"):
        from_folder(tmp_path)


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path):
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3, "flies": 0},
                     "test": {"ants": 2, "bees": 2, "flies": 0}})
    with pytest.raises(ModelGateError, match=r"class folder .*train/flies holds no images .*add "
                                             r"images or remove the folder"):
        from_folder(tmp_path)
    (tmp_path / "train" / "flies").rmdir()
    with pytest.raises(ModelGateError, match=r"test has class folders \['flies'\]"):
        from_folder(tmp_path)
    (tmp_path / "test" / "flies").rmdir()
    assert from_folder(tmp_path).class_names == ("ants", "bees")
    # The same rule where from_folder splits a folder of class folders itself.
    _tree(tmp_path, {"all": {"ants": 4, "bees": 0}})
    with pytest.raises(ModelGateError, match=r"class folder .*all/bees holds no images"):
        from_folder(tmp_path / "all", test_fraction=0.5)


def test_hidden_folders_are_not_classes(tmp_path):
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3, ".ipynb_checkpoints": 0},
                     "test": {"ants": 2, "bees": 2}})
    assert from_folder(tmp_path).class_names == ("ants", "bees")


def test_val_is_the_test_split_when_there_is_no_test(tmp_path):
    # The layout of the PyTorch transfer-learning tutorial's hymenoptera_data.
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3}, "val": {"ants": 2, "bees": 2}})
    splits = from_folder(tmp_path)
    assert len(splits.test) == 4 and splits.val is None
    assert splits.test.name == "val" and "/val/" in splits.test.sources[0]


def test_val_beside_test_is_kept_as_splits_val(tmp_path):
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3}, "test": {"ants": 2, "bees": 2},
                     "val": {"ants": 1, "bees": 1}})
    splits = from_folder(tmp_path)
    assert (len(splits.test), len(splits.val)) == (4, 2)
    assert all("/val/" in s for s in splits.val.sources)
    assert splits.fingerprint().count("-") == 2  # val is part of the data's identity
    _tree(tmp_path, {"val": {"wasps": 1}})
    with pytest.raises(ModelGateError, match=r"val has class folders \['wasps'\]"):
        from_folder(tmp_path)


def test_other_split_folders_are_not_ignored_silently(tmp_path):
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3}, "test": {"ants": 2, "bees": 2},
                     "validation": {"ants": 1, "bees": 1}})
    with pytest.warns(ModelGateWarning, match=r"ignores the folder\(s\) \['validation'\]: only "
                                              r"train/, test/ and val/ are splits"):
        from_folder(tmp_path)
    with pytest.raises(ModelGateError, match=r"already has train/, test/ folder\(s\)"):
        from_folder(tmp_path, test_fraction=0.2)


def test_from_torch_image_folder(tmp_path):
    datasets = pytest.importorskip("torchvision.datasets")
    from pytest_modelgate.data import from_torch

    _tree(tmp_path, {"train": {"ants": 3, "bees": 3}, "val": {"ants": 2, "bees": 2}})
    splits = from_torch(datasets.ImageFolder(tmp_path / "train"),
                        datasets.ImageFolder(tmp_path / "val"))
    assert splits.class_names == ("ants", "bees")
    # ImageFolder's loader converts to RGB: the same gray pixels in three channels.
    np.testing.assert_array_equal(splits.train.images[..., 0],
                                  from_folder(tmp_path).train.images)


def test_from_folder_refuses_lossy_modes(tmp_path):
    for cls in "ab":
        _write(tmp_path / "train" / cls / "1.png", _images(1)[0])
    (tmp_path / "test" / "a").mkdir(parents=True)
    deep = Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))
    deep.save(tmp_path / "test" / "a" / "deep.png")
    with pytest.raises(ModelGateError, match=r"deep\.png has mode 'I;16' \(16-bit or float "
                                             r"pixels\)"):
        from_folder(tmp_path)


def test_from_torch_datasets():
    torch = pytest.importorskip("torch")
    from pytest_modelgate.data import from_torch

    class Tensors(torch.utils.data.Dataset):
        classes = ["a", "b"]

        def __init__(self, n, seed):
            self.x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], i % 2

    class Pil(Tensors):
        def __getitem__(self, i):
            return Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)), i % 2

    splits = from_torch(Tensors(6, 0), Tensors(4, 1))
    assert splits.class_names == ("a", "b") and splits.train.images.shape == (6, 8, 8)
    np.testing.assert_array_equal(splits.train.images[0],
                                  np.round(Tensors(6, 0).x[0, 0].numpy() * 255))
    rgb = from_torch(Pil(4, 0), Pil(2, 0))
    assert rgb.train.images.shape == (4, 8, 8, 3)

    class Normalized(Tensors):
        def __getitem__(self, i):
            return self.x[i] * 2 - 1, i % 2

    with pytest.raises(ModelGateError, match=r"float pixels must lie in \[0, 1\]"):
        from_torch(Normalized(4, 0), Tensors(2, 0))
    with pytest.raises(ModelGateError, match="train dataset is empty"):
        from_torch(Tensors(0, 0), Tensors(2, 0))


def test_from_folder_keeps_decoded_splits_and_rereads_changed_ones(tmp_path, monkeypatch):
    import PIL.Image

    x = _images(6)
    for i in range(4):
        _write(tmp_path / "data" / "train" / ("cat" if i % 2 else "dog") / f"{i}.png", x[i])
    _write(tmp_path / "data" / "test" / "cat" / "a.png", x[4])
    _write(tmp_path / "data" / "test" / "dog" / "b.png", x[5])
    cache = tmp_path / "cache"
    first = from_folder(tmp_path / "data", cache=cache)
    assert len(list(cache.iterdir())) == 2  # one entry per split
    # A second load of the unchanged folder opens no image file and maps the arrays.
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("decoded again"))
    second = from_folder(tmp_path / "data", cache=cache)
    assert isinstance(second.train.images.base, np.memmap) or isinstance(
        second.train.images, np.memmap)
    assert second.train.ids == first.train.ids and second.test.sources == first.test.sources
    np.testing.assert_array_equal(second.train.images, first.train.images)
    assert second.fingerprint() == first.fingerprint()
    monkeypatch.setattr(PIL.Image, "open", real_open)
    # A changed file is a miss for its split: read again, the new pixels seen.
    _write(tmp_path / "data" / "test" / "cat" / "a.png", x[0])
    third = from_folder(tmp_path / "data", cache=cache)
    np.testing.assert_array_equal(third.test.images[0], x[0])
    # The other split's entry holds: no train file is opened.
    def open_test_only(path, *a, **k):
        assert "train" not in str(path), f"decoded {path} again"
        return real_open(path, *a, **k)

    _write(tmp_path / "data" / "test" / "cat" / "a.png", x[1])
    monkeypatch.setattr(PIL.Image, "open", open_test_only)
    fourth = from_folder(tmp_path / "data", cache=cache)
    assert fourth.train.ids == first.train.ids
    np.testing.assert_array_equal(fourth.test.images[0], x[1])
    monkeypatch.setattr(PIL.Image, "open", real_open)
    # A damaged entry is decoded again, and cache=False writes nothing. (The first load
    # maps its entry's file: keep a copy of the pixels before damaging it in place.)
    expected = np.array(first.train.images)
    for entry in cache.iterdir():
        (entry / "images.npy").write_bytes(b"garbage")
    np.testing.assert_array_equal(from_folder(tmp_path / "data", cache=cache).train.images,
                                  expected)
    from_folder(tmp_path / "data", cache=False, size=(4, 4))
    assert all(not p.name.startswith(".tmp") for p in cache.iterdir())
    assert len(list(cache.iterdir())) == 2  # the changed test replaced its entry


def test_from_folder_bad_cache_argument(tmp_path):
    _write(tmp_path / "train" / "a" / "0.png", _images(1)[0])
    _write(tmp_path / "test" / "a" / "1.png", _images(2)[1])
    with pytest.raises(ModelGateError, match=r"cache=123: pass a folder path"):
        from_folder(tmp_path, cache=123)


def test_forked_workers_decode_straight_into_the_array_cache(tmp_path, monkeypatch):
    # 2,200 files: enough for parallel_map to fork workers, which write each image into the
    # cache's memory-mapped file; the result equals a one-process load without a cache.
    x = _images(2200, seed=3)
    for i, a in enumerate(x):
        _write(tmp_path / "data" / ("train" if i < 2000 else "test") / f"c{i % 2}" /
               f"{i:04d}.png", a)
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    forked = from_folder(tmp_path / "data", cache=tmp_path / "cache")
    assert isinstance(forked.train.images, np.memmap) or isinstance(
        forked.train.images.base, np.memmap)
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "1")
    plain = from_folder(tmp_path / "data", cache=False)
    np.testing.assert_array_equal(forked.train.images, plain.train.images)
    assert forked.train.ids == plain.train.ids and forked.test.ids == plain.test.ids
    assert forked.train.sources == plain.train.sources
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]


def _files_for_shared_decode(tmp_path, n=2200):
    x = _images(n, seed=4)
    paths = []
    for i, a in enumerate(x):
        paths.append(str(tmp_path / f"{i:04d}.png"))
        _write(Path(paths[-1]), a)
    return x, paths


def test_shared_decode_matches_one_process_and_names_the_first_bad_file(tmp_path,
                                                                          monkeypatch):
    import mmap

    from pytest_modelgate.data import content_id
    from pytest_modelgate.data.decode import decode_shared

    x, paths = _files_for_shared_decode(tmp_path)
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    # Shared memory, as the array cache's memory-mapped file is: the child's rows show here.
    target = np.frombuffer(mmap.mmap(-1, len(paths) * 64), np.uint8).reshape(-1, 8, 8)
    ids, stats, odd = decode_shared(paths, None, target, run=100)
    assert odd is None
    np.testing.assert_array_equal(target, x)  # rows written by this process and the child
    assert ids == [content_id(a) for a in x]
    assert stats[:, 0].tolist() == [os.stat(p).st_size for p in paths]
    # Another shape: its index comes back (the caller widens or names the size).
    _write(Path(paths[1800]), np.zeros((9, 9), dtype=np.uint8))
    assert decode_shared(paths, None, target, run=100)[2] == 1800
    # Unreadable files: the first in order is named, whichever process met it.
    Path(paths[2100]).write_bytes(b"not an image")
    Path(paths[1500]).write_bytes(b"not an image")
    with pytest.raises(ModelGateError, match=r"cannot read image .*1500\.png"):
        decode_shared(paths, None, target, run=100)


def _dead_children(monkeypatch, module):
    """Make each fork in ``module`` start a process that exits at once, as a killed child
    would; the list of them comes back."""
    import subprocess

    started = []

    def dead_child():
        started.append(subprocess.Popen(["true"]))
        return started[-1].pid

    monkeypatch.setattr(module.os, "fork", dead_child)
    return started


def test_shared_decode_redoes_the_rows_of_a_worker_that_died(tmp_path, monkeypatch):
    # A "child" that exits at once, as a killed one would: its rows are decoded here.
    from pytest_modelgate.data import content_id, decode

    x, paths = _files_for_shared_decode(tmp_path, n=400)
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    started = _dead_children(monkeypatch, decode)
    target = np.zeros((len(paths), 8, 8), dtype=np.uint8)
    ids, _, odd = decode.decode_shared(paths, None, target, run=50)
    assert len(started) == 1 and odd is None
    np.testing.assert_array_equal(target, x)
    assert ids == [content_id(a) for a in x]


def _evict(paths):
    """Drop the files' pages from the OS page cache, as after a reboot (no root needed for
    clean pages of one's own files)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


linux_page_cache = pytest.mark.skipif(
    not (hasattr(os, "RWF_NOWAIT") and hasattr(os, "posix_fadvise")),
    reason="asks the Linux page cache (RWF_NOWAIT, posix_fadvise)")


@linux_page_cache
def test_load_of_files_not_in_memory_matches_and_leaves_no_thread(tmp_path, monkeypatch):
    import threading

    from pytest_modelgate import processes
    from pytest_modelgate.data import decode

    x = _images(1200, seed=7)
    for i, a in enumerate(x):
        _write(tmp_path / ("train" if i < 1000 else "test") / "ab"[i % 2] / f"{i:04d}.png", a)
    files = sorted(str(p) for p in tmp_path.rglob("*.png"))
    _evict(files)
    if processes.in_page_cache(files):
        pytest.skip("this file system keeps evicted pages (or refuses RWF_NOWAIT)")
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    started = []
    real = decode.start_read_ahead
    monkeypatch.setattr(decode, "start_read_ahead",
                        lambda *a, **k: started.append(real(*a, **k)) or started[-1])
    splits = from_folder(tmp_path, cache=tmp_path / ".cache")
    assert started[0] is not processes.no_read_ahead  # the files were not in memory
    expected = from_folder(tmp_path, cache=False)
    np.testing.assert_array_equal(splits.train.images, expected.train.images)
    np.testing.assert_array_equal(splits.test.images, expected.test.images)
    assert splits.train.ids == expected.train.ids
    assert "modelgate-read-ahead" not in [t.name for t in threading.enumerate()]


def test_two_processes_writing_one_entry_keep_the_first_and_decode_once(tmp_path,
                                                                         monkeypatch):
    # Another process's entry lands just before this one's rename (pytest -n 2, two
    # workers loading one folder cold): the load keeps it instead of decoding again.
    from pytest_modelgate.data import arraycache

    x = _images(6, seed=3)
    for i, a in enumerate(x):
        _write(tmp_path / "data" / ("train" if i < 4 else "test") / "ab"[i % 2] / f"{i}.png", a)
    other = from_folder(tmp_path / "data", cache=tmp_path / "other")
    entries = {p.name: p for p in (tmp_path / "other").iterdir()}
    real_rename = Path.rename

    def rename_after_the_other(self, target):
        import shutil

        if not Path(target).exists():
            shutil.copytree(entries[Path(target).name], target)
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_after_the_other)
    decoded = []
    real_decode_all = arraycache.decode_all
    monkeypatch.setattr(arraycache, "decode_all",
                        lambda *a: decoded.append(1) or real_decode_all(*a))
    splits = from_folder(tmp_path / "data", cache=tmp_path / "mine")
    assert decoded == []  # no second decode after the collision
    np.testing.assert_array_equal(splits.train.images, other.train.images)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == sorted(entries)


def _record_forks(monkeypatch, module):
    forked, real_fork = [], os.fork

    def fork():
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(module.os, "fork", fork)
    return forked


def _assert_reaped(pids):
    assert pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped by the code under test


def test_ctrl_c_in_the_shared_decode_stops_the_children(tmp_path, monkeypatch):
    import mmap

    from pytest_modelgate.data import decode

    _, paths = _files_for_shared_decode(tmp_path, n=400)
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    parent, real_read = os.getpid(), decode.read_image

    def interrupted_here(path, size):
        if path == paths[120] and os.getpid() == parent:  # row 120: this process's run
            raise KeyboardInterrupt
        return real_read(path, size)

    monkeypatch.setattr(decode, "read_image", interrupted_here)
    forked = _record_forks(monkeypatch, decode)
    target = np.frombuffer(mmap.mmap(-1, len(paths) * 64), np.uint8).reshape(-1, 8, 8)
    with pytest.raises(KeyboardInterrupt):
        decode.decode_shared(paths, None, target, run=50)
    _assert_reaped(forked)


def test_grayscale_and_rgb_files_in_one_split_are_widened(tmp_path):
    # The first file decides the shape of the cache's array; a file of another mode sends
    # the load down the widening path instead.
    x = _images(4, seed=5)
    _write(tmp_path / "train" / "a" / "0.png", x[0])                          # grayscale
    _write(tmp_path / "train" / "b" / "1.png", np.stack([x[1]] * 3, axis=-1))  # RGB
    _write(tmp_path / "test" / "a" / "2.png", np.stack([x[2]] * 3, axis=-1))
    _write(tmp_path / "test" / "b" / "3.png", np.stack([x[3]] * 3, axis=-1))
    splits = from_folder(tmp_path, cache=tmp_path / ".cache")
    assert splits.train.images.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(splits.train.images[0, ..., 1], x[0])
    again = from_folder(tmp_path, cache=tmp_path / ".cache")
    assert again.train.ids == splits.train.ids


def test_platform_files_in_class_folders_are_skipped_and_counted(tmp_path):
    """macOS's ``._name.jpg`` (AppleDouble: no image), a hidden ``.x.png``, ``.DS_Store``,
    ``Thumbs.db`` and ``desktop.ini`` are the platforms' files, not samples: none stops the
    load or joins a split, and the split says how many it left out."""
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3}, "test": {"ants": 2, "bees": 2}})
    ants, bees = tmp_path / "train" / "ants", tmp_path / "train" / "bees"
    (ants / "._0.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    _write(ants / ".hidden.png", _images(1, seed=5)[0])
    (ants / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (bees / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "test" / "bees" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    for cache in (tmp_path / "arrays", tmp_path / "arrays", False):  # decoded, cached, none
        splits = from_folder(tmp_path, cache=cache)
        assert len(splits.train) == 6 and len(splits.test) == 4
        assert not any(os.path.basename(s).startswith(".") for s in splits.train.sources)
        assert [os.path.basename(s) for s in splits.train.skipped] == [
            ".DS_Store", "._0.png", ".hidden.png", "Thumbs.db"]
        assert [os.path.basename(s) for s in splits.test.skipped] == ["desktop.ini"]
        assert repr(splits.train).endswith("; 4 platform files skipped (.DS_Store, ._0.png, "
                                           ".hidden.png, ...))")
        assert repr(splits.test).endswith("; 1 platform file skipped (desktop.ini))")
    # The leak scan of the same folders lists the same files.
    from pytest_modelgate.leakage.prepare import _image_files

    assert _image_files(tmp_path / "train") == sorted(splits.train.sources)
    # A folder split by test_fraction keeps the count, on train.
    _tree(tmp_path / "all", {"": {"ants": 4, "bees": 4}})
    (tmp_path / "all" / "ants" / "._1.png").write_bytes(b"\x00\x05\x16\x07")
    split = from_folder(tmp_path / "all", test_fraction=0.5, cache=False)
    assert len(split.train) + len(split.test) == 8
    assert [os.path.basename(s) for s in split.train.skipped] == ["._1.png"]


def test_a_test_split_without_a_class_warns_naming_it_and_its_folder(tmp_path):
    # hymenoptera_data with no bees in val/: before, it loaded silently and every gate of
    # the run failed later on "no positive samples".
    _tree(tmp_path, {"train": {"ants": 3, "bees": 3, "wasps": 2}, "val": {"ants": 2}})
    with pytest.warns(ModelGateWarning) as caught:
        splits = from_folder(tmp_path)
    (warning,) = [w for w in caught if "no images of" in str(w.message)]
    message = str(warning.message)
    assert message.startswith("the val split has no images of classes ['bees', 'wasps'] that "
                              "train has (3 and 2 train images)")
    assert "recall, precision and F1 of those classes show as n/a" in message
    assert "macro averages run over the classes val has" in message
    assert f"add val images of them under {tmp_path / 'val' / 'bees'}/" in message
    assert warning.filename == __file__  # points at the user's line, not the package
    assert splits.class_names == ("ants", "bees", "wasps") and len(splits.test) == 2


def test_arrays_whose_test_split_lacks_a_class_warn():
    x = _images(6)
    with pytest.warns(ModelGateWarning, match=r"^the test split has no images of class "
                                              r"\['b'\] that train has \(2 train images\)"
                                              r".* add test images of it"):
        from_arrays(x[:4], [0, 0, 1, 1], x[4:], [0, 0], class_names=["a", "b"])


def test_imageset_keeps_attributes_and_multilabel_matrices():
    x = np.zeros((3, 4, 4), dtype=np.uint8)
    x[1], x[2] = 1, 2
    data = ImageSet(x, np.array([[1, 0], [1, 1], [0, 1]]), ("cat", "dog"),
                    attributes={"camera": ["A", "B", "A"]})
    assert data.multilabel and data.attributes["camera"].tolist() == ["A", "B", "A"]
    with pytest.raises(ModelGateError, match="attribute 'camera' must hold one value per image"):
        ImageSet(x, [0, 1, 0], ("cat", "dog"), attributes={"camera": ["A"]})
    with pytest.raises(ModelGateError, match="0 and 1 only; row 1 holds"):
        ImageSet(x, np.array([[1, 0], [2, 1], [0, 1]]), ("cat", "dog"))
    with pytest.raises(ModelGateError, match=r"\(3, 2\) 0/1 matrix"):
        ImageSet(x, np.ones((3, 3), dtype=int), ("cat", "dog"))


def test_predictions_carry_attributes():
    from pytest_modelgate import Predictions

    p = Predictions.from_arrays([0, 1, 1], [0, 1, 0], attributes={"camera": ["A", "B", "B"]})
    assert p.attributes["camera"].tolist() == ["A", "B", "B"]
    with pytest.raises(ModelGateError, match="one value per image"):
        Predictions.from_arrays([0, 1, 1], [0, 1, 0], attributes={"camera": ["A"]})
