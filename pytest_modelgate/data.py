"""Datasets for gates: image arrays with labels, class names and stable content ids.

A gate needs to name samples (leakage pairs, cached runs, baselines), so every sample gets a
content id: a hash of its decoded pixels. The same picture saved as PNG or BMP has the same id.

Example:
    >>> import numpy as np
    >>> x = np.zeros((4, 8, 8), dtype=np.uint8); x[1] = 1; x[3] = 3
    >>> splits = from_arrays(x[:2], [0, 1], x[2:], [0, 1], class_names=["a", "b"])
    >>> splits.train.class_names
    ('a', 'b')
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelGateError, ModelGateWarning, user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_SUFFIX_TUPLE = tuple(sorted(IMAGE_SUFFIXES))  # str.endswith takes a tuple: one C call a name


def content_id(image: np.ndarray) -> str:
    """Stable id of one image: sha256 over shape, dtype and pixel bytes (first 16 hex digits)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256()
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.data if arr.size else b"")  # the pixel bytes, without a copy
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """One split: ``images`` (N, H, W) or (N, H, W, C) uint8, ``labels`` class indices.

    ``sources`` optionally names where each image came from (a file path), for messages.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str = "data"
    sources: tuple[str, ...] | None = None
    ids: tuple[str, ...] = field(init=False)
    # Content ids computed before (the decoded-array cache stores them): not recomputed.
    _ids: tuple[str, ...] | None = field(default=None, repr=False)

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
        if labels.shape != (len(images),):
            raise ModelGateError(
                f"{self.name}: {len(images)} images but labels of shape {labels.shape}; "
                "pass one integer label per image"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ModelGateError(f"{self.name}: labels must be integers, got {labels.dtype}")
        if len(self.class_names) < 1:
            raise ModelGateError(f"{self.name}: class_names is empty")
        n = len(self.class_names)
        if labels.min() < 0 or labels.max() >= n:
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
        known = self._ids if self._ids is not None and len(self._ids) == len(images) else None
        object.__setattr__(self, "ids", known or tuple(content_id(img) for img in images))
        object.__setattr__(self, "_ids", None)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        # Short: pytest prints arguments in tracebacks, and pixel arrays say nothing there.
        shape = "x".join(str(d) for d in self.images.shape[1:])
        names = ", ".join(self.class_names[:5]) + (", ..." if len(self.class_names) > 5 else "")
        return (f"ImageSet({self.name!r}, {len(self)} images of {shape}, "
                f"{len(self.class_names)} classes: {names})")

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


@dataclass(frozen=True, eq=False, repr=False)
class Splits:
    """Train and test (optionally val) splits over the same class names."""

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
        trained = set(np.unique(self.train.labels).tolist())
        for part in parts[1:]:
            unseen = sorted(set(np.unique(part.labels).tolist()) - trained)
            if unseen:
                names = [self.train.class_names[i] for i in unseen]
                raise ModelGateError(
                    f"{part.name} has classes {names} that train never shows; "
                    "add training images of those classes or drop them from the test split"
                )
        if len(trained) < 2:
            raise ModelGateError(
                "the train split holds a single class: a classifier gate needs at least two"
            )
        shapes = {p.images.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise ModelGateError(
                f"splits hold images of different shapes {sorted(map(str, shapes))}; "
                "resize them to one size (from_folder(..., size=(H, W)) does this)"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    def __repr__(self) -> str:
        val = f", val={self.val!r}" if self.val is not None else ""
        return f"Splits(train={self.train!r}, test={self.test!r}{val})"

    def fingerprint(self) -> str:
        return "-".join(p.fingerprint() for p in (self.train, self.test, self.val) if p)


def from_arrays(
    x_train: np.ndarray,
    y_train: Sequence[int] | np.ndarray,
    x_test: np.ndarray,
    y_test: Sequence[int] | np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
) -> Splits:
    """Splits from uint8 image arrays and integer labels.

    ``class_names`` defaults to the label values as strings (``"0"``, ``"1"`` ...).
    """
    train_labels = np.asarray(y_train)
    test_labels = np.asarray(y_test)
    if class_names is None:
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


CONVERTIBLE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}


def _read_image(path: str | Path, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            opened.load()
            im: Image.Image = opened
            if im.mode not in CONVERTIBLE_MODES:
                kind = "16-bit or float" if im.mode[0] in "IF" else "unsupported"
                raise ModelGateError(
                    f"image {path} has mode {im.mode!r} ({kind} pixels), which does not "
                    "convert to 8-bit RGB without losing data; convert it to 8-bit grayscale "
                    "or RGB first"
                )
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ModelGateError(
            f"cannot read image {path}: {exc}; fix or remove the file"
        ) from None


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
    for idx, cls in enumerate(names):
        folder = base / cls
        if not folder.is_dir():
            continue  # a class the test split does not show
        # Names sorted as strings: sorting 60,000 Path objects took longer than loading
        # the whole cached split, and plain names (listdir) cost less than DirEntry objects.
        found_names = [n for n in os.listdir(folder) if n.lower().endswith(_SUFFIX_TUPLE)]
        found_names.sort()
        prefix = os.path.join(folder, "")
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
    sources = paths
    cached = _ArrayCache.open(cache, sources, size, names, labels)
    stats = None
    if cached is not None and cached.folder.is_dir():
        # An entry for these files: it holds if every file's size and time are as stored.
        stats = _file_stats(listed)
        hit = cached.load(name or split, stats)
        if hit is not None:
            return hit
    if cached is not None and paths:
        # The workers stat each file as they decode it: the first load of a folder pays
        # for no separate pass over 60,000 files.
        direct = cached.decode_into(paths, size, labels, names, name or split, sources)
        if direct is not None:
            return direct
    if cached is not None and stats is None:
        stats = _file_stats(listed)  # before decoding: a file changed meanwhile is a miss
    images, ids = _decode_all(paths, size)
    if not images:
        raise ModelGateError(f"{split} split is empty: no class folders with images under "
                             f"{base}/<class>/")
    modes = {img.ndim for img in images}
    if len(modes) > 1:
        images = [img if img.ndim == 3 else np.stack([img] * 3, axis=-1) for img in images]
        ids = [content_id(img) for img in images]  # widened: other pixels, other ids
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        first = images[0].shape
        odd = next(i for i, img in enumerate(images) if img.shape != first)
        raise ModelGateError(
            f"images of mixed sizes in {base}: {sources[0]} is {first}, {sources[odd]} is "
            f"{images[odd].shape}; pass size=(H, W) to from_folder to resize them"
        )
    data = ImageSet(np.stack(images), np.asarray(labels), names, name=name or split,
                    sources=tuple(sources), _ids=tuple(ids))
    if cached is not None and stats is not None:
        cached.store(data, stats)
    return data


def _workers() -> int:
    """Processes to decode with: ``$MODELGATE_DECODE_WORKERS``, else every core; 1 where
    the platform cannot fork (only Linux forks here)."""
    import sys

    if not sys.platform.startswith("linux"):
        return 1
    return max(1, int(os.environ.get("MODELGATE_DECODE_WORKERS") or os.cpu_count() or 1))


def _kill(children: list[int]) -> None:
    """SIGKILL forked children (still to be reaped by the caller)."""
    import signal

    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _with_children(workers: int, share: Callable[[int], None],
                   start_reading: Callable[[], Callable[[], None]]) -> None:
    """``share(k)`` in ``workers - 1`` forked children (k = 1, 2, ...) and in this process
    (k = 0); the children are reaped before this returns or raises. The read-ahead starts
    after the forks, so no child inherits its thread. A Ctrl-C (or any error) that reaches
    only this process kills the children. A child's exit code is not read: the caller
    finds what a dead child left undone and does it itself."""
    children: list[int] = []
    stop_reading = _no_read_ahead
    try:
        for k in range(1, workers):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                code = 1
                try:
                    share(k)
                    code = 0
                finally:
                    os._exit(code)  # never back into the caller's code (pytest's)
            children.append(pid)
        stop_reading = start_reading()
        share(0)
    except BaseException:
        _kill(children)
        raise
    finally:
        stop_reading()
        for pid in children:
            os.waitpid(pid, 0)


def parallel_map(fn: Any, items: list, *, chunk: int = 1000,
                 read_ahead: Sequence[str | Path] | None = None) -> list:
    """``[fn(x) for x in items]`` on every core: this process and forked children take
    interleaved chunks (on Linux; elsewhere, or for few items, this process alone). Threads
    do not help here: for small images the per-file Python work holds the GIL, and two
    threads decoded CIFAR's 50,000 JPEGs in 16.8 s against 8.5 s on one; two processes took
    5.2 s. ``$MODELGATE_DECODE_WORKERS`` caps the processes (1: no children). The first
    error, in order, is raised. ``read_ahead``: the file each item reads, in order, for
    ``_read_ahead``.

    No ``ProcessPoolExecutor``: Ctrl-C during its ``map`` could leave the interpreter
    waiting forever on its workers at exit (its manager thread died on a cancelled future,
    ``InvalidStateError``; one in about ten tries of a 60,000-file load here). A child
    pickles each chunk's results into a private temporary folder that this process reads
    back and deletes; a chunk that raised in a child, or that a dead child left undone, is
    done again here, so its error is raised in order."""
    workers = min(_workers(), -(-len(items) // chunk))
    where = [0]
    if workers <= 1 or len(items) < 2 * chunk:
        stop_reading = _read_ahead(read_ahead or (), where, lead=chunk)
        try:
            out = []
            for i, x in enumerate(items):
                where[0] = i
                out.append(fn(x))
            return out
        finally:
            stop_reading()
    import pickle
    import shutil
    import tempfile

    starts = range(0, len(items), chunk)
    parts: list[list | None] = [None] * len(starts)
    folder = tempfile.mkdtemp(prefix="modelgate-map-")  # 0700: only this user reads it

    def run(c: int) -> list:
        return [fn(x) for x in items[starts[c]:starts[c] + chunk]]

    def share(k: int) -> None:
        for c in range(k, len(starts), workers):
            if k == 0:
                where[0] = starts[c]
            try:
                part = run(c)
            except Exception:  # noqa: BLE001 - done again below, raised in order
                continue
            if k == 0:
                parts[c] = part
                continue
            name = os.path.join(folder, str(c))
            with open(name + ".part", "wb") as f:
                pickle.dump(part, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.rename(name + ".part", name)

    try:
        # The children's chunks lie at most ``workers`` chunks past this process's.
        _with_children(workers, share, lambda: _read_ahead(read_ahead or (), where,
                                                            lead=2 * workers * chunk))
        results: list = []
        for c in range(len(starts)):
            part: list | None = parts[c]
            parts[c] = None
            if part is None:
                name = os.path.join(folder, str(c))
                if os.path.exists(name):
                    with open(name, "rb") as done:
                        part = pickle.load(done)  # written by a child of this call
                else:
                    part = run(c)  # raised in a child, or left by a dead one
            results += part
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# What each file's byte in _decode_shared's status array says.
_DONE, _OTHER_SHAPE, _UNREADABLE, _NOT_DONE = 0, 1, 2, 3


def _decode_shared(paths: list[str], size: tuple[int, int] | None, target: np.ndarray,
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
                image = _read_image(path, size)
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

    workers = min(_workers(), max(1, n // (2 * run)))

    def share(k: int) -> None:
        for start in range(k * run, n, workers * run):
            decode(range(start, min(start + run, n)))

    # The other workers' runs lie at most workers * run rows past this process's row.
    _with_children(workers, share, lambda: _read_ahead(paths, where, lead=2 * workers * run))
    # A child that died (killed, out of memory) left rows undone: decode them here.
    decode(np.flatnonzero(status == _NOT_DONE))
    bad = np.flatnonzero(status != _DONE)
    if len(bad) == 0:
        return ids.astype("U16").tolist(), stats, None
    first = int(bad[0])
    if status[first] == _UNREADABLE:
        _read_image(paths[first], size)  # raises the file's error, the first in order
    return [], stats, first


def _no_read_ahead() -> None:
    pass


def _in_page_cache(paths: Sequence[str | Path], samples: int = 8) -> bool:
    """Whether the first byte of a few files spread over ``paths`` is in the OS page cache
    (a read that may not wait, ``RWF_NOWAIT``); True where that cannot be asked."""
    if not hasattr(os, "RWF_NOWAIT"):
        return True
    probe = bytearray(1)
    for path in paths[:: max(1, len(paths) // samples)]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # the decoder names it
        try:
            os.preadv(fd, [probe], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True  # the flag is refused here (an older kernel, another file system)
        finally:
            os.close(fd)
    return True


def _read_ahead(paths: Sequence[str | Path], where: list[int], *, lead: int) -> Callable[[], None]:
    """Ask the kernel to read ``paths`` into the page cache ahead of the decoders
    (``posix_fadvise(WILLNEED)``, in order, from a thread, at most ``lead`` files past
    ``where[0]`` so a dataset larger than memory is not read twice), unless the files are
    cached already. Returns the function that stops it.

    A file read on demand waits for the disk each time; told of the files ahead, the
    kernel reads many at once: CIFAR-10's 60,000 JPEGs with the page cache emptied took
    5.7 s to read one after another and 1.9 s after a WILLNEED pass
    (``benchmarks/bench_from_folder.py --cold-files``)."""
    import threading

    if not hasattr(os, "posix_fadvise") or _in_page_cache(paths):
        return _no_read_ahead
    stop = threading.Event()

    def advise() -> None:
        for i, path in enumerate(paths):
            while i > where[0] + lead:
                if stop.wait(0.005):
                    return
            if stop.is_set():
                return
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # the decoder names it
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass  # advice only
            finally:
                os.close(fd)

    thread = threading.Thread(target=advise, name="modelgate-read-ahead", daemon=True)
    thread.start()

    def stop_reading() -> None:
        stop.set()
        thread.join()

    return stop_reading


def _file_stats(listed: Sequence[tuple[str, list[str]]]) -> np.ndarray:
    """(n, 2) byte sizes and modification times (ns) of the files listed per folder.

    Each name is stat'ed relative to its open folder (``dir_fd``), so the kernel walks no
    path: 0.14 s for CIFAR-10's 60,000 files against 0.17 s for ``DirEntry.stat``, about
    what ``find -printf '%s %T@'`` takes."""
    rows: list[tuple[int, int]] = []
    for folder, names in listed:
        if os.stat not in os.supports_dir_fd:  # Windows: whole paths
            stats = [os.stat(folder + n) for n in names]
        else:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                stats = [os.stat(n, dir_fd=fd) for n in names]
            finally:
                os.close(fd)
        rows += [(st.st_size, st.st_mtime_ns) for st in stats]
    return np.array(rows, dtype=np.int64).reshape(len(rows), 2)


def _read_with_id(path: str | Path, size: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    image = _read_image(path, size)
    return image, content_id(image)


def _decode_all(paths: Sequence[str | Path], size: tuple[int, int] | None
                ) -> tuple[list[np.ndarray], list[str]]:
    """Decode every file, and hash its pixels, on every core (see ``parallel_map``)."""
    from functools import partial

    paths = list(paths)
    pairs = parallel_map(partial(_read_with_id, size=size), paths, read_ahead=paths)
    return [image for image, _ in pairs], [cid for _, cid in pairs]


def default_array_cache() -> Path:
    """Where decoded splits are kept: ``$MODELGATE_ARRAY_CACHE``, else
    ``$XDG_CACHE_HOME/pytest-modelgate/arrays`` (``~/.cache/...``)."""
    if os.environ.get("MODELGATE_ARRAY_CACHE"):
        return Path(os.environ["MODELGATE_ARRAY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-modelgate" / "arrays"


@dataclass
class _ArrayCache:
    """One split's decoded images as a memory-mapped ``.npy`` with labels, sources and
    content ids, in a folder named by the files' paths and labels, ``size=`` and the class
    names, and valid while every file's byte size and modification time are as stored
    (``stats.npy``): a second load of an unchanged folder reads no image file, and only the
    pages a run touches come into memory; a changed file replaces the entry. No pickle:
    ``.npy`` and JSON."""

    folder: Path

    FORMAT = 2

    @classmethod
    def open(cls, cache: Any, sources: list[str], size: tuple[int, int] | None,
             names: tuple[str, ...], labels: list[int]) -> _ArrayCache | None:
        if cache is False or not sources:
            return None
        if cache is None or cache is True:
            root = default_array_cache()
        elif isinstance(cache, (str, os.PathLike)):
            root = Path(cache)
        else:
            raise ModelGateError(f"cache={cache!r}: pass a folder path, True or None (the "
                                 "default folder), or False for no array cache")
        h = hashlib.sha256(f"{cls.FORMAT}|{size}|{names}|{os.getcwd()}".encode())
        # Paths, then labels, each as one buffer (a string per file cost a tenth of the
        # warm load).
        h.update("\n".join(sources).encode())
        h.update(np.array(labels, dtype=np.int64).tobytes())
        return cls(root / h.hexdigest()[:24])

    def load(self, name: str, stats: np.ndarray | None) -> ImageSet | None:
        """The entry, if every file's size and time equal ``stats`` (None: just written)."""
        import json

        try:
            if stats is not None and not np.array_equal(
                    np.load(self.folder / "stats.npy", allow_pickle=False), stats):
                return None  # a file changed, came or went: decode again
            meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
            images = np.load(self.folder / "images.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(self.folder / "labels.npy", allow_pickle=False)
            return ImageSet(images, labels, tuple(meta["class_names"]), name=name,
                            sources=tuple(meta["sources"]), _ids=tuple(meta["ids"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: decode again (and store anew)

    def decode_into(self, paths: list[str], size: tuple[int, int] | None, labels: list[int],
                    names: tuple[str, ...], name: str, sources: list[str]
                    ) -> ImageSet | None:
        """Decode every file straight into the cache's memory-mapped ``images.npy`` (its
        shape is the first image's): no pixels travel back from the workers, and nothing is
        stacked or written again. None when the images differ in shape or mode (the
        caller's path then widens grayscale or names the odd size), or when the folder
        cannot be written."""
        import shutil
        import tempfile

        first = _read_image(paths[0], size)
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=".tmp-"))
        except OSError:
            return None
        try:
            target = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                               shape=(len(paths), *first.shape))
            ids, stats, odd = _decode_shared(paths, size, target)
            if odd is not None:
                return None
            target.flush()
            del target
            self._commit(tmp, stats, labels, names, sources, ids)
        except OSError:
            return None  # the folder cannot be written: the caller decodes as usual
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.load(name, None)

    def store(self, data: ImageSet, stats: np.ndarray) -> None:
        import contextlib
        import shutil
        import tempfile

        with contextlib.suppress(OSError):
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=".tmp-"))
            try:
                np.save(tmp / "images.npy", np.ascontiguousarray(data.images))
                self._commit(tmp, stats, data.labels, data.class_names, data.sources or (),
                             data.ids)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def _commit(self, tmp: Path, stats: Any, labels: Any, names: Sequence[str],
                sources: Sequence[str], ids: Sequence[str]) -> None:
        """Write the entry's small files beside ``tmp/images.npy`` and put ``tmp`` in the
        old entry's place: whole or not at all (a killed writer leaves only ``.tmp-*``)."""
        import json
        import shutil

        np.save(tmp / "stats.npy", np.asarray(stats, dtype=np.int64))
        np.save(tmp / "labels.npy", np.asarray(labels))
        (tmp / "meta.json").write_text(json.dumps(
            {"class_names": list(names), "sources": list(sources), "ids": list(ids)}),
            encoding="utf-8")
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
        try:
            tmp.rename(self.folder)
        except OSError:
            if not (self.folder / "meta.json").is_file():
                raise
            # Another process committed this entry meanwhile (xdist workers loading one
            # folder at once): its files are the same, so keep it instead of decoding again.


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
    skipped. Grayscale and RGB files may mix (grayscale is widened to RGB); ``size=(H, W)``
    resizes every image. Files are decoded on all cores, and each split's decoded arrays
    are kept (``cache``: None for ``default_array_cache()``, a folder, or False for none)
    as a memory-mapped ``.npy`` keyed by every file's path, size and modification time and
    ``size=``: loading an unchanged folder again reads no image file.

    Raises:
        ModelGateError: a class folder in test or val that train lacks, an empty class
            folder, no test or val folder, unreadable images, mixed sizes without ``size=``.

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
        return stratified_split(every.images, every.labels, class_names=every.class_names,
                                test_fraction=test_fraction, seed=seed, sources=every.sources)
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


def load_digits(*, test_fraction: float = 0.3, seed: int = 0) -> Splits:
    """scikit-learn's handwritten digits (1,797 real 8x8 scans) as 0-255 uint8 splits."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        from .errors import AdapterUnavailableError

        raise AdapterUnavailableError(
            "load_digits needs scikit-learn: pip install scikit-learn"
        ) from None
    bunch = sk_load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    return stratified_split(images, bunch.target, class_names=[str(d) for d in range(10)],
                            test_fraction=test_fraction, seed=seed)
