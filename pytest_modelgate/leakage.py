"""Find test images that also sit in the train split.

Images are compared by their decoded pixels, so the same picture saved as PNG in train and
as BMP in test is caught; a horizontally mirrored copy is caught too (a common augmentation
that leaks the label). Near-duplicate search (resized, lossy re-encodes) builds on this
staged design in a later version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import ImageSet, content_id
from .errors import user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


@dataclass(frozen=True)
class LeakPair:
    """One test image found in train, and how (``"exact"`` or ``"flipped"``)."""

    train_index: int
    test_index: int
    kind: str


def find_leaks(train: ImageSet, test: ImageSet) -> list[LeakPair]:
    """Every (train, test) pair whose pixels are identical, or identical after a mirror flip.

    Example:
        >>> import numpy as np
        >>> from pytest_modelgate.data import ImageSet
        >>> a = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
        >>> tr = ImageSet(a, [0], ("x",), name="train")
        >>> te = ImageSet(a[:, :, ::-1], [0], ("x",), name="test")
        >>> find_leaks(tr, te)
        [LeakPair(train_index=0, test_index=0, kind='flipped')]
    """
    by_id: dict[str, list[int]] = {}
    for i, cid in enumerate(train.ids):
        by_id.setdefault(cid, []).append(i)
    pairs: list[LeakPair] = []
    for j, cid in enumerate(test.ids):
        hits = by_id.get(cid)
        if hits:
            pairs.extend(LeakPair(i, j, "exact") for i in hits)
            continue
        flipped = content_id(np.ascontiguousarray(test.images[j][:, ::-1]))
        for i in by_id.get(flipped, ()):
            pairs.append(LeakPair(i, j, "flipped"))
    return pairs
