"""What the stages need of each split, from ImageSets or folders, and the thumbnail
store that keeps it between scans."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import IMAGE_SUFFIXES, ImageSet, content_id
from ..data.decode import is_image_file, read_image
from ..errors import ModelGateError, ModelGateWarning, user_error_frames
from ..gate import current_gate
from .hashing import THUMB, _features

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

# Images smaller than this (either side) are compared by pixels only: scikit-learn's 8x8
# digits by one writer correlate at 0.97-0.99 without being the same scan, so a
# near-duplicate of so few pixels cannot be told from a look-alike.
MIN_NEAR_SIDE = 16


# --- preparing images ---------------------------------------------------------------------

@dataclass
class _Prepared:
    """What the stages need of one split: ids (plain and mirrored), thumbnails, labels."""

    name: str
    ids: list[str]
    flipped_ids: list[str]
    grey: np.ndarray  # (n, 32, 32) uint8: 1 kB an image (float32 took 2 GB for 500,000)
    labels: list[str]  # class names; for folders, each file's folder name
    describe: Callable[[int], str]
    keys: list[set[str]]  # what allow= entries may name: id, source path, "split[index]"
    tiny: np.ndarray  # (n,) bool: under MIN_NEAR_SIDE pixels, compared by pixels only
    pixels: Callable[[int], np.ndarray] | None = None  # the image itself (read again for files)
    _features: tuple | None = None

    def features(self) -> tuple[np.ndarray, ...]:
        """Median hashes and their mirrors, projection hashes and their mirrors, 16x16 rows
        and mirrored rows: computed once."""
        if self._features is None:
            self._features = _features(self.grey)
        return self._features


def _grey_thumbnail(image: Any) -> np.ndarray:
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if img.mode != "L":
        img = img.convert("RGB").convert("L")
    if img.size != (THUMB, THUMB):
        img = img.resize((THUMB, THUMB), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


class _ThumbnailStore:
    """What the stages need of each image, kept between scans: its mirrored content id, its
    32x32 greyscale thumbnail (uint8) and tininess, by content id, and for files also by
    path, size and modification time (so a rerun reads no unchanged file). One ``.npz``
    (no pickle) replaced whole under a file lock; ``directory=None`` keeps nothing.
    ``hashed`` counts the images this process thumbnailed, ``from_cache`` those it found."""

    NAME = "leakage-thumbnails-v1.npz"

    def __init__(self, directory: Path | None) -> None:
        self.path = None if directory is None else Path(directory) / self.NAME
        self.rows: dict[str, int] = {}
        self.files: dict[str, int] = {}
        self.ids: list[str] = []
        self.flipped: list[str] = []
        self.tiny: list[bool] = []
        self.thumbs: list[np.ndarray] = []
        self.added = 0
        self.hashed = self.from_cache = 0
        if self.path is not None:
            self._read()

    def _read(self) -> None:
        assert self.path is not None
        from ..cache import UNREADABLE

        try:
            with np.load(self.path, allow_pickle=False) as z:
                ids, flipped = z["ids"].tolist(), z["flipped"].tolist()
                tiny, thumbs = z["tiny"].tolist(), z["thumbs"]
                files, file_rows = z["files"].tolist(), z["file_rows"].tolist()
            if not (len(ids) == len(flipped) == len(tiny) == len(thumbs)
                    and thumbs.shape[1:] == (THUMB, THUMB) and thumbs.dtype == np.uint8
                    and all(0 <= r < len(ids) for r in file_rows)):
                raise ValueError("columns of different lengths or shapes")
            by_file = dict(zip(files, file_rows, strict=True))
        except UNREADABLE:
            return  # absent or damaged: thumbnails are made again, and the file rewritten
        self.ids, self.flipped, self.tiny = ids, flipped, tiny
        self.thumbs = list(thumbs)
        self.rows = {cid: r for r, cid in enumerate(ids)}
        self.files = by_file

    def by_id(self, cid: str) -> tuple[str, np.ndarray, bool] | None:
        r = self.rows.get(cid)
        if r is None:
            return None
        self.from_cache += 1
        return self.flipped[r], self.thumbs[r], self.tiny[r]

    def by_file(self, key: str) -> tuple[str, str, np.ndarray, bool] | None:
        r = self.files.get(key)
        if r is None:
            return None
        self.from_cache += 1
        return self.ids[r], self.flipped[r], self.thumbs[r], self.tiny[r]

    def add(self, cid: str, flipped: str, thumb: np.ndarray, tiny: bool,
            file_key: str | None = None) -> None:
        self.hashed += 1
        if self.path is None:
            return
        if cid not in self.rows:
            self.rows[cid] = len(self.ids)
            self.ids.append(cid)
            self.flipped.append(flipped)
            self.thumbs.append(np.asarray(thumb, dtype=np.uint8))
            self.tiny.append(bool(tiny))
        if file_key is not None:
            self.files[file_key] = self.rows[cid]
        self.added += 1

    def save(self) -> None:
        """Write what was added (merged with what another process wrote meanwhile)."""
        if self.path is None or not self.added:
            return
        import tempfile

        from filelock import FileLock

        mine = self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.path) + ".lock"):
                merged = _ThumbnailStore(self.path.parent)  # as it is on disk now
                for cid, r in mine.rows.items():
                    if cid not in merged.rows:
                        merged.add(cid, mine.flipped[r], mine.thumbs[r], mine.tiny[r])
                for key, r in mine.files.items():
                    merged.files[key] = merged.rows[mine.ids[r]]
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".npz")
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)  # as np.save would leave it, not mkstemp's 0600
                try:
                    with os.fdopen(fd, "wb") as f:
                        np.savez(f, ids=np.array(merged.ids, dtype=str),
                                 flipped=np.array(merged.flipped, dtype=str),
                                 tiny=np.array(merged.tiny, dtype=bool),
                                 thumbs=np.stack(merged.thumbs).astype(np.uint8),
                                 files=np.array(list(merged.files), dtype=str),
                                 file_rows=np.array(list(merged.files.values()), dtype=np.int64))
                    os.replace(tmp, self.path)  # whole or not at all
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        except OSError as exc:
            warnings.warn(f"leakage thumbnails not cached in {self.path.parent}: {exc}",
                          ModelGateWarning, stacklevel=3)


def _open_store(cache: Any) -> _ThumbnailStore:
    if cache is None:  # the running gate test's run cache, if any
        gate = current_gate()
        return _ThumbnailStore(gate.run_cache if gate is not None else None)
    if cache is False:
        return _ThumbnailStore(None)
    if isinstance(cache, (str, os.PathLike)):
        return _ThumbnailStore(Path(cache))
    raise ModelGateError(f"cache={cache!r}: pass a folder path, None (the run cache of a "
                         "gate test under pytest --modelgate) or False for none")


def _from_imageset(data: ImageSet, store: _ThumbnailStore) -> _Prepared:
    images = data.images
    grey = np.empty((len(images), THUMB, THUMB), dtype=np.uint8)
    flipped: list[str] = []
    tiny = np.empty(len(images), dtype=bool)
    for i, cid in enumerate(data.ids):
        hit = store.by_id(cid)
        if hit is None:
            image = images[i]
            hit = (content_id(np.ascontiguousarray(image[:, ::-1])),
                   _grey_thumbnail(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1
                                   else image),
                   min(image.shape[:2]) < MIN_NEAR_SIDE)
            store.add(cid, *hit)
        flipped.append(hit[0])
        grey[i] = hit[1]
        tiny[i] = hit[2]
    keys = [{data.ids[i], f"{data.name}[{i}]", str(i)} | (
        {data.sources[i]} if data.sources is not None else set()) for i in range(len(images))]
    return _Prepared(data.name, list(data.ids), flipped, grey,
                     [data.class_names[int(v)] for v in data.labels], data.describe, keys, tiny,
                     images.__getitem__)


def _read_one(path: str) -> tuple[str, str, np.ndarray, bool] | ModelGateError:
    """Content ids (plain, mirrored), greyscale thumbnail and tininess of one file; the
    error instead when it cannot be read (raised by the caller, in file order)."""
    try:
        rgb = read_image(path, None)
    except ModelGateError as exc:
        return exc
    return (content_id(rgb), content_id(np.ascontiguousarray(rgb[:, ::-1])),
            _grey_thumbnail(rgb), min(rgb.shape[:2]) < MIN_NEAR_SIDE)


def _image_files(root: Path) -> list[str]:
    """Every image file below ``root`` (hidden folders and the platforms' files left out,
    by ``from_folder``'s rule), sorted; by os.walk, whose directory scan tells files apart
    without a stat per file (rglob and is_file took 2 s for 60,000)."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(folder, n) for n in names if is_image_file(n)]
    return sorted(files)


def _file_key(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # read below, and named there
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _from_folder(root: Path, name: str, on_error: str, store: _ThumbnailStore) -> _Prepared:
    """Every image file below ``root``, any size and mode; the label is the name of the
    file's folder (so a train/test tree's class folders give the labels). Files the store
    does not know (by path, size and modification time) are decoded on every core
    (``processes.parallel_map``)."""
    from ..processes import parallel_map

    files = _image_files(root)
    file_keys = [_file_key(f) for f in files]
    results: list[Any] = [store.by_file(k) if k is not None else None for k in file_keys]
    missing = [n for n, r in enumerate(results) if r is None]
    todo = [files[n] for n in missing]
    for n, result in zip(missing, parallel_map(_read_one, todo, read_ahead=todo), strict=True):
        results[n] = result
        if not isinstance(result, ModelGateError):
            store.add(result[0], result[1], result[2], result[3], file_keys[n])
    ids, flipped, greys, labels, sources, tiny = [], [], [], [], [], []
    for path, result in zip(files, results, strict=True):
        if isinstance(result, ModelGateError):
            if on_error == "skip":
                continue
            raise ModelGateError(f"{result}, or pass on_error='skip' to leave unreadable "
                                 "files out")
        ids.append(result[0])
        flipped.append(result[1])
        greys.append(result[2])
        tiny.append(result[3])
        labels.append(os.path.basename(os.path.dirname(path)))
        sources.append(path)
    if not sources:
        raise ModelGateError(f"{name}: no image files below {root} (looked for "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    grey = np.stack(greys).astype(np.uint8)
    keys = [{ids[i], sources[i], f"{name}[{i}]", str(i)} for i in range(len(sources))]
    return _Prepared(name, ids, flipped, grey, labels, sources.__getitem__, keys,
                     np.array(tiny, dtype=bool), lambda i: read_image(sources[i], None))


def _prepare(value: Any, argname: str, on_error: str, store: _ThumbnailStore) -> _Prepared:
    if isinstance(value, ImageSet):
        return _from_imageset(value, store)
    if isinstance(value, (str, Path)):
        root = Path(value)
        if not root.is_dir():
            raise ModelGateError(f"{argname}={str(value)!r} is not a folder; pass an ImageSet "
                                 "(splits.train), a Splits, or a folder of images")
        return _from_folder(root, argname, on_error, store)
    raise ModelGateError(f"{argname} must be an ImageSet (splits.{argname}), a Splits or a "
                         f"folder path, got {type(value).__name__}")
