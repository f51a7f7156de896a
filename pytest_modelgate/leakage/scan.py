"""The scan: the stages in order, allow-lists, duplicates inside test, label conflicts."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import ImageSet
from ..errors import ModelGateError, ModelGateWarning, user_error_frames
from .aligned import _aligned_pairs
from .embeddings import EMBEDDING_SIZE, MIN_ALIGNED, _embedder, _embedding_pairs
from .hashing import ChunkIndex, chunk_index, hash_neighbours
from .pairs import PRESETS, LeakPair, LeakScan, Preset
from .prepare import _open_store, _prepare, _Prepared

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

# --- the scan ---------------------------------------------------------------------------------

def _confirmed(base: tuple[np.ndarray, ...], queries: tuple[np.ndarray, ...],
               preset: Preset, keep: Callable[[np.ndarray, np.ndarray], np.ndarray],
               distances: tuple[int, int], indexes: tuple[ChunkIndex, ChunkIndex]
               ) -> Iterator[tuple[int, int, bool, int, float, int]]:
    """(base index, query index, mirrored, distance, similarity, threshold) of each pair
    that one of the two hashes proposes within its distance and the 16x16 correlation
    confirms; ``keep(base_indices, query_indices)`` drops pairs before the correlation."""
    med_a, _, proj_a, _, small_a, _ = base
    med_b, med_b_mirror, proj_b, proj_b_mirror, small_b, small_b_mirror = queries
    for hashes, plain, mirror, distance, minimum, index in (
            (med_a, med_b, med_b_mirror, distances[0], preset.min_similarity, indexes[0]),
            (proj_a, proj_b, proj_b_mirror, distances[1], preset.projection_similarity,
             indexes[1])):
        qi, ai, dist = hash_neighbours(np.concatenate([plain, mirror]), hashes, distance,
                                       index=index)
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


CONFLICT_DISTANCE = 3  # bits: four 16-bit chunks, so some chunk agrees exactly


def _near_pairs(a: _Prepared, b: _Prepared, preset: Preset, *, same: bool,
                conflicts_only: bool = False) -> list[tuple[int, int, bool, int, float, int]]:
    """(index in a, index in b, mirrored, distance, similarity, threshold) of confirmed near
    pairs, from both hashes; with ``same``, a self-join with i < j."""
    if conflicts_only:
        names = {name: k for k, name in enumerate(sorted(set(a.labels) | set(b.labels)))}
        label_a = np.array([names[x] for x in a.labels])
        label_b = np.array([names[x] for x in b.labels])

    def keep(ai: np.ndarray, bi: np.ndarray) -> np.ndarray:
        ok = ~(a.tiny[ai] | b.tiny[bi])
        if conflicts_only:
            ok &= label_a[ai] != label_b[bi]
        return ok & (ai < bi) if same else ok

    best: dict[tuple[int, int], tuple[int, int, bool, int, float, int]] = {}
    base = a.features()
    indexes = (chunk_index(base[0]), chunk_index(base[2]))
    # Within train, for label conflicts, near means within CONFLICT_DISTANCE: one probe per
    # chunk. The preset's radius probes 137 chunk values, and as train grows each holds
    # more hashes: that self-join took 10x the time for 3x the images (150,000), where the
    # scan against test grows with train alone.
    distances = ((min(preset.max_distance, CONFLICT_DISTANCE),
                  min(preset.projection_distance, CONFLICT_DISTANCE)) if conflicts_only
                 else (preset.max_distance, preset.projection_distance))
    for i, j, m, d, sim, threshold in _confirmed(base, b.features(), preset, keep, distances,
                                                 indexes):
        if (i, j) not in best or sim > best[(i, j)][4]:
            best[(i, j)] = (i, j, m, d, sim, threshold)
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
    for i, j, mirrored, distance, similarity, threshold in _near_pairs(
            a, b, preset, same=same, conflicts_only=conflicts_only):
        if (i, j) not in seen:
            pairs.append(LeakPair(i, j, "near-flipped" if mirrored else "near", "phash",
                                  distance, threshold, round(similarity, 4)))
    if preset.aligned_similarity and not same:
        pairs += _aligned_pairs(a, b, {(p.train_index, p.test_index) for p in pairs},
                                preset.aligned_similarity)
    return sorted(pairs, key=lambda p: (p.test_index, p.train_index))


_REF = (str, Path, numbers.Integral)  # numpy integers too


def _allow_entries(allow: Any) -> list[Any]:
    """``allow`` as a list, each entry a reference or a (train, test) pair of them; a
    string where the list belongs (each character would be a reference: "test[0]" would
    allow test image 0 by its "0") and entries of other kinds are errors."""
    if isinstance(allow, (str, bytes, Path)):
        raise ModelGateError(
            f"allow={allow!r} is one reference, not a list: pass allow=[{allow!r}] (or "
            "allow=[(train_ref, test_ref)] for a pair)")
    try:
        entries = list(allow)
    except TypeError:
        raise ModelGateError(
            f"allow={allow!r}: pass a list of references (a content id, a source path, an "
            "index or 'test[index]') or of (train_ref, test_ref) pairs") from None
    for entry in entries:
        pair = isinstance(entry, (tuple, list))
        refs = entry if pair else (entry,)
        if (pair and len(entry) != 2) or not all(
                isinstance(r, _REF) and not isinstance(r, bool) for r in refs):
            raise ModelGateError(
                f"allow= entry {entry!r}: an entry is a reference (a content id, a source "
                "path, an index or 'test[index]') or a (train_ref, test_ref) pair")
        if not pair and str(entry).startswith("train["):
            raise ModelGateError(
                f"allow= entry {entry!r} names a train image alone, while one reference "
                "names a test image: pass the pair in a list, "
                f"allow=[({entry!r}, 'test[index]')]")
    return entries


def _allowed(entries: list[Any], train: _Prepared, test: _Prepared, pairs: list[LeakPair]
             ) -> tuple[list[LeakPair], list[LeakPair]]:
    """Split pairs into (kept, allowed). ``entries`` come from ``_allow_entries``: a
    (train, test) pair of references or one reference naming a test image; a reference is
    a content id, a source path, an index, or "split[index]"."""
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
    from ..data import Splits

    if isinstance(train, Splits) and test is None:
        train, test = train.train, train.test
    if test is None:
        raise ModelGateError("pass train and test (ImageSets or folders), or one Splits")
    if preset not in PRESETS:
        raise ModelGateError(f"preset={preset!r} is not one of {sorted(PRESETS)}")
    if on_error not in ("raise", "skip"):
        raise ModelGateError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    entries = _allow_entries(allow)  # before any image is read
    chosen = PRESETS[preset]
    if max_distance is not None and (not isinstance(max_distance, numbers.Integral)
                                     or isinstance(max_distance, bool)
                                     or not 0 <= max_distance <= 32):
        raise ModelGateError(f"max_distance must be an integer in 0..32 (bits of 64), got "
                             f"{max_distance!r}")
    if min_similarity is not None and not (isinstance(min_similarity, (int, float))
                                           and 0 < min_similarity <= 1):
        hint = (f": did you mean {min_similarity / 100:.2f}?"
                if isinstance(min_similarity, (int, float)) and 1 < min_similarity <= 100
                else "")
        raise ModelGateError(f"min_similarity must be in (0, 1], got {min_similarity!r}{hint}")
    chosen = Preset(chosen.max_distance if max_distance is None else int(max_distance),
                    chosen.min_similarity if min_similarity is None else float(min_similarity),
                    chosen.catches, chosen.projection_distance,
                    max(chosen.projection_similarity,
                        chosen.min_similarity if min_similarity is None else min_similarity),
                    # min_similarity= also raises the aligned stage's bar, where it is on
                    chosen.aligned_similarity if min_similarity is None
                    or not chosen.aligned_similarity
                    else max(chosen.aligned_similarity, float(min_similarity)))
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
    pairs, allowed = _allowed(entries, a, b, found)
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
                    aligned_similarity=chosen.aligned_similarity,
                    max_distance=chosen.max_distance, min_similarity=chosen.min_similarity,
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
