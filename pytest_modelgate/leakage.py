"""Find test images that also sit in the train split: exact copies and near-duplicates.

Stages, each named in every pair it finds:

1. ``pixels``: identical decoded pixels, also after a horizontal mirror (the same picture
   saved as PNG in train and BMP in test; a flipped augmentation copy).
2. ``phash``: a 64-bit perceptual hash of the low DCT frequencies of a 32x32 greyscale
   thumbnail (see ``perceptual_hashes``), computed on the image and its mirror, within a
   Hamming distance;
   each candidate is then confirmed by the correlation of the two 16x16 greyscale
   thumbnails (mirror-aware), which keeps distinct images with similar hashes (two white
   cars on a white background) from being called copies. Finds re-encoded, resized,
   brightened, contrast-changed and noisy copies. With ``geometric`` presets (``strict``),
   test images are then searched again as shifted and turned variants of their thumbnail
   (``_variants``), which finds copies moved by a few pixels or turned a few degrees.

The hash search is multi-index hashing: the 64 bits are four 16-bit chunks, and any two
hashes within distance t agree to within t // 4 bits on at least one chunk (pigeonhole),
so each query probes the few chunk values near its own instead of every train hash. The
cost grows about linearly with the number of images, and memory with the candidates, not
with train x test.
"""

from __future__ import annotations

import contextvars
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from .data import IMAGE_SUFFIXES, ImageSet, _read_image, content_id
from .errors import ModelGateError, ModelGateWarning, user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

THUMB = 32  # the perceptual hash's greyscale thumbnail
SMALL = 16  # the confirming correlation's thumbnail
# Images smaller than this (either side) are compared by pixels only: scikit-learn's 8x8
# digits by one writer correlate at 0.97-0.99 without being the same scan, so a
# near-duplicate of so few pixels cannot be told from a look-alike.
MIN_NEAR_SIDE = 16


@dataclass(frozen=True)
class Preset:
    """Thresholds of the near-duplicate stage. Two 64-bit hashes propose candidates: the
    median DCT hash (imagededup's PHash) within ``max_distance`` bits, confirmed when the
    16x16 greyscale thumbnails correlate at ``min_similarity``; and the projection hash
    (stable under JPEG where the median hash flips bits) within ``projection_distance``,
    confirmed at the stricter ``projection_similarity`` (its neighbourhoods also hold
    different photos of the same simple layout: a ship on a sea, a plane in a sky)."""

    max_distance: int
    min_similarity: float
    catches: str
    projection_distance: int = 8
    projection_similarity: float = 0.98
    geometric: bool = True  # also search shifted and turned variants of each test image


PRESETS = {
    "strict": Preset(10, 0.95, "re-encoded (JPEG 50-95), resized 0.5x-2x, mirrored, "
                               "brightness and contrast +-20%, light noise, greyscale, "
                               "shifted up to 6% of a side, turned up to 5 degrees, and "
                               "combinations", 8, 0.99),
    "loose": Preset(6, 0.97, "the same edits when milder, not shifted or turned; fewer "
                             "pairs to review", 5, 0.995, geometric=False),
}


@dataclass(frozen=True)
class LeakPair:
    """One test image found in train: how (``kind``: ``"exact"``, ``"flipped"``, ``"near"``
    or ``"near-flipped"``), by which ``stage`` (``"pixels"`` or ``"phash"``), and for the
    hash stage its Hamming ``distance`` (with the ``threshold`` used) and the thumbnails'
    ``similarity``."""

    train_index: int
    test_index: int
    kind: str
    stage: str = "pixels"
    distance: int = 0
    threshold: int = 0
    similarity: float = 1.0
    cosine: float = 0.0  # the embedding stage: cosine similarity of the pooled features
    alignment: str = ""  # the hash stage: the shift or turn of the test image that matched


@dataclass
class LeakScan:
    """Everything one scan found: train-test ``pairs`` (allowed ones removed, in
    ``allowed``), duplicates inside the test split (``test_duplicates``, pairs of test
    indices), and ``label_conflicts``: the same image under two different labels, as
    ``(split, index, split, index)``."""

    pairs: list[LeakPair]
    test_duplicates: list[LeakPair] = field(default_factory=list)
    label_conflicts: list[tuple[str, int, str, int]] = field(default_factory=list)
    allowed: list[LeakPair] = field(default_factory=list)
    preset: str = "strict"
    hashed: int = 0  # images decoded and thumbnailed by this scan
    from_cache: int = 0  # images whose thumbnail came from the cache
    pixels_only: int = 0  # images under MIN_NEAR_SIDE px: the hash stage skips them
    # How to name a sample, and its label, per split ("train", "test").
    describe: dict[str, Callable[[int], str]] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)

    @property
    def leaked_test_images(self) -> int:
        return len({p.test_index for p in self.pairs})

    def by_stage(self) -> dict[str, int]:
        """Leaked test images per stage (an image found by two stages counts once, for the
        first)."""
        seen: dict[int, str] = {}
        for p in sorted(self.pairs, key=lambda p: p.stage != "pixels"):
            seen.setdefault(p.test_index, p.stage)
        out: dict[str, int] = {}
        for stage in seen.values():
            out[stage] = out.get(stage, 0) + 1
        return out


# --- preparing images ---------------------------------------------------------------------

@dataclass
class _Prepared:
    """What the stages need of one split: ids (plain and mirrored), thumbnails, labels."""

    name: str
    ids: list[str]
    flipped_ids: list[str]
    grey: np.ndarray  # (n, 32, 32) float32
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
    return np.asarray(img, dtype=np.float32)


# The running gate test's run cache (set by the plugin), where thumbnails are kept.
RUN_CACHE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "modelgate_leakage_cache", default=None)


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
        try:
            with np.load(self.path, allow_pickle=False) as z:
                ids, flipped = z["ids"].tolist(), z["flipped"].tolist()
                tiny, thumbs = z["tiny"].tolist(), z["thumbs"]
                files, file_rows = z["files"].tolist(), z["file_rows"].tolist()
            if not len(ids) == len(flipped) == len(tiny) == len(thumbs):
                raise ValueError("columns of different lengths")
        except (OSError, ValueError, KeyError, EOFError):
            return  # absent or damaged: thumbnails are made again, and the file rewritten
        self.ids, self.flipped, self.tiny = ids, flipped, tiny
        self.thumbs = list(thumbs)
        self.rows = {cid: r for r, cid in enumerate(ids)}
        self.files = dict(zip(files, file_rows, strict=True))

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
    if cache is None:
        return _ThumbnailStore(RUN_CACHE.get())
    if cache is False:
        return _ThumbnailStore(None)
    if isinstance(cache, (str, os.PathLike)):
        return _ThumbnailStore(Path(cache))
    raise ModelGateError(f"cache={cache!r}: pass a folder path, None (the run cache of a "
                         "gate test under pytest --modelgate) or False for none")


def _from_imageset(data: ImageSet, store: _ThumbnailStore) -> _Prepared:
    images = data.images
    grey = np.empty((len(images), THUMB, THUMB), dtype=np.float32)
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
        rgb = _read_image(path, None)
    except ModelGateError as exc:
        return exc
    return (content_id(rgb), content_id(np.ascontiguousarray(rgb[:, ::-1])),
            _grey_thumbnail(rgb), min(rgb.shape[:2]) < MIN_NEAR_SIDE)


def _image_files(root: Path) -> list[str]:
    """Every image file below ``root`` (hidden files and folders left out), sorted; by
    os.walk, whose directory scan tells files apart without a stat per file (rglob and
    is_file took 2 s for 60,000)."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(folder, n) for n in names
                  if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
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
    (``data.parallel_map``)."""
    from .data import parallel_map

    files = _image_files(root)
    file_keys = [_file_key(f) for f in files]
    results: list[Any] = [store.by_file(k) if k is not None else None for k in file_keys]
    missing = [n for n, r in enumerate(results) if r is None]
    for n, result in zip(missing, parallel_map(_read_one, [files[n] for n in missing]),
                         strict=True):
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
    grey = np.stack(greys).astype(np.float32)
    keys = [{ids[i], sources[i], f"{name}[{i}]", str(i)} for i in range(len(sources))]
    return _Prepared(name, ids, flipped, grey, labels, sources.__getitem__, keys,
                     np.array(tiny, dtype=bool), lambda i: _read_image(sources[i], None))


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


# --- the perceptual hash --------------------------------------------------------------------

def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    d[0] /= np.sqrt(2)
    return d


_DCT8 = _dct_matrix(THUMB)[:8]
# A mirror flips the sign of the odd horizontal frequencies: coefficient (k, l) by (-1)^l.
_MIRROR_SIGN = np.tile((-1.0) ** np.arange(8), 8)[1:]
# 64 fixed random directions in the space of the 63 low-frequency AC coefficients.
_PLANES = np.random.default_rng(20261130).standard_normal((63, 64))


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)


# The 2-D DCT's 8x8 lowest frequencies as one (64, 1024) matrix: one matrix product per
# batch of thumbnails (ten times faster than two einsum contractions).
_DCT8x8_T = np.kron(_DCT8, _DCT8).T.astype(np.float32)


def _low_frequencies(grey: np.ndarray) -> np.ndarray:
    """The 8x8 lowest DCT frequencies of (n, 32, 32) thumbnails, as (n, 64) rows."""
    return grey.reshape(len(grey), -1) @ _DCT8x8_T


def _median_bits(coefficients: np.ndarray) -> np.ndarray:
    # The median of the 63 AC coefficients is the 32nd smallest.
    median = np.partition(coefficients[:, 1:], 31, axis=1)[:, 31:32]
    return _pack(coefficients > median)


def median_hashes(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """imagededup's PHash of (n, 32, 32) thumbnails and of their mirrors: each of the 64
    low-frequency DCT coefficients above the median of the 63 AC ones is a 1 bit."""
    c = _low_frequencies(grey)
    mirrored = np.concatenate([c[:, :1], c[:, 1:] * _MIRROR_SIGN], axis=1)
    return _median_bits(c), _median_bits(mirrored)


def _projection_bits(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ac = coefficients[:, 1:] / (np.linalg.norm(coefficients[:, 1:], axis=1, keepdims=True)
                                + 1e-12)
    return _pack(ac @ _PLANES > 0), _pack((ac * _MIRROR_SIGN) @ _PLANES > 0)


def perceptual_hashes(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """64-bit DCT hashes of (n, 32, 32) greyscale thumbnails and of their mirrors.

    The 8x8 lowest DCT frequencies of the thumbnail, without the DC term (brightness) and
    normalised (contrast), are projected on 64 fixed random directions; each bit is a sign.
    The Hamming distance then estimates the angle between the two images' low-frequency
    content (a SimHash). imagededup's PHash thresholds each coefficient at the median
    instead, and coefficients near the median flip under a JPEG re-encode: 48x48 photo
    patches saved at quality 60 moved up to 18 bits that way, and at most 6 this way.
    """
    return _projection_bits(_low_frequencies(grey))


# 2x2 mean pooling from 32x32 to 16x16 as one (1024, 256) matrix, and the column order of
# a 16x16 row's mirror.
_POOL = (np.kron(np.eye(SMALL).repeat(2, axis=1), np.eye(SMALL).repeat(2, axis=1)) / 4).T.astype(
    np.float32)
_MIRROR_COLUMNS = np.arange(SMALL * SMALL).reshape(SMALL, SMALL)[:, ::-1].ravel()


def _small(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm 16x16 thumbnails and their mirrors, as (n, 256) rows."""
    plain = grey.reshape(len(grey), -1).astype(np.float32) @ _POOL
    plain -= plain.mean(axis=1, keepdims=True)
    plain /= np.linalg.norm(plain, axis=1, keepdims=True) + 1e-6
    return plain, plain[:, _MIRROR_COLUMNS]


def _features(grey: np.ndarray) -> tuple[np.ndarray, ...]:
    """Median hashes and their mirrors, projection hashes and their mirrors, 16x16 rows
    and mirrored rows of (n, 32, 32) thumbnails (the DCT computed once)."""
    c = _low_frequencies(grey)
    mirrored = np.concatenate([c[:, :1], c[:, 1:] * _MIRROR_SIGN], axis=1)
    return (_median_bits(c), _median_bits(mirrored), *_projection_bits(c), *_small(grey))


# --- geometric variants ----------------------------------------------------------------------

# A test image is also searched as it would look moved by up to 2 px of its 32 px thumbnail
# (6% of a side) in any direction, or turned by ROTATION degrees either way with black or
# mirrored corners: a shifted copy is then an exact match of one variant, and a turn of
# 3-5 degrees is within 1 degree of one (turns of 1-2 degrees already pass as they are).
SHIFT = 2
ROTATION = 4.0
# Hamming radius of a shifted variant's search, median hash and projection hash: a shift
# that lines up is all but the copy, so one bit per 16-bit chunk, and none for the
# projection hash (whose neighbourhoods are crowded). A turn a degree off moves the median
# hash up to 10 bits: turns search at the preset's distance.
VARIANT_DISTANCES = (7, 3)


# 28 alignments tried give a photo of a simple layout (a ship on a sea) 28 chances to
# correlate with another (a plane on a field) at 16x16. A variant's pair must also agree
# in fine detail: the correlation of the 32x32 thumbnails less their 4x4 block means. On
# CIFAR-10, shifted, turned and re-encoded copies scored 0.80 or more (1st percentile);
# the one pair of different photos the variants confirmed without it scored 0.59.
MIN_DETAIL = 0.7


def _detail_agreement(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of two 32x32 thumbnails' fine detail (each less its 4x4 block means)."""
    def detail(g: np.ndarray) -> np.ndarray:
        g = g.astype(np.float64)
        blocks = g.reshape(THUMB // 4, 4, THUMB // 4, 4).mean(axis=(1, 3))
        d = g - blocks.repeat(4, axis=0).repeat(4, axis=1)
        return d.ravel() / (np.linalg.norm(d) + 1e-9)

    return float(detail(x) @ detail(y))


def _rotation_sampler(angle: float, corners: str) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of a 32x32 thumbnail turned by ``angle`` degrees about its
    centre: four source pixel indices and weights per output pixel, each (4, 1024). Corners
    the turn uncovers are black (``corners="black"``) or mirror the image (``"reflect"``)."""
    t = np.deg2rad(angle)
    y, x = np.mgrid[0:THUMB, 0:THUMB].astype(np.float64) - (THUMB - 1) / 2
    sx = np.cos(t) * x - np.sin(t) * y + (THUMB - 1) / 2
    sy = np.sin(t) * x + np.cos(t) * y + (THUMB - 1) / 2
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = sx - x0, sy - y0
    index, weight = [], []
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        cx, cy = x0 + dx, y0 + dy
        if corners == "black":
            w = np.where((cx < 0) | (cx >= THUMB) | (cy < 0) | (cy >= THUMB), 0.0, w)
            cx, cy = np.clip(cx, 0, THUMB - 1), np.clip(cy, 0, THUMB - 1)
        else:  # reflect about the edge pixels, as numpy's "reflect" padding
            cx = np.abs(cx)
            cx = np.where(cx > THUMB - 1, 2 * (THUMB - 1) - cx, cx)
            cy = np.abs(cy)
            cy = np.where(cy > THUMB - 1, 2 * (THUMB - 1) - cy, cy)
        index.append((cy * THUMB + cx).astype(np.int64).ravel())
        weight.append(w.ravel())
    return np.stack(index), np.stack(weight).astype(np.float32)


_ROTATIONS = {(angle, corners): _rotation_sampler(angle, corners)
              for angle in (-ROTATION, ROTATION) for corners in ("black", "reflect")}


def _variants(grey: np.ndarray) -> Iterator[tuple[str, np.ndarray, bool]]:
    """(description, (n, 32, 32) views, exact) for each geometric variant of the
    thumbnails; a shift is ``exact`` (it lines up with a shifted copy), a turn is within a
    degree of the copy's."""
    padded = np.pad(grey, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)), mode="edge")
    for dy in range(-SHIFT, SHIFT + 1):
        for dx in range(-SHIFT, SHIFT + 1):
            if dx or dy:
                view = padded[:, SHIFT - dy:SHIFT - dy + THUMB, SHIFT - dx:SHIFT - dx + THUMB]
                yield (f"shifted {dx / THUMB:+.0%} across, {dy / THUMB:+.0%} down",
                       np.ascontiguousarray(view), True)
    flat = grey.reshape(len(grey), -1)
    for (angle, corners), (index, weight) in _ROTATIONS.items():
        view = sum(flat[:, index[k]] * weight[k] for k in range(4))
        yield f"turned {angle:+g} degrees, {corners} corners", view.reshape(grey.shape), False


# --- multi-index hashing --------------------------------------------------------------------

_CHUNKS = 4
_CHUNK_BITS = 16


def _masks(radius: int) -> np.ndarray:
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(_CHUNK_BITS), r)]
    return np.array(masks, dtype=np.int64)


def hash_neighbours(queries: np.ndarray, base: np.ndarray, max_distance: int,
                    block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, base) pair of 64-bit hashes within ``max_distance`` bits, by
    multi-index hashing; returns query indices, base indices and distances."""
    radius = max_distance // _CHUNKS
    masks = _masks(radius)
    found_q, found_b = [], []
    for c in range(_CHUNKS):
        shift = np.uint64(c * _CHUNK_BITS)
        base_chunk = ((base >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(base_chunk, kind="stable")
        starts = np.searchsorted(base_chunk[order], np.arange((1 << _CHUNK_BITS) + 1))
        counts = np.diff(starts)
        query_chunk = ((queries >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        for s in range(0, len(queries), block):
            probes = query_chunk[s:s + block, None] ^ masks[None, :]  # (B, P)
            n = counts[probes]
            if not n.any():
                continue
            q_of = np.repeat(np.arange(s, s + len(probes)), n.sum(axis=1))
            first = np.repeat(starts[probes].ravel(), n.ravel())
            # position within each probe's bucket: 0, 1, ... for each repeated start
            run_starts = np.repeat(np.cumsum(n.ravel()) - n.ravel(), n.ravel())
            offset = np.arange(len(first)) - run_starts
            b_of = order[first + offset]
            # Verify at once: candidates are many, true neighbours few.
            close = np.bitwise_count(queries[q_of] ^ base[b_of]) <= max_distance
            found_q.append(q_of[close])
            found_b.append(b_of[close])
    if not found_q:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    q = np.concatenate(found_q)
    b = np.concatenate(found_b)
    pair = np.unique(q * len(base) + b)
    q, b = pair // len(base), pair % len(base)
    distance = np.bitwise_count(queries[q] ^ base[b]).astype(np.int64)
    keep = distance <= max_distance
    return q[keep], b[keep], distance[keep]


# --- the embedding stage (off by default) ------------------------------------------------------

EMBEDDING_SIZE = 64  # side images are resized to for a named model's features
TOP_K = 3  # train neighbours per test image the embedding stage confirms
MIN_ALIGNED = 0.93  # correlation after the best crop alignment that confirms a pair
_CROPS = (0.0, 0.05, 0.10)  # fraction cut from each side when aligning a crop


def _takes_no_arguments(fn: Callable) -> bool:
    import inspect

    try:
        return not any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                       for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


def _embedder(embeddings: Any, size: int) -> Callable[[list[np.ndarray]], np.ndarray]:
    """A function from a list of uint8 images to (n, d) features: a callable as given, or a
    model (a gate's run, a name ``finetune`` knows, or an ``nn.Module``) whose classifier
    head is cut off, leaving its pooled features. A run gives its model as pretrained,
    before fine-tuning (``FinetuneRun.backbone``)."""
    from .run import FinetuneRun

    if isinstance(embeddings, FinetuneRun):
        if embeddings.backbone is None:
            raise ModelGateError(f"embeddings=: this run of {embeddings.model} carries no "
                                 "model (it was not made by finetune); pass the model's name "
                                 "or module instead")
        make = embeddings.backbone
    elif callable(embeddings) and not hasattr(embeddings, "parameters") and not (
            _takes_no_arguments(embeddings)):  # a zero-argument model factory is a model
        return lambda images: np.asarray(embeddings(images), dtype=np.float32)
    else:
        def make(image_size: int) -> Any:
            from .frameworks.torch.zoo import load_model

            return load_model(embeddings, image_size=image_size)
    import torch

    from .frameworks.torch.engine import resolve_device, to_input
    from .frameworks.torch.heads import find_head, set_submodule

    loaded = make(size)
    model = loaded.module.eval()
    set_submodule(model, find_head(model).path, torch.nn.Identity())
    device = resolve_device("auto")
    model.to(device)

    def features(images: list[np.ndarray]) -> np.ndarray:
        from PIL import Image

        batch = np.stack([np.asarray(Image.fromarray(a).convert("RGB").resize(
            (size, size), Image.Resampling.BILINEAR)) for a in images])
        with torch.no_grad():
            return model(to_input(batch, loaded.preprocess, device)).float().cpu().numpy()

    return features


def _embed(data: _Prepared, features: Callable, batch: int = 256) -> np.ndarray:
    assert data.pixels is not None
    out = [features([data.pixels(i) for i in range(s, min(s + batch, len(data.ids)))])
           for s in range(0, len(data.ids), batch)]
    e = np.concatenate(out).reshape(len(data.ids), -1).astype(np.float32)
    return e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)


def _aligned_windows(grey: np.ndarray) -> np.ndarray:
    """(n, windows, 256): normalised 16x16 views of each thumbnail with 0, 5 or 10% cut
    from each side (81 windows), so a crop of the other image lines up with one of them."""
    from PIL import Image

    views = []
    for left in _CROPS:
        for top in _CROPS:
            for right in _CROPS:
                for bottom in _CROPS:
                    x0, y0 = round(THUMB * left), round(THUMB * top)
                    x1, y1 = THUMB - round(THUMB * right), THUMB - round(THUMB * bottom)
                    sub = np.stack([np.asarray(Image.fromarray(g[y0:y1, x0:x1]).resize(
                        (SMALL, SMALL), Image.Resampling.BILINEAR), dtype=np.float32)
                        for g in grey])
                    sub = sub - sub.mean(axis=(1, 2), keepdims=True)
                    flat = sub.reshape(len(grey), -1)
                    views.append(flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6))
    return np.stack(views, axis=1)


def _embedding_pairs(a: _Prepared, b: _Prepared, features: Callable, min_aligned: float,
                     known: set[tuple[int, int]]) -> list[LeakPair]:
    """Each test image's nearest train images by cosine of pooled features, confirmed when
    some crop of one correlates with the other (mirror-aware) at ``min_aligned``."""
    ea, eb = _embed(a, features), _embed(b, features)
    k = min(TOP_K, len(ea))
    small_a, small_a_mirror = _small(a.grey)
    pairs = []
    for s in range(0, len(eb), 512):
        cos = eb[s:s + 512] @ ea.T
        top = np.argpartition(-cos, k - 1, axis=1)[:, :k]
        rows = np.arange(s, s + len(cos))
        windows = _aligned_windows(b.grey[rows])  # crops of the test image
        for r, j in enumerate(rows):
            for i in top[r]:
                if (int(i), int(j)) in known or a.tiny[i] or b.tiny[j]:
                    continue  # under MIN_NEAR_SIDE: look-alikes, not copies, correlate
                plain = float((windows[r] @ small_a[i]).max())
                mirror = float((windows[r] @ small_a_mirror[i]).max())
                best = max(plain, mirror)
                if best >= min_aligned:
                    pairs.append(LeakPair(int(i), int(j), "similar-flipped" if mirror > plain
                                          else "similar", "embedding", 0, 0, round(best, 4),
                                          round(float(cos[r, i]), 4)))
    return pairs


# --- the scan ---------------------------------------------------------------------------------

def _confirmed(base: tuple[np.ndarray, ...], queries: tuple[np.ndarray, ...],
               preset: Preset, keep: Callable[[np.ndarray, np.ndarray], np.ndarray],
               distances: tuple[int, int]) -> Iterator[tuple[int, int, bool, int, float, int]]:
    """(base index, query index, mirrored, distance, similarity, threshold) of each pair
    that one of the two hashes proposes within its distance and the 16x16 correlation
    confirms; ``keep(base_indices, query_indices)`` drops pairs before the correlation."""
    med_a, _, proj_a, _, small_a, _ = base
    med_b, med_b_mirror, proj_b, proj_b_mirror, small_b, small_b_mirror = queries
    for hashes, plain, mirror, distance, minimum in (
            (med_a, med_b, med_b_mirror, distances[0], preset.min_similarity),
            (proj_a, proj_b, proj_b_mirror, distances[1], preset.projection_similarity)):
        qi, ai, dist = hash_neighbours(np.concatenate([plain, mirror]), hashes, distance)
        mirrored = qi >= len(plain)
        bi = np.where(mirrored, qi - len(plain), qi)
        ok = keep(ai, bi)
        ai, bi, dist, mirrored = ai[ok], bi[ok], dist[ok], mirrored[ok]
        # In blocks: the candidates can number millions, each a 256-value dot product.
        similarity = np.empty(len(ai), dtype=np.float32)
        for s in range(0, len(ai), 100_000):
            rows_a, rows_b, m = ai[s:s + 100_000], bi[s:s + 100_000], mirrored[s:s + 100_000]
            other = np.where(m[:, None], small_b_mirror[rows_b], small_b[rows_b])
            similarity[s:s + 100_000] = np.einsum("nd,nd->n", small_a[rows_a], other)
        ok = similarity >= minimum
        for i, j, m, d, sim in zip(ai[ok], bi[ok], mirrored[ok], dist[ok], similarity[ok],
                                   strict=True):
            yield int(i), int(j), bool(m), int(d), float(sim), distance


def _near_pairs(a: _Prepared, b: _Prepared, preset: Preset, *, same: bool,
                conflicts_only: bool = False
                ) -> list[tuple[int, int, bool, int, float, int, str]]:
    """(index in a, index in b, mirrored, distance, similarity, threshold, alignment) of
    confirmed near pairs, from both hashes; with ``same``, a self-join with i < j. Between
    two splits (not ``same``) with ``preset.geometric``, pairs the image itself misses are
    then searched with each shifted and turned variant of b's thumbnails (``alignment``
    names the variant)."""
    if conflicts_only:
        names = {name: k for k, name in enumerate(sorted(set(a.labels) | set(b.labels)))}
        label_a = np.array([names[x] for x in a.labels])
        label_b = np.array([names[x] for x in b.labels])

    def keep(ai: np.ndarray, bi: np.ndarray) -> np.ndarray:
        ok = ~(a.tiny[ai] | b.tiny[bi])
        if conflicts_only:
            ok &= label_a[ai] != label_b[bi]
        return ok & (ai < bi) if same else ok

    best: dict[tuple[int, int], tuple[int, int, bool, int, float, int, str]] = {}
    base = a.features()
    for i, j, m, d, sim, threshold in _confirmed(base, b.features(), preset, keep,
                                                 (preset.max_distance,
                                                  preset.projection_distance)):
        if (i, j) not in best or sim > best[(i, j)][4]:
            best[(i, j)] = (i, j, m, d, sim, threshold, "")
    if same or not preset.geometric or b.tiny.all():
        return sorted(best.values())
    found = set(best)
    for alignment, view, exact in _variants(b.grey):
        distances = (min(VARIANT_DISTANCES[0], preset.max_distance) if exact
                     else preset.max_distance,
                     min(VARIANT_DISTANCES[1], preset.projection_distance))
        for i, j, m, d, sim, threshold in _confirmed(base, _features(view), preset, keep,
                                                     distances):
            if (i, j) in found or ((i, j) in best and sim <= best[(i, j)][4]):
                continue
            if _detail_agreement(a.grey[i], view[j][:, ::-1] if m else view[j]) >= MIN_DETAIL:
                best[(i, j)] = (i, j, m, d, sim, threshold, alignment)
    return sorted(best.values())


def _exact_pairs(a: _Prepared, b: _Prepared, *, same: bool) -> list[tuple[int, int, str]]:
    by_id: dict[str, list[int]] = {}
    for i, cid in enumerate(a.ids):
        by_id.setdefault(cid, []).append(i)
    out = []
    for j, cid in enumerate(b.ids):
        hits = [i for i in by_id.get(cid, ()) if not same or i < j]
        if hits:
            out += [(i, j, "exact") for i in hits]
            continue
        out += [(i, j, "flipped") for i in by_id.get(b.flipped_ids[j], ()) if not same or i < j]
    return out


def _pairs(a: _Prepared, b: _Prepared, preset: Preset, *, same: bool,
           conflicts_only: bool = False) -> list[LeakPair]:
    """Pairs between a and b (with ``same``, within a); ``conflicts_only`` keeps only pairs
    under different labels, and drops the others before confirming them (within a train
    split of 50,000 most candidates share a label)."""
    pairs = [LeakPair(i, j, kind) for i, j, kind in _exact_pairs(a, b, same=same)]
    seen = {(p.train_index, p.test_index) for p in pairs}
    for i, j, mirrored, distance, similarity, threshold, alignment in _near_pairs(
            a, b, preset, same=same, conflicts_only=conflicts_only):
        if (i, j) not in seen:
            pairs.append(LeakPair(i, j, "near-flipped" if mirrored else "near", "phash",
                                  distance, threshold, round(similarity, 4),
                                  alignment=alignment))
    return sorted(pairs, key=lambda p: (p.test_index, p.train_index))


def _allowed(allow: Iterable[Any], train: _Prepared, test: _Prepared, pairs: list[LeakPair]
             ) -> tuple[list[LeakPair], list[LeakPair]]:
    """Split pairs into (kept, allowed). An entry is a (train, test) pair of references or
    one reference naming a test image; a reference is a content id, a source path, an
    index, or "split[index]"."""
    entries = list(allow)
    used = [False] * len(entries)
    kept: list[LeakPair] = []
    allowed: list[LeakPair] = []
    for p in pairs:
        hit = False
        for k, entry in enumerate(entries):
            if isinstance(entry, (tuple, list)) and len(entry) == 2:
                match = (str(entry[0]) in train.keys[p.train_index]
                         and str(entry[1]) in test.keys[p.test_index])
            else:
                match = str(entry) in test.keys[p.test_index]
            if match:
                used[k] = hit = True
        (allowed if hit else kept).append(p)
    unused = [entries[k] for k, u in enumerate(used) if not u]
    if unused:
        warnings.warn(f"allow= entries that match no leaked pair: {unused[:5]}"
                      + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
                      + "; the pair may be gone, or the reference mistyped (a content id, "
                      "a source path, an index or 'test[index]')", ModelGateWarning, stacklevel=4)
    return kept, allowed


def _check_not_same(train: Any, test: Any) -> None:
    same = train is test
    if isinstance(train, (str, Path)) and isinstance(test, (str, Path)):
        same = Path(train).resolve() == Path(test).resolve()
    elif isinstance(train, ImageSet) and isinstance(test, ImageSet):
        same = same or (train.images is test.images and train.fingerprint() == test.fingerprint())
    if same:
        raise ModelGateError("train and test are the same data, so every image would 'leak'; "
                             "pass the two splits (splits.train, splits.test), or a Splits")


def scan_leaks(train: Any, test: Any = None, *, preset: str = "strict",
               max_distance: int | None = None, min_similarity: float | None = None,
               allow: Sequence[Any] = (), on_error: str = "raise", embeddings: Any = None,
               embedding_size: int = EMBEDDING_SIZE, min_aligned: float = MIN_ALIGNED,
               cache: Any = None) -> LeakScan:
    """Scan for leaks between train and test, duplicates inside test and label conflicts.

    ``train`` and ``test`` are ImageSets or folder paths (every image file below, any size
    and mode; labels from the file's folder name); or pass one ``Splits`` as ``train``.
    ``preset`` (``strict`` or ``loose``) sets the near-duplicate thresholds;
    ``max_distance`` and ``min_similarity`` override them. ``allow`` lists known pairs
    (``(train_ref, test_ref)``) or test images to accept. ``cache`` keeps each image's
    thumbnail by content id (and each file's by path, size and modification time) in a
    folder, so a rerun thumbnails only new images: None uses the run cache of a gate test
    under ``pytest --modelgate``, a path that folder, False none.
    """
    from .data import Splits

    if isinstance(train, Splits) and test is None:
        train, test = train.train, train.test
    if test is None:
        raise ModelGateError("pass train and test (ImageSets or folders), or one Splits")
    if preset not in PRESETS:
        raise ModelGateError(f"preset={preset!r} is not one of {sorted(PRESETS)}")
    if on_error not in ("raise", "skip"):
        raise ModelGateError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    chosen = PRESETS[preset]
    if max_distance is not None and (not isinstance(max_distance, int)
                                     or not 0 <= max_distance <= 32):
        raise ModelGateError(f"max_distance must be an integer in 0..32 (bits of 64), got "
                             f"{max_distance!r}")
    if min_similarity is not None and not (isinstance(min_similarity, (int, float))
                                           and 0 < min_similarity <= 1):
        raise ModelGateError(f"min_similarity must be in (0, 1], got {min_similarity!r}")
    chosen = Preset(chosen.max_distance if max_distance is None else max_distance,
                    chosen.min_similarity if min_similarity is None else float(min_similarity),
                    chosen.catches, chosen.projection_distance,
                    max(chosen.projection_similarity,
                        chosen.min_similarity if min_similarity is None else min_similarity),
                    chosen.geometric)
    _check_not_same(train, test)
    store = _open_store(cache)
    a = _prepare(train, "train", on_error, store)
    b = _prepare(test, "test", on_error, store)
    store.save()
    found = _pairs(a, b, chosen, same=False)
    if embeddings is not None:
        features = _embedder(embeddings, embedding_size)
        known = {(p.train_index, p.test_index) for p in found}
        found = sorted(found + _embedding_pairs(a, b, features, min_aligned, known),
                       key=lambda p: (p.test_index, p.train_index))
    pairs, allowed = _allowed(allow, a, b, found)
    duplicates = _pairs(b, b, chosen, same=True)
    conflicts: list[tuple[str, int, str, int]] = []
    conflicts += [("train", p.train_index, "test", p.test_index) for p in pairs + allowed
                  if a.labels[p.train_index] != b.labels[p.test_index]]
    conflicts += [("test", p.train_index, "test", p.test_index) for p in duplicates
                  if b.labels[p.train_index] != b.labels[p.test_index]]
    conflicts += [("train", p.train_index, "train", p.test_index)
                  for p in _pairs(a, a, chosen, same=True, conflicts_only=True)
                  if a.labels[p.train_index] != a.labels[p.test_index]]
    return LeakScan(pairs, duplicates, conflicts, allowed, preset, store.hashed,
                    store.from_cache,
                    pixels_only=int(a.tiny.sum() + b.tiny.sum()),
                    describe={"train": a.describe, "test": b.describe},
                    labels={"train": a.labels, "test": b.labels})


def find_leaks(train: Any, test: Any = None, **kwargs: Any) -> list[LeakPair]:
    """Every (train, test) pair that is the same picture: identical pixels, a mirror, or a
    near-duplicate within the preset's thresholds (see ``scan_leaks`` for the options).

    Example:
        >>> import numpy as np
        >>> from pytest_modelgate.data import ImageSet
        >>> a = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
        >>> tr = ImageSet(a, [0], ("x",), name="train")
        >>> te = ImageSet(a[:, :, ::-1], [0], ("x",), name="test")
        >>> [(p.train_index, p.test_index, p.kind) for p in find_leaks(tr, te)]
        [(0, 0, 'flipped')]
    """
    return scan_leaks(train, test, **kwargs).pairs
