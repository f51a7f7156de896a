"""Shifted and turned variants of test thumbnails, searched when the image itself
matches nothing, and the fine-detail check their pairs must pass."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import user_error_frames
from .hashing import THUMB

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

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
