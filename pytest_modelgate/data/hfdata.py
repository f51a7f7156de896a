"""``from_hf``: splits from Hugging Face ``datasets`` (a ``DatasetDict`` or two
``Dataset``s) with an ``Image`` column and a ``ClassLabel``; other scalar columns become
per-sample attributes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import AdapterUnavailableError, ModelGateError, user_error_frames
from .decode import pil_pixels
from .splits import ImageSet, Splits, content_id

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def from_hf(dataset_dict: Any, *, image: str = "image", label: str = "label",
            train: str = "train", test: str = "test",
            class_names: Sequence[str] | None = None,
            size: tuple[int, int] | None = None) -> Splits:
    """Splits from a Hugging Face ``datasets.DatasetDict`` (its ``train`` and ``test``
    splits; name others with ``train=``/``test=``, e.g. ``test="validation"``) or a pair
    ``(train_dataset, test_dataset)``.

    ``image`` names an ``Image`` column, ``label`` a ``ClassLabel`` column (class names
    from it), a list of ``ClassLabel`` (multilabel: the labels become an (N, classes) 0/1
    matrix), or plain integers or strings (names from ``class_names=``, else the values,
    sorted). Every other column of numbers, text or booleans becomes a per-sample
    attribute (``run.attributes``), and another ``ClassLabel`` column its names as text.
    ``size=(H, W)`` resizes every image.

    Raises:
        ModelGateError: a missing split or column, train and test with other class names,
            an empty split, images of mixed sizes without ``size=``, 16-bit images.

    Example:
        >>> from datasets import load_dataset  # doctest: +SKIP
        >>> splits = from_hf(load_dataset("imagefolder", data_dir="data"))  # doctest: +SKIP
    """
    try:
        import datasets
    except ImportError:
        raise AdapterUnavailableError("from_hf needs Hugging Face datasets: pip install "
                                      "pytest-modelgate[hf] (or pip install datasets)") from None
    parts = _two_splits(dataset_dict, train, test)
    kinds = [_label_kind(ds, label, name, datasets) for name, ds in parts]
    names = _class_names(parts, kinds, label, class_names)
    sets = []
    for (name, ds), kind in zip(parts, kinds, strict=True):
        if image not in ds.column_names:
            raise ModelGateError(f"the {name} split has no column {image!r} (its columns: "
                                 f"{', '.join(ds.column_names)}); pass image='<column>'")
        images, ids = _images(ds, image, name, size)
        attributes = {c: _attribute(ds[c], f, datasets) for c, f in ds.features.items()
                      if c not in (image, label)
                      and isinstance(f, (datasets.Value, datasets.ClassLabel))}
        sets.append(ImageSet(images, _labels(ds[label], kind, names, name), names, name=name,
                             _ids=ids, attributes=attributes))
    return Splits(train=sets[0], test=sets[1])


def _attribute(values: Any, feature: Any, datasets: Any) -> np.ndarray:
    """A scalar column; another ClassLabel (CIFAR-100's ``coarse_label``) as its names."""
    if isinstance(feature, datasets.ClassLabel):
        return np.array([feature.names[v] if v is not None and v >= 0 else ""
                         for v in values], dtype=str)
    return np.asarray(list(values))


def _two_splits(data: Any, train: str, test: str) -> list[tuple[str, Any]]:
    if isinstance(data, Mapping) or hasattr(data, "keys") and not hasattr(data, "features"):
        missing = [s for s in (train, test) if s not in data]
        if missing:
            raise ModelGateError(
                f"the dataset has no {missing[0]!r} split (its splits: "
                f"{', '.join(map(repr, data.keys()))}); pass train=/test= naming yours, "
                f"e.g. test='validation'")
        return [("train", data[train]), ("test", data[test])]
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return [("train", data[0]), ("test", data[1])]
    raise ModelGateError(f"from_hf takes a datasets.DatasetDict or a (train, test) pair of "
                         f"Datasets, got {type(data).__name__}")


def _label_kind(ds: Any, column: str, name: str, datasets: Any) -> Any:
    """The label column's feature: a ClassLabel, a list of one (multilabel), or a Value."""
    if not hasattr(ds, "features"):
        raise ModelGateError(f"the {name} split is a {type(ds).__name__}, not a "
                             "datasets.Dataset")
    if column not in ds.features:
        raise ModelGateError(f"the {name} split has no column {column!r} (its columns: "
                             f"{', '.join(ds.column_names)}); pass label='<column>'")
    if len(ds) == 0:
        raise ModelGateError(f"the {name} split is empty: it needs at least one image")
    return ds.features[column]


def _inner(feature: Any) -> Any:
    """The ClassLabel inside a list feature (``Sequence``/``List``), else None."""
    inner = getattr(feature, "feature", None)
    return inner if type(inner).__name__ == "ClassLabel" else None


def _class_names(parts: list[tuple[str, Any]], kinds: list[Any], label: str,
                 given: Sequence[str] | None) -> tuple[str, ...]:
    found = [getattr(k, "names", None) or getattr(_inner(k), "names", None) for k in kinds]
    if given is None and found[0] and found[1] and list(found[0]) != list(found[1]):
        raise ModelGateError(f"the train split's {label!r} ClassLabel names {found[0]} but "
                             f"test's names {found[1]}; cast both to one ClassLabel, or pass "
                             "class_names= (the labels are indices into it)")
    if given is not None:
        return tuple(str(c) for c in given)
    if found[0] or found[1]:
        return tuple(found[0] or found[1])
    values = {v for _, ds in parts for v in ds[label]}
    if all(isinstance(v, (int, np.integer)) for v in values):
        return tuple(str(i) for i in range(int(max(values)) + 1))
    return tuple(sorted(str(v) for v in values))


def _labels(values: Any, kind: Any, names: tuple[str, ...], split: str) -> np.ndarray:
    values = list(values)
    if type(kind).__name__ == "ClassLabel":
        unlabeled = sum(1 for v in values if v is None or v < 0)
        if unlabeled:
            raise ModelGateError(
                f"{unlabeled} of the {split} split's {len(values)} images have no label (-1: "
                "an unlabeled split, as many hub datasets' test splits are); pass test= "
                "naming a labeled split, e.g. test='validation', or split train with "
                "dataset['train'].train_test_split(test_size=0.2, stratify_by_column=...)")
    if _inner(kind) is not None:   # a list of ClassLabels: multilabel
        matrix = np.zeros((len(values), len(names)), dtype=np.int64)
        for i, classes in enumerate(values):
            matrix[i, list(classes)] = 1
        return matrix
    if values and isinstance(values[0], str):
        index = {c: k for k, c in enumerate(names)}
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise ModelGateError(f"labels {unknown[:5]} are not in class_names {list(names)}")
        return np.array([index[v] for v in values], dtype=np.int64)
    return np.asarray(values, dtype=np.int64)


def _images(ds: Any, column: str, name: str, size: tuple[int, int] | None
            ) -> tuple[np.ndarray, tuple[str, ...]]:
    from PIL import Image

    images = []
    for batch in ds.select_columns([column]).iter(batch_size=256):
        for item in batch[column]:
            where = f"{name}[{len(images)}]"
            if isinstance(item, dict):   # Image(decode=False): the file's bytes or path
                item = Image.open(io.BytesIO(item["bytes"]) if item.get("bytes")
                                  else item["path"])
            if not isinstance(item, Image.Image):
                raise ModelGateError(f"{where}: column {column!r} holds "
                                     f"{type(item).__name__}, not images; cast it with "
                                     "dataset.cast_column(column, datasets.Image())")
            images.append(pil_pixels(item, size, where))
    if len({img.ndim for img in images}) > 1:   # grayscale beside RGB: widened, as files are
        images = [img if img.ndim == 3 else np.stack([img] * 3, axis=-1) for img in images]
    first = images[0].shape
    odd = next((i for i, img in enumerate(images) if img.shape != first), None)
    if odd is not None:
        raise ModelGateError(f"images of mixed sizes in the {name} split: {name}[0] is "
                             f"{first}, {name}[{odd}] is {images[odd].shape}; pass size=(H, W) "
                             "to from_hf to resize them")
    return np.stack(images), tuple(content_id(img) for img in images)
