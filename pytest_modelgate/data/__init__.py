"""Datasets for gates: image arrays with labels, class names and stable content ids.

A gate needs to name samples (leakage pairs, cached runs, baselines), so every sample gets a
content id: a hash of its decoded pixels. The same picture saved as PNG or BMP has the same id.

One module per concern: ``splits.py`` (``ImageSet``, ``Splits``, content ids),
``sources.py`` (arrays, torch datasets, scikit-learn's digits, the stratified split),
``folders.py`` (``from_folder``), ``manifest.py`` (``from_manifest``: a CSV or Parquet table),
``tfdata.py`` (``from_tf``: ``tf.data`` datasets), ``hfdata.py`` (``from_hf``: Hugging Face
datasets), ``decode.py`` (image files to arrays, on every core) and ``arraycache.py`` (the
decoded arrays kept between loads).

Example:
    >>> import numpy as np
    >>> x = np.zeros((4, 8, 8), dtype=np.uint8); x[1] = 1; x[3] = 3
    >>> splits = from_arrays(x[:2], [0, 1], x[2:], [0, 1], class_names=["a", "b"])
    >>> splits.train.class_names
    ('a', 'b')
"""

from __future__ import annotations

from .arraycache import default_array_cache
from .decode import IMAGE_SUFFIXES
from .folders import from_folder
from .hfdata import from_hf
from .manifest import from_manifest
from .sources import from_arrays, from_torch, load_digits, stratified_split
from .splits import ImageSet, Splits, content_id
from .tfdata import from_tf

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageSet",
    "Splits",
    "content_id",
    "default_array_cache",
    "from_arrays",
    "from_folder",
    "from_hf",
    "from_manifest",
    "from_tf",
    "from_torch",
    "load_digits",
    "stratified_split",
]
