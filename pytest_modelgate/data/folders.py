"""``from_folder``: splits from an ImageFolder-style tree of image files, decoded on every
core and kept in the array cache."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelGateError, ModelGateWarning, user_error_frames
from .arraycache import ArrayCache, decode_cached
from .decode import IMAGE_SUFFIXES, list_images
from .sources import split_by_fraction
from .splits import ImageSet, Splits, with_skipped

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

SPLIT_FOLDERS = ("train", "test", "val")


def from_folder(root: str | Path, *, size: tuple[int, int] | None = None,
                test_fraction: float | None = None, seed: int = 0,
                cache: bool | str | Path | None = None) -> Splits:
    """Splits from an ImageFolder-style tree.

    Either ``root/train/<class>/*`` with ``root/test/<class>/*`` (and optionally
    ``root/val/<class>/*``, kept as ``Splits.val``), or ``root/train`` with ``root/val``
    (the val folder is then the test split, as in the PyTorch transfer-learning tutorial),
    or (with ``test_fraction``) ``root/<class>/*`` split by ``stratified_split`` with
    ``seed``. Class names are the train subdirectory names, sorted; hidden folders are
    skipped, and so are the platforms' files in class folders (hidden names such as
    ``.DS_Store`` and macOS's ``._name.jpg``, ``Thumbs.db``, ``desktop.ini``): each split
    lists them in ``ImageSet.skipped`` and its repr counts them. Grayscale and RGB files may
    mix (grayscale is widened to RGB); ``size=(H, W)`` resizes every image. Files are
    decoded on all cores, and each split's decoded arrays are kept (``cache``: None for
    ``default_array_cache()``, a folder, or False for none) as a memory-mapped ``.npy``
    keyed by every file's path, size and modification time and ``size=``: loading an
    unchanged folder again reads no image file.

    Raises:
        ModelGateError: a class folder in test or val that train lacks, an empty class
            folder, no test or val folder, unreadable images, mixed sizes without ``size=``.

    Warns:
        ModelGateWarning: a test or val folder without some of train's classes (their
            per-class figures cannot be measured), or a folder beside the splits.

    Example:
        >>> splits = from_folder("hymenoptera_data", size=(224, 224))  # doctest: +SKIP
    """
    root = Path(root)
    present = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    if test_fraction is not None:
        if present:
            raise ModelGateError(
                f"{root} already has {'/, '.join(present)}/ folder(s): drop test_fraction= to "
                "use its split, or point from_folder at a folder of class folders"
            )
        every = _read_split(root.parent, root.name, size, None, cache=cache)
        split = split_by_fraction(every.images, every.labels, class_names=every.class_names,
                                  test_fraction=test_fraction, seed=seed,
                                  sources=every.sources, attributes=None, ids=every.ids)
        with_skipped(split.train, every.skipped)  # the folder's, named once: on train
        return split
    if "train" not in present and root.is_dir() and any(root.iterdir()):
        raise ModelGateError(
            f"{root} has no train/ folder; from_folder expects {root}/train/<class>/* and "
            f"{root}/test/<class>/* (or val/), and for a folder of class folders pass "
            "test_fraction= (e.g. 0.2) to split it"
        )
    if root.is_dir():
        others = [p.name for p in sorted(root.iterdir())
                  if p.is_dir() and p.name not in SPLIT_FOLDERS and not p.name.startswith(".")]
        if others:
            warnings.warn(
                f"from_folder({str(root)!r}) ignores the folder(s) {others}: only train/, test/ "
                "and val/ are splits; rename one to val/ or test/ to use it",
                ModelGateWarning, stacklevel=2,
            )
    train = _read_split(root, "train", size, None, cache=cache)
    if "test" in present:
        test = _read_split(root, "test", size, train.class_names, cache=cache)
        val = (_read_split(root, "val", size, train.class_names, cache=cache)
               if "val" in present else None)
        return Splits(train=train, test=test, val=val)
    if "val" in present:
        # train/ and val/ only: val is what the model is measured on.
        return Splits(train=train, test=_read_split(root, "val", size, train.class_names,
                                                    cache=cache))
    return Splits(train=train, test=_read_split(root, "test", size, train.class_names,
                                                cache=cache))


def _class_folders(base: Path) -> list[str]:
    """Class folder names under ``base``, sorted; hidden folders (``.ipynb_checkpoints``) are
    not classes."""
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_split(root: Path, split: str, size: tuple[int, int] | None,
                class_names: tuple[str, ...] | None, *, name: str | None = None,
                cache: Any = None) -> ImageSet:
    """One split folder of class folders. With ``class_names`` (train's), every class folder
    here must be one of them; a class may be absent, but a class folder is never empty."""
    base = root / split
    if not base.is_dir():
        raise ModelGateError(
            f"{base} is not a directory; from_folder expects {root}/train/<class>/*.png and "
            f"{root}/test/<class>/*.png (or {root}/val/<class>/*.png)"
        )
    found = _class_folders(base)
    if class_names is not None:
        unknown = [c for c in found if c not in class_names]
        if unknown:
            raise ModelGateError(
                f"{base} has class folders {unknown} that {root / 'train'} does not have: a "
                f"class in {split} that train never shows; add training images under "
                f"{root / 'train' / unknown[0]}/ or remove {base / unknown[0]}"
            )
    names = class_names if class_names is not None else tuple(found)
    paths: list[str] = []
    listed: list[tuple[str, list[str]]] = []
    labels: list[int] = []
    skipped: list[str] = []
    for idx, cls in enumerate(names):
        folder = base / cls
        if not folder.is_dir():
            continue  # a class the test split does not show
        found_names, left_out = list_images(folder)
        prefix = os.path.join(folder, "")
        skipped += [prefix + n for n in left_out]
        files = [prefix + n for n in found_names]  # strings: 60,000 Paths cost 0.5 s
        listed.append((prefix, found_names))
        if not files:
            raise ModelGateError(
                f"class folder {folder} holds no images (looked for "
                f"{', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder, "
                "since an empty class changes accuracy and macro averages"
            )
        paths += files
        labels += [idx] * len(files)
    if not paths:
        raise ModelGateError(f"{split} split is empty: no class folders with images under "
                             f"{base}/<class>/")
    sources = paths
    cached = ArrayCache.open(cache, sources, size, names, labels)
    images, ids = decode_cached(paths, size, cached, listed)
    if isinstance(images, list):
        first = images[0].shape
        odd = next(i for i, img in enumerate(images) if img.shape != first)
        raise ModelGateError(
            f"images of mixed sizes in {base}: {sources[0]} is {first}, {sources[odd]} is "
            f"{images[odd].shape}; pass size=(H, W) to from_folder to resize them"
        )
    data = ImageSet(images, np.asarray(labels), names, name=name or split,
                    sources=tuple(sources), _ids=ids)
    return with_skipped(data, skipped)
