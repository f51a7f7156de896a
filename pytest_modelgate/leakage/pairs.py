"""What a scan finds: presets, pairs and the scan's result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

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
    # The aligned stage (re-cropped, zoomed, shifted, turned copies, several edits at once):
    # the correlation its aligned pairs need, or 0 for no aligned stage.
    aligned_similarity: float = 0.0


PRESETS = {
    "strict": Preset(10, 0.95, "re-encoded (JPEG 50-95), resized 0.5x-2x, mirrored, "
                               "brightness and contrast +-20%, light noise, greyscale; and "
                               "by the aligned stage, cut or zoomed by up to 15%, shifted, "
                               "turned up to 5 degrees, recoloured and re-encoded at once",
                    8, 0.99, aligned_similarity=0.90),
    "loose": Preset(6, 0.97, "the same edits when milder, not cut, shifted or turned; fewer "
                             "pairs to review", 5, 0.995),
}


@dataclass(frozen=True)
class LeakPair:
    """One test image found in train: how (``kind``: ``"exact"``, ``"flipped"``, ``"near"``
    or ``"near-flipped"``), by which ``stage`` (``"pixels"``, ``"phash"``, ``"aligned"`` or
    ``"embedding"``), for the hash stage its Hamming ``distance`` (with the ``threshold``
    used), and the thumbnails' ``similarity``; for the aligned stage also the ``detail``
    agreement and the ``alignment`` in words."""

    train_index: int
    test_index: int
    kind: str
    stage: str = "pixels"
    distance: int = 0
    threshold: int = 0
    similarity: float = 1.0
    cosine: float = 0.0  # the embedding stage: cosine similarity of the pooled features
    alignment: str = ""  # the aligned stage: how the two images line up
    detail: float = 0.0  # the aligned stage: agreement of the aligned fine detail


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
    aligned_similarity: float = 0.0  # the aligned stage's correlation (0: not run)
    max_distance: int = 0  # the hash stage's thresholds, as the scan used them
    min_similarity: float = 0.0
    # How to name a sample, and its label, per split ("train", "test"); not in the repr,
    # which would print every label of both splits.
    describe: dict[str, Callable[[int], str]] = field(default_factory=dict, repr=False)
    labels: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def leaked_test_images(self) -> int:
        return len({p.test_index for p in self.pairs})

    def by_stage(self) -> dict[str, int]:
        """Pairs per stage that found them."""
        out: dict[str, int] = {}
        for p in self.pairs:
            out[p.stage] = out.get(p.stage, 0) + 1
        return out
