"""The data model: ``ImageSet`` (one split's images, labels, class names and content ids)
and ``Splits`` (train, test and optionally val over one class list).

A gate needs to name samples (leakage pairs, cached runs, baselines), so every sample gets a
content id: a hash of its decoded pixels. The same picture saved as PNG or BMP has the same id.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelGateError, user_error_frames, warn_user
from ..wording import counted

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def content_id(image: np.ndarray) -> str:
    """Stable id of one image: sha256 over shape, dtype and pixel bytes (first 16 hex digits)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256()
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.data if arr.size else b"")  # the pixel bytes, without a copy
    return h.hexdigest()[:16]


def present_classes(labels: np.ndarray) -> set[int]:
    """The classes a split has images of: the label values, or for a multilabel 0/1 matrix
    the columns with at least one image."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return {int(i) for i in np.flatnonzero(labels.sum(axis=0))}
    return set(np.unique(labels).tolist())


def checked_attributes(attributes: Mapping[str, Sequence[Any]] | None, n: int,
                        where: str) -> dict[str, np.ndarray]:
    """Per-sample attributes as read-only arrays of length ``n``, by attribute name."""
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise ModelGateError(f"{where}: attributes must map names to one value per image "
                             f"(e.g. {{'camera': [...]}}), got {type(attributes).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, values in attributes.items():
        if not isinstance(name, str) or not name:
            raise ModelGateError(f"{where}: attribute names must be non-empty strings, got "
                                 f"{name!r}")
        arr = np.asarray(values)
        if arr.dtype.kind not in "biufUSO" or arr.shape != (n,):
            raise ModelGateError(f"{where}: attribute {name!r} must hold one value per image "
                                 f"({n}), got shape {arr.shape}")
        arr.flags.writeable = False
        out[name] = arr
    return out


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """One split: ``images`` (N, H, W) or (N, H, W, C) uint8, ``labels`` class indices, or
    for a multilabel task an (N, classes) 0/1 matrix (column k: the image shows class k).

    ``sources`` optionally names where each image came from (a file path), for messages.
    ``skipped`` names the files a loader left out as the platform's, not samples
    (``from_folder``: ``.DS_Store``, ``._name.jpg``, ``Thumbs.db``); the repr counts them.
    ``attributes`` maps a name to one value per image (``{"camera": [...]}``): what a
    manifest's other columns say of each image; slices of a gate filter on them.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str = "data"
    sources: tuple[str, ...] | None = None
    ids: tuple[str, ...] = field(init=False)
    # Content ids computed before (the decoded-array cache stores them): not recomputed.
    _ids: tuple[str, ...] | None = field(default=None, repr=False)
    skipped: tuple[str, ...] = ()
    attributes: Mapping[str, Sequence[Any]] | None = None

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.ndim not in (3, 4):
            raise ModelGateError(
                f"{self.name}: images must be (N, H, W) or (N, H, W, C), got shape {images.shape}"
            )
        if images.ndim == 4 and images.shape[-1] not in (1, 3):
            raise ModelGateError(
                f"{self.name}: images need 1 or 3 channels last, got shape {images.shape}; "
                "convert to grayscale or RGB (channels last) first"
            )
        if len(images) == 0:
            raise ModelGateError(f"{self.name} split is empty: it needs at least one image")
        if images.dtype != np.uint8:
            raise ModelGateError(
                f"{self.name}: images must be uint8 pixels 0-255, got {images.dtype}; "
                "scale and convert with (x * 255).round().astype(np.uint8)"
            )
        n = len(self.class_names)
        if labels.shape not in ((len(images),), (len(images), n)):
            raise ModelGateError(
                f"{self.name}: {len(images)} images but labels of shape {labels.shape}; "
                f"pass one integer label per image, or for a multilabel task a "
                f"({len(images)}, {n}) 0/1 matrix (one column per class name)"
            )
        if labels.dtype == np.bool_:
            labels = labels.astype(np.int64)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ModelGateError(f"{self.name}: labels must be integers, got {labels.dtype}")
        if n < 1:
            raise ModelGateError(f"{self.name}: class_names is empty")
        if labels.ndim == 2 and not np.isin(labels, (0, 1)).all():
            row = int(np.flatnonzero(~np.isin(labels, (0, 1)).all(axis=1))[0])
            raise ModelGateError(f"{self.name}: a multilabel matrix holds 0 and 1 only; row "
                                 f"{row} holds {labels[row].tolist()}")
        if labels.ndim == 1 and (labels.min() < 0 or labels.max() >= n):
            raise ModelGateError(
                f"{self.name}: labels must lie in 0..{n - 1} (one per class name), "
                f"found {int(labels.min())}..{int(labels.max())}"
            )
        if self.sources is not None and len(self.sources) != len(images):
            raise ModelGateError(f"{self.name}: sources must name every image")
        images.flags.writeable = False
        labels = labels.astype(np.int64)
        labels.flags.writeable = False
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "attributes",
                           checked_attributes(self.attributes, len(images), self.name))
        known = self._ids if self._ids is not None and len(self._ids) == len(images) else None
        object.__setattr__(self, "ids", known or tuple(content_id(img) for img in images))
        object.__setattr__(self, "_ids", None)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        # Short: pytest prints arguments in tracebacks, and pixel arrays say nothing there.
        shape = "x".join(str(d) for d in self.images.shape[1:])
        names = ", ".join(self.class_names[:5]) + (", ..." if len(self.class_names) > 5 else "")
        left_out = ""
        if self.skipped:
            shown = [os.path.basename(p) for p in self.skipped[:3]]
            more = ", ..." if len(self.skipped) > 3 else ""
            left_out = (f"; {counted(len(self.skipped), 'platform file')} skipped "
                        f"({', '.join(shown)}{more})")
        present = present_classes(self.labels)
        absent = [n for i, n in enumerate(self.class_names) if i not in present]
        none_of = (f"; no images of {', '.join(absent[:3])}" + (", ..." if len(absent) > 3 else "")
                   if absent else "")
        return (f"ImageSet({self.name!r}, {len(self)} images of {shape}, "
                f"{len(self.class_names)} classes: {names}{none_of}{left_out})")

    @property
    def multilabel(self) -> bool:
        """Whether labels are a 0/1 matrix (several classes per image)."""
        return self.labels.ndim == 2

    def describe(self, index: int) -> str:
        """Human name of a sample: its source path when known, else split, index and id."""
        if self.sources is not None:
            return self.sources[index]
        return f"{self.name}[{index}] (id {self.ids[index]})"

    def fingerprint(self) -> str:
        """Hash of every sample id and label, for cache keys and provenance."""
        h = hashlib.sha256()
        h.update("|".join(self.class_names).encode())
        h.update("|".join(self.ids).encode())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]


def with_skipped(data: ImageSet, skipped: list[str] | tuple[str, ...]) -> ImageSet:
    """``data``, just built by a loader, with the files its listing left out. Set in place:
    rebuilding the set would hash every image again for its content ids."""
    object.__setattr__(data, "skipped", tuple(skipped))
    return data


@dataclass(frozen=True, eq=False, repr=False)
class Splits:
    """Train and test (optionally val) splits over the same class names.

    A test or val split without some of train's classes is allowed (a small test set may
    lack a rare class) but warned about with a ``ModelGateWarning`` naming them.
    """

    train: ImageSet
    test: ImageSet
    val: ImageSet | None = None

    def __post_init__(self) -> None:
        parts = [s for s in (self.train, self.test, self.val) if s is not None]
        for part in parts[1:]:
            if part.class_names != self.train.class_names:
                raise ModelGateError(
                    f"{part.name} has class_names {part.class_names} but train has "
                    f"{self.train.class_names}; every split must share one class list"
                )
        if len(self.train.class_names) < 2:
            raise ModelGateError(
                f"only one class ({self.train.class_names[0]!r}): a classifier gate needs "
                "at least two classes"
            )
        if len({p.multilabel for p in parts}) > 1:
            raise ModelGateError("train and test must both be multilabel (0/1 matrices) or "
                                 "both hold one label per image")
        trained = present_classes(self.train.labels)
        for part in parts[1:]:
            unseen = sorted(present_classes(part.labels) - trained)
            if unseen:
                names = [self.train.class_names[i] for i in unseen]
                raise ModelGateError(
                    f"{part.name} has classes {names} that train never shows; "
                    "add training images of those classes or drop them from the test split"
                )
        if len(trained) < 2 and not self.train.multilabel:
            raise ModelGateError(
                "the train split holds a single class: a classifier gate needs at least two"
            )
        for part in parts[1:]:
            missing = sorted(trained - present_classes(part.labels))
            if missing:
                warn_user(self._missing_classes(part, missing))
        shapes = {p.images.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise ModelGateError(
                f"splits hold images of different shapes {sorted(map(str, shapes))}; "
                "resize them to one size (from_folder(..., size=(H, W)) does this)"
            )

    def _missing_classes(self, part: ImageSet, missing: list[int]) -> str:
        """What a split without some of train's classes costs, and where the images go."""
        names = [self.class_names[i] for i in missing]
        counts = [str(int(np.sum(self.train.labels[:, i] if self.train.multilabel
                                 else self.train.labels == i))) for i in missing]
        tally = (", ".join(counts[:-1]) + " and " if len(counts) > 1 else "") + counts[-1]
        one = len(names) == 1
        it = "it" if one else "them"
        head = (f"the {part.name} split has no images of {'class' if one else 'classes'} "
                f"{names} that train has ({tally} train images)")
        where = ""
        if part.sources and Path(part.sources[0]).parent.name in self.class_names:
            base = Path(part.sources[0]).parent.parent   # from_folder: <split>/<class>/file
            where = " under " + ", ".join(f"{base / name}/" for name in names)
        fix = (f"add {part.name} images of {it}{where}, or leave {it} out of train if the "
               f"model need not learn {it}")
        if part is self.val:   # val beside test: loaded and checked, not gated
            return f"{head}; {fix}"
        those = "that class" if one else "those classes"
        return (f"{head}: recall, precision and F1 of {those} show as n/a, a gate on "
                f"{'it' if one else 'one of them'} fails saying so, and macro averages run "
                f"over the classes {part.name} has. Fix: {fix}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def multilabel(self) -> bool:
        """Whether the labels are 0/1 matrices (several classes per image)."""
        return self.train.multilabel

    def __repr__(self) -> str:
        val = f", val={self.val!r}" if self.val is not None else ""
        return f"Splits(train={self.train!r}, test={self.test!r}{val})"

    def fingerprint(self) -> str:
        return "-".join(p.fingerprint() for p in (self.train, self.test, self.val) if p)
