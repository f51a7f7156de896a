"""Splits from arrays, torch datasets and scikit-learn's digits, and the seeded stratified
split that keeps identical images on one side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelGateError, user_error_frames
from .decode import CONVERTIBLE_MODES
from .splits import ImageSet, Splits, content_id

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def from_arrays(
    x_train: np.ndarray,
    y_train: Sequence[int] | np.ndarray,
    x_test: np.ndarray,
    y_test: Sequence[int] | np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
) -> Splits:
    """Splits from uint8 image arrays and integer labels, or for a multilabel task
    (N, classes) 0/1 matrices (column k: the image shows class k).

    ``class_names`` defaults to the label values as strings (``"0"``, ``"1"`` ...), for
    matrices to the column numbers (``"0"`` .. ``"K-1"``).

    Example:
        >>> import numpy as np
        >>> x = np.zeros((4, 8, 8), np.uint8)
        >>> y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
        >>> from_arrays(x, y, x[:2], y[:2], class_names=["cat", "dog"]).multilabel
        True
    """
    train_labels = np.asarray(y_train)
    test_labels = np.asarray(y_test)
    if class_names is None and train_labels.ndim == 2:
        class_names = [str(i) for i in range(train_labels.shape[1])]
    elif class_names is None:
        top = int(max(train_labels.max(initial=0), test_labels.max(initial=0)))
        class_names = [str(i) for i in range(top + 1)]
    names = tuple(class_names)
    return Splits(
        train=ImageSet(np.asarray(x_train), train_labels, names, name="train"),
        test=ImageSet(np.asarray(x_test), test_labels, names, name="test"),
    )


def stratified_split(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    class_names: Sequence[str],
    test_fraction: float = 0.3,
    seed: int = 0,
    sources: Sequence[str] | None = None,
) -> Splits:
    """A seeded, stratified train/test split that keeps identical images on one side.

    Identical images (same content id) are grouped before splitting, so an exact duplicate
    can never land in both train and test. ``sources`` (file paths) follow their images.
    """
    if not 0 < test_fraction < 1:
        raise ModelGateError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images = np.asarray(images)
    label_arr = np.asarray(labels).astype(np.int64)
    ids = [content_id(img) for img in images]
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(images), dtype=bool)
    for cls in np.unique(label_arr):
        members = np.flatnonzero(label_arr == cls)
        groups: dict[str, list[int]] = {}
        for i in members:
            groups.setdefault(ids[i], []).append(int(i))
        keys = list(groups)
        rng.shuffle(keys)
        target = round(len(members) * test_fraction)
        taken = 0
        for key in keys:
            if taken >= target:
                break
            test_mask[groups[key]] = True
            taken += len(groups[key])
    # An image repeated under two labels must still sit on one side.
    test_ids = {ids[i] for i in np.flatnonzero(test_mask)}
    test_mask |= np.array([i in test_ids for i in ids])
    names = tuple(class_names)
    src = None if sources is None else np.asarray(list(sources), dtype=object)

    def part(mask: np.ndarray, name: str) -> ImageSet:
        return ImageSet(images[mask], label_arr[mask], names, name=name,
                        sources=None if src is None else tuple(src[mask]))

    return Splits(train=part(~test_mask, "train"), test=part(test_mask, "test"))


def load_digits(*, test_fraction: float = 0.3, seed: int = 0) -> Splits:
    """scikit-learn's handwritten digits (1,797 real 8x8 scans) as 0-255 uint8 splits."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        from ..errors import AdapterUnavailableError

        raise AdapterUnavailableError(
            "load_digits needs scikit-learn: pip install scikit-learn"
        ) from None
    bunch = sk_load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    return stratified_split(images, bunch.target, class_names=[str(d) for d in range(10)],
                            test_fraction=test_fraction, seed=seed)


def _to_uint8_image(item: Any, where: str) -> np.ndarray:
    """A PIL image, a CHW tensor (float 0-1 or uint8) or an HWC array as HWC/HW uint8."""
    from PIL import Image

    if isinstance(item, Image.Image):
        if item.mode not in CONVERTIBLE_MODES:
            raise ModelGateError(f"{where}: image mode {item.mode!r} does not convert to 8-bit")
        return np.asarray(item if item.mode in ("L", "RGB") else item.convert("RGB"))
    arr = item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item)
    if hasattr(item, "detach") and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)  # torch tensors are channels first
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ModelGateError(f"{where}: float pixels must lie in [0, 1] (ToTensor()); got "
                                 f"{arr.min():.3g}..{arr.max():.3g}; drop Normalize() here")
        arr = np.round(arr * 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


def from_torch(train: Any, test: Any, *, class_names: Sequence[str] | None = None) -> Splits:
    """Splits from two torch ``Dataset``s yielding ``(image, label)``: PIL images, CHW
    tensors (``ToTensor()``, without ``Normalize``) or HWC arrays.

    ``class_names`` defaults to the train dataset's ``classes`` attribute (ImageFolder,
    torchvision datasets), else the label values.
    """
    def read(dataset: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        if len(dataset) == 0:
            raise ModelGateError(f"{name} dataset is empty: it needs at least one image")
        images, labels = [], []
        for i in range(len(dataset)):
            image, label = dataset[i]
            images.append(_to_uint8_image(image, f"{name}[{i}]"))
            labels.append(int(label))
        shapes = {a.shape for a in images}
        if len(shapes) > 1:
            raise ModelGateError(f"{name} dataset yields images of shapes {sorted(shapes)[:3]}; "
                                 "add a Resize transform so all share one size")
        return np.stack(images), np.asarray(labels)

    x_train, y_train = read(train, "train")
    x_test, y_test = read(test, "test")
    if class_names is None and getattr(train, "classes", None) is not None:
        class_names = [str(c) for c in train.classes]
    return from_arrays(x_train, y_train, x_test, y_test, class_names=class_names)
