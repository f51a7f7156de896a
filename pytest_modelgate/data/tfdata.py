"""``from_tf``: splits from ``tf.data.Dataset``s such as Keras'
``image_dataset_from_directory`` returns. The datasets are read through their own
``as_numpy_iterator()``, so this module imports no TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelGateError, user_error_frames
from .splits import ImageSet, Splits

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def from_tf(train_ds: Any, test_ds: Any, *, class_names: Sequence[str] | None = None
            ) -> Splits:
    """Splits from two ``tf.data.Dataset``s of ``(images, labels)``, batched or not, as
    ``keras.utils.image_dataset_from_directory`` yields them: float32 pixels 0-255 (or
    uint8), labels as integers (``label_mode="int"``), one-hot rows (``"categorical"``)
    or 0/1 (``"binary"``). A row of several ones (a multi-hot dataset of your own) makes
    the labels a multilabel 0/1 matrix.

    ``class_names`` defaults to the datasets' ``class_names`` attribute (which
    ``image_dataset_from_directory`` sets and ``.map()``/``.prefetch()`` drop: pass it
    then), else the label values. One-channel images become (H, W), as ``from_folder``
    reads a grayscale file, so both give one content id per picture.

    Raises:
        ModelGateError: a dataset without labels (``label_mode=None``), train and test
            with other class names, float pixels outside 0-255 or rescaled to 0-1, an
            empty dataset, images of mixed sizes.

    Example:
        >>> import keras  # doctest: +SKIP
        >>> splits = from_tf(  # doctest: +SKIP
        ...     keras.utils.image_dataset_from_directory("data/train", image_size=(224, 224)),
        ...     keras.utils.image_dataset_from_directory("data/test", image_size=(224, 224)))
    """
    names = [getattr(ds, "class_names", None) for ds in (train_ds, test_ds)]
    if class_names is None:
        if names[0] is not None and names[1] is not None and list(names[0]) != list(names[1]):
            raise ModelGateError(
                f"the train dataset's class_names {list(names[0])} differ from the test "
                f"dataset's {list(names[1])}: load both from folders with the same class "
                "folders, or pass class_names= (the labels are indices into it)")
        class_names = names[0] if names[0] is not None else names[1]
    x_train, y_train = _read(train_ds, "train")
    x_test, y_test = _read(test_ds, "test")
    width = next((y.shape[1] for y in (y_train, y_test) if y.ndim == 2), None)
    if class_names is None:
        top = max(int(y_train.max(initial=0)), int(y_test.max(initial=0))) + 1
        class_names = [str(i) for i in range(width or top)]
    names_t = tuple(str(c) for c in class_names)
    if width is not None:   # one split multi-hot: the other's indices as 0/1 rows too
        y_train, y_test = (y if y.ndim == 2 else np.eye(len(names_t), dtype=np.int64)[y]
                           for y in (y_train, y_test))
    return Splits(train=ImageSet(x_train, y_train, names_t, name="train"),
                  test=ImageSet(x_test, y_test, names_t, name="test"))


def _read(ds: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Every image of ``ds`` as uint8 and every label as an index (or a 0/1 row)."""
    if not hasattr(ds, "as_numpy_iterator"):
        raise ModelGateError(f"from_tf: the {name} dataset is a {type(ds).__name__}, not a "
                             "tf.data.Dataset; for torch datasets use from_torch, for "
                             "arrays from_arrays")
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for element in ds.as_numpy_iterator():
        if isinstance(element, dict):
            raise ModelGateError(
                f"the {name} dataset yields dicts (keys {sorted(element)}); from_tf takes "
                "(image, label) pairs: tfds.load(..., as_supervised=True), or "
                ".map(lambda d: (d['image'], d['label']))")
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            raise ModelGateError(
                f"the {name} dataset yields images without labels (label_mode=None?); load "
                "it with label_mode='int' (or 'categorical', 'binary') so each image has "
                "its class")
        x, y = np.asarray(element[0]), np.asarray(element[1])
        if _is_batch(x):
            images += list(x)
            labels += list(y.reshape(len(x), -1))
        else:
            images.append(x)
            labels.append(y.reshape(-1))
    if not images:
        raise ModelGateError(f"the {name} dataset is empty: it needs at least one image")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ModelGateError(f"the {name} dataset yields images of shapes "
                             f"{sorted(shapes)[:3]}; load it with image_size=(H, W) (or "
                             "resize in a map) so all share one size")
    return _pixels(np.stack(images), name), _indices(np.stack(labels), name)


def _is_batch(x: np.ndarray) -> bool:
    """(B, H, W, C) and (B, H, W) are batches; (H, W, C) and (H, W) single images."""
    return x.ndim == 4 or (x.ndim == 3 and x.shape[-1] not in (1, 3, 4))


def _pixels(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 4 and x.shape[-1] == 4:
        raise ModelGateError(f"the {name} dataset yields 4-channel (RGBA) images; load it "
                             "with color_mode='rgb' (or 'grayscale')")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]   # a grayscale file read by from_folder is (H, W): the same ids
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.number):
        raise ModelGateError(f"the {name} dataset yields {x.dtype} images; yield numbers")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255 or not np.isfinite([low, high]).all():
        raise ModelGateError(
            f"the {name} dataset yields pixels in {low:.3g}..{high:.3g}: from_tf expects "
            "0-255, as image_dataset_from_directory yields them; pass the dataset before "
            "any Rescaling or normalisation")
    if np.issubdtype(x.dtype, np.floating) and 0 < high <= 1:
        raise ModelGateError(
            f"the {name} dataset yields float pixels in {low:.3g}..{high:.3g}, which looks "
            "rescaled to 0-1 (Rescaling(1/255)); from_tf expects 0-255, as "
            "image_dataset_from_directory yields them: pass the dataset before rescaling")
    return np.round(x).astype(np.uint8)


def _indices(y: np.ndarray, name: str) -> np.ndarray:
    """Labels as class indices: ints, ``binary``'s one column, or ``categorical``'s one-hot
    rows; rows of several ones stay a 0/1 matrix (multilabel)."""
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isin(y, np.round(y))):
        raise ModelGateError(f"the {name} dataset yields labels such as {y[0].tolist()}; "
                             "from_tf takes class indices or one-hot/0-1 rows")
    y = y.astype(np.int64)
    if y.shape[1] == 1:
        return y[:, 0]   # label_mode="int" or "binary"
    if not np.isin(y, (0, 1)).all():
        raise ModelGateError(f"the {name} dataset yields label rows such as {y[0].tolist()}; "
                             "a row of labels must be one-hot or 0/1")
    if (y.sum(axis=1) == 1).all():
        return y.argmax(axis=1)   # label_mode="categorical"
    return y
