"""Decoding image files to uint8 arrays: one file (``read_image``), a list on every core
(``decode_all``), or a list straight into a shared array such as the array cache's
memory-mapped file (``decode_shared``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelGateError, user_error_frames
from ..processes import parallel_map, start_read_ahead, with_children, worker_count
from .splits import content_id

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_SUFFIX_TUPLE = tuple(sorted(IMAGE_SUFFIXES))  # str.endswith takes a tuple: one C call a name
# Files the platforms put beside a user's images: Finder's ``.DS_Store`` and AppleDouble
# ``._name.jpg`` (named like an image, holding none), Explorer's ``Thumbs.db`` and
# ``desktop.ini``, and any hidden ``.name``. Never samples: skipped, and counted.
PLATFORM_FILES = frozenset({"thumbs.db", "desktop.ini"})
CONVERTIBLE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}


def is_platform_file(name: str) -> bool:
    """Whether a file name is the platform's, not the user's: hidden (``.DS_Store``,
    ``._photo.jpg``, ``.x.png``), ``Thumbs.db`` or ``desktop.ini``."""
    return name.startswith(".") or name.lower() in PLATFORM_FILES


def is_image_file(name: str) -> bool:
    """Whether a file name is an image sample: an image suffix, and not a platform file."""
    return name.lower().endswith(_SUFFIX_TUPLE) and not is_platform_file(name)


def list_images(folder: str | Path) -> tuple[list[str], list[str]]:
    """The image file names in one folder and the platform files left out, both sorted.
    ``from_folder`` and the leakage scan list files by this one rule."""
    names = os.listdir(folder)
    skipped = [n for n in names if is_platform_file(n)]
    if skipped:
        left_out = set(skipped)
        names = [n for n in names if n not in left_out]
    # Names sorted as strings: sorting 60,000 Path objects took longer than loading the
    # whole cached split, and plain names (listdir) cost less than DirEntry objects.
    images = [n for n in names if n.lower().endswith(_SUFFIX_TUPLE)]
    images.sort()
    skipped.sort()
    return images, skipped


def read_image(path: str | Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image file as (H, W) or (H, W, 3) uint8, resized to ``size=(H, W)`` if given.

    Raises:
        ModelGateError: the file cannot be read, or its pixels (16-bit, float) do not
            convert to 8 bits without loss; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            opened.load()
            return pil_pixels(opened, size, f"image {path}")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ModelGateError(
            f"cannot read image {path}: {exc}; fix or remove the file"
        ) from None


def pil_pixels(im: Any, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """A PIL image as (H, W) or (H, W, 3) uint8 (other 8-bit modes become RGB), resized
    to ``size=(H, W)`` if given; ``where`` names it in the error for a lossy mode."""
    from PIL import Image

    if im.mode not in CONVERTIBLE_MODES:
        kind = "16-bit or float" if im.mode[0] in "IF" else "unsupported"
        raise ModelGateError(
            f"{where} has mode {im.mode!r} ({kind} pixels), which does not "
            "convert to 8-bit RGB without losing data; convert it to 8-bit grayscale "
            "or RGB first"
        )
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def _read_with_id(path: str | Path, size: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    image = read_image(path, size)
    return image, content_id(image)


def decode_all(paths: Sequence[str | Path], size: tuple[int, int] | None
               ) -> tuple[list[np.ndarray], list[str]]:
    """Decode every file, and hash its pixels, on every core (see ``parallel_map``)."""
    from functools import partial

    paths = list(paths)
    pairs = parallel_map(partial(_read_with_id, size=size), paths, read_ahead=paths)
    return [image for image, _ in pairs], [cid for _, cid in pairs]


# What each file's byte in decode_shared's status array says.
_DONE, _OTHER_SHAPE, _UNREADABLE, _NOT_DONE = 0, 1, 2, 3


def decode_shared(paths: list[str], size: tuple[int, int] | None, target: np.ndarray,
                  *, run: int = 500) -> tuple[list[str], np.ndarray, int | None]:
    """Decode ``paths`` into the rows of ``target`` (a shared mapping: the array cache's
    ``.npy``) on every core, with each file's content id and its size and time (taken
    before reading: a file changed meanwhile is a miss next time).

    This process and ``workers - 1`` forked children take interleaved runs of ``run``
    files and write ids, stats and a status per file into anonymous shared memory, so
    nothing is pickled and no pool is managed: on CIFAR-10's 60,000 JPEGs and 2 cores,
    a ProcessPoolExecutor (what ``parallel_map`` used then) took 2.2-2.4 s for what this does in
    2.0-2.2 s, the difference that held the cold load under 1.8x one core (BENCHMARKS.md).

    Returns the ids, the (n, 2) stats, and the index of the first file whose image has
    another shape than ``target``'s rows (None when every file fits). An unreadable file
    raises its ``ModelGateError``, the first in order."""
    import mmap

    n = len(paths)
    ids = np.frombuffer(mmap.mmap(-1, 16 * n), dtype="S16")
    stats = np.frombuffer(mmap.mmap(-1, 16 * n), dtype=np.int64).reshape(n, 2)
    status = np.frombuffer(mmap.mmap(-1, n), dtype=np.uint8)
    status[:] = _NOT_DONE

    where = [0]  # the row this process is at, for the read-ahead
    # A plain view: a row written through np.memmap makes a memmap object per row (10% of
    # the per-file time here).
    pixels = target.view(np.ndarray)

    def decode(rows: Any) -> None:
        for i in rows:
            where[0] = i
            path = paths[i]
            st = os.stat(path)
            try:
                image = read_image(path, size)
            except ModelGateError:
                status[i] = _UNREADABLE
                continue
            if image.shape != target.shape[1:]:
                status[i] = _OTHER_SHAPE
                continue
            pixels[i] = image
            ids[i] = content_id(image).encode()
            stats[i] = st.st_size, st.st_mtime_ns
            status[i] = _DONE

    workers = min(worker_count(), max(1, n // (2 * run)))

    def share(k: int) -> None:
        for start in range(k * run, n, workers * run):
            decode(range(start, min(start + run, n)))

    # The other workers' runs lie at most workers * run rows past this process's row.
    with_children(workers, share,
                  lambda: start_read_ahead(paths, where, lead=2 * workers * run))
    # A child that died (killed, out of memory) left rows undone: decode them here.
    decode(np.flatnonzero(status == _NOT_DONE))
    bad = np.flatnonzero(status != _DONE)
    if len(bad) == 0:
        return ids.astype("U16").tolist(), stats, None
    first = int(bad[0])
    if status[first] == _UNREADABLE:
        read_image(paths[first], size)  # raises the file's error, the first in order
    return [], stats, first
