"""The aligned stage: copies re-cropped, zoomed, shifted, turned and recoloured at once.

A real cross-split duplicate is seldom one edit: the same photo cut a little tighter,
moved by a pixel or two, brightened and saved again. Each edit alone moves the perceptual
hashes a little; together they move them past any radius that keeps different photos of
one layout apart. This stage finds such pairs in two steps, on the 32x32 greyscale
thumbnails the hash stage already has:

1. **Candidates.** Each test image, and each train image, is also described as seen
   through ``WINDOWS``: cut by 10% about its centre and at four offsets of 2 px. A
   description is the view's 6x6 lowest DCT frequencies less the DC term, normalised: a
   unit vector whose cosine with another says how alike two coarse layouts are. Test
   windows are searched among whole train images (the train image is the crop), and whole
   test images among train windows (the test image is the crop), plain and mirrored; each
   test image's ``TOP_K`` most alike train images are its candidates. The search is an
   inverted file (``_InvertedFile``): vectors grouped around k-means centroids, each query
   visiting only its nearest groups, so the cost grows about with the square root of the
   train size per query instead of with it.
2. **Alignment.** A candidate's transform (scale, turn, shift) is refined from its window
   by a local search on the 16x16 thumbnails (``_MOVES``). The pair is a copy when, so
   aligned, the thumbnails' central regions correlate at ``ALIGNED_SIMILARITY`` (at 16x16,
   or at 32x32 where higher) and their fine detail (32x32 less 4x4 block means) at
   ``ALIGNED_DETAIL``: a layout alike is not enough, the texture must line up too.

The thresholds were chosen on a corpus of CIFAR-10 test images edited by a cut or zoom of
3-15% with a shift of up to 3 px, brightness, contrast and colour +-15% and JPEG 60-95 in
random combinations, and by crops keeping 85-95% of the side, planted in either split
(benchmarks/bench_leakage.py measures them on other images and edits).
"""

from __future__ import annotations

import numpy as np

from ..errors import user_error_frames
from .hashing import _DCT8, BLOCK, SMALL, THUMB, _blocks
from .pairs import LeakPair
from .prepare import _Prepared

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

_K = 6  # the 6x6 lowest DCT frequencies (35 without the DC term) describe a layout
_DCT6 = np.kron(_DCT8[:_K], _DCT8[:_K]).T.astype(np.float32)  # (1024, 36)
_MIRROR = np.tile((-1.0) ** np.arange(_K), _K).astype(np.float32)[1:]

# (scale, degrees, dx, dy) of each window, in 32 px units: scale < 1 zooms in on the image
# seen through it (a test window: the train image is its crop; a train window: the test
# image is).
_ZOOM = 0.9
WINDOWS: tuple[tuple[float, float, float, float], ...] = (
    (1.0, 0.0, 0.0, 0.0), (_ZOOM, 0.0, 0.0, 0.0),
    *((_ZOOM, 0.0, dx, dy) for dx in (-2.0, 2.0) for dy in (-2.0, 2.0)),
)
TOP_K = 4
# A test split of fewer than CANDIDATE_BUDGET / TOP_K images verifies more candidates each,
# up to this many pairs in all: tiles of one textured photo all look alike in a coarse
# layout, and the copy of one may rank sixth.
CANDIDATE_BUDGET = 20_000
# On the tuning corpus these kept 0.96 of the planted copies (0.96 of a held-out half) and
# the pairs they added between untouched CIFAR-10 images were, looked at, nearly all the
# same photograph (BENCHMARKS.md).
ALIGNED_SIMILARITY = 0.90
ALIGNED_DETAIL = 0.8
# The largest shift (32 px units, 11% of a side) a confirmed pair may have: the windows
# start within 2 px and the edits searched for move a copy by up to 3 px.
MAX_SHIFT = 3.5


def _coordinates(n: int, scale: np.ndarray, degrees: np.ndarray, dx: np.ndarray,
                 dy: np.ndarray, out: int, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (P, out*out) in an n x n image of each output pixel of an
    out x out view, for P similarity transforms given in 32 px units."""
    unit = n / THUMB
    y, x = np.mgrid[margin:out - margin, margin:out - margin].astype(np.float32)
    x = (x + 0.5) * (n / out) - n / 2
    y = (y + 0.5) * (n / out) - n / 2
    t = np.deg2rad(degrees).astype(np.float32)[:, None]
    s = scale.astype(np.float32)[:, None]
    c, si = np.cos(t), np.sin(t)
    sx = s * (c * x.ravel() - si * y.ravel()) + n / 2 - 0.5 + dx[:, None] * unit
    sy = s * (si * x.ravel() + c * y.ravel()) + n / 2 - 0.5 + dy[:, None] * unit
    return sx, sy


def _warp(images: np.ndarray, scale: np.ndarray, degrees: np.ndarray, dx: np.ndarray,
          dy: np.ndarray, out: int, margin: int = 0) -> np.ndarray:
    """(P, out*out) bilinear views of (P, n, n) float32 images under per-image transforms
    (with ``margin``, only the central (out - 2 margin) square); pixels past the edge repeat
    it."""
    n = images.shape[1]
    sx, sy = _coordinates(n, scale, degrees, dx, dy, out, margin)
    np.clip(sx, 0, n - 1, out=sx)
    np.clip(sy, 0, n - 1, out=sy)
    x0 = np.minimum(sx.astype(np.intp), n - 2)
    y0 = np.minimum(sy.astype(np.intp), n - 2)
    fx = sx - x0.astype(np.float32)
    fy = sy - y0.astype(np.float32)
    flat = images.reshape(-1)
    i00 = y0 * n + x0
    i00 += (np.arange(len(images), dtype=np.intp) * (n * n))[:, None]
    top = flat[i00]
    top += (flat[i00 + 1] - top) * fx
    bottom = flat[i00 + n]
    bottom += (flat[i00 + n + 1] - bottom) * fx
    top += (bottom - top) * fy
    return top


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)


def _centre(out: int, margin: int) -> np.ndarray:
    keep = np.zeros((out, out), dtype=bool)
    keep[margin:out - margin, margin:out - margin] = True
    return keep.ravel()


_MARGIN16 = 2
_CENTRE16 = _centre(SMALL, _MARGIN16)
_CENTRE32 = _centre(THUMB, 4)


def _detail(views: np.ndarray) -> np.ndarray:
    """32x32 views less their 4x4 block means (the fine detail), as (P, 1024) rows."""
    g = views.reshape(len(views), THUMB // 4, 4, THUMB // 4, 4)
    return (g - g.mean(axis=(2, 4), keepdims=True)).reshape(len(views), -1)


def _window_map(scale: float, degrees: float, dx: float, dy: float) -> np.ndarray:
    """The (1024, 36) linear map from a 32x32 thumbnail to the low DCT frequencies of its
    view through one window: the view of each of the 1024 one-pixel images is one row of
    the sampling, folded into the DCT."""
    ones = np.ones(THUMB * THUMB, dtype=np.float32)
    basis = np.eye(THUMB * THUMB, dtype=np.float32).reshape(-1, THUMB, THUMB)
    return _warp(basis, ones * scale, ones * degrees, ones * dx, ones * dy, THUMB) @ _DCT6


_MAPS: dict[tuple, np.ndarray] = {}


def _descriptors(grey: np.ndarray, windows: tuple = ((1.0, 0.0, 0.0, 0.0),)) -> np.ndarray:
    """(n, windows, 35) unit vectors: each window's 6x6 low DCT frequencies less DC."""
    if windows not in _MAPS:
        _MAPS[windows] = np.concatenate([_window_map(*w) for w in windows], axis=1)
    n = len(grey)
    c = _blocks(grey, _MAPS[windows]).reshape(n, len(windows), _K * _K)[:, :, 1:]
    return c / (np.linalg.norm(c, axis=2, keepdims=True) + 1e-6)


class _InvertedFile:
    """Train vectors grouped around spherical k-means centroids; a query visits its
    ``probes`` nearest groups. About 2 sqrt(n) groups: a query then compares with
    ``probes`` x sqrt(n) / 2 vectors instead of n. Written here, not taken from faiss: the
    scan needs a few dozen lines of it, and faiss would be a binary dependency of the default
    scan for every user (its recall against exhaustive search is measured in
    benchmarks/bench_leakage.py)."""

    def __init__(self, vectors: np.ndarray, seed: int = 0, rounds: int = 6,
                 sample: int = 32768) -> None:
        n = len(vectors)
        groups = int(np.clip(round(2 * np.sqrt(n)), 1, min(n, 4096)))
        rng = np.random.default_rng(seed)
        # The centroids are fitted on a sample (k-means over 265,000 train windows took
        # 3.3 s, on 32,768 of them 0.4 s); every vector is then put in its nearest group.
        fit = vectors[rng.choice(n, sample, replace=False)] if n > sample else vectors
        centroids = fit[rng.choice(len(fit), groups, replace=False)].copy()
        for _ in range(rounds):
            assign = self._nearest(fit, centroids)
            sums = np.zeros_like(centroids)
            np.add.at(sums, assign, fit)
            empty = ~sums.any(axis=1)
            sums[empty] = centroids[empty]
            centroids = sums / (np.linalg.norm(sums, axis=1, keepdims=True) + 1e-12)
        assign = self._nearest(vectors, centroids)
        self.centroids = centroids
        self.order = np.argsort(assign, kind="stable")
        self.starts = np.searchsorted(assign[self.order], np.arange(groups + 1))
        self.vectors = vectors[self.order]

    @staticmethod
    def _nearest(vectors: np.ndarray, centroids: np.ndarray, block: int = 16384) -> np.ndarray:
        return np.concatenate([np.argmax(vectors[s:s + block] @ centroids.T, axis=1)
                               for s in range(0, len(vectors), block)]).astype(np.int64)

    def search(self, queries: np.ndarray, probes: int, per_group: int = 1
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query row, vector index, cosine) of each query's ``per_group`` best vectors in
        each of its ``probes`` nearest groups."""
        probes = min(probes, len(self.centroids))
        near = np.empty((len(queries), probes), dtype=np.int64)
        for s in range(0, len(queries), 16384):
            # The nearest groups by repeated argmax: argpartition of rows this short took
            # ten times as long.
            sim = queries[s:s + 16384] @ self.centroids.T
            rows = np.arange(len(sim))
            for p in range(probes):
                near[s:s + 16384, p] = best = np.argmax(sim, axis=1)
                sim[rows, best] = -np.inf
        rows = np.repeat(np.arange(len(queries)), probes)
        groups = near.ravel()
        by_group = np.argsort(groups, kind="stable")
        rows, groups = rows[by_group], groups[by_group]
        bounds = np.searchsorted(groups, np.arange(len(self.centroids) + 1))
        found_q, found_i, found_s = [], [], []
        for g in range(len(self.centroids)):
            q = rows[bounds[g]:bounds[g + 1]]
            lo, hi = self.starts[g], self.starts[g + 1]
            if not len(q) or hi == lo:
                continue
            sim = queries[q] @ self.vectors[lo:hi].T
            if per_group == 1:
                best = np.argmax(sim, axis=1)
                found_q.append(q)
                found_i.append(best + lo)
                found_s.append(sim[np.arange(len(q)), best])
                continue
            m = min(per_group, hi - lo)
            top = np.argpartition(-sim, m - 1, axis=1)[:, :m]
            found_q.append(np.repeat(q, m))
            found_i.append((top + lo).ravel())
            found_s.append(np.take_along_axis(sim, top, 1).ravel())
        if not found_q:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float32)
        return (np.concatenate(found_q), self.order[np.concatenate(found_i)],
                np.concatenate(found_s))


def _candidates(train_grey: np.ndarray, test_grey: np.ndarray, probes: int = 8,
                k: int = TOP_K) -> tuple[np.ndarray, ...]:
    """(train index, test index, window, mirrored, cosine) of each test image's k most
    alike train images over the windows, plain and mirrored. A window on the test side
    (it holds more of the picture) is one of ``WINDOWS``; one on the train side is
    searched as the train image's own view through it (an index of every train image's
    windows), and named by the inverse transform of the test image, ``len(WINDOWS)`` on."""
    w = len(WINDOWS)
    n_train, n = len(train_grey), len(test_grey)
    train_views = _descriptors(train_grey, WINDOWS)  # (n_train, W, 35)
    views = _descriptors(test_grey, WINDOWS)  # (n, W, 35)
    both = np.concatenate([views, views * _MIRROR])  # (2n, W, 35): plain, then mirrored
    # Test windows against whole train images (the train image is the crop)...
    # Each (query, group) offers its best vector; where k asks for more candidates than a
    # large split allows (a small split), each offers its k best.
    per_group = 1 if k <= TOP_K else k
    row, train, sim = _InvertedFile(train_views[:, 0]).search(both.reshape(2 * n * w, -1),
                                                              probes, per_group)
    mirrored, rest = np.divmod(row, n * w)
    test, window = np.divmod(rest, w)
    # ... and the whole test image against train windows (the test image is the crop).
    row2, hit, sim2 = _InvertedFile(train_views[:, 1:].reshape(n_train * (w - 1), -1)).search(
        both[:, 0], probes, per_group)
    train2, window2 = np.divmod(hit, w - 1)
    mirrored2, test2 = np.divmod(row2, n)
    train = np.concatenate([train, train2])
    test = np.concatenate([test, test2])
    window = np.concatenate([window, window2 + 1 + w])
    mirrored = np.concatenate([mirrored, mirrored2])
    sim = np.concatenate([sim, sim2])
    # Each test image's k best distinct train images, over windows, mirrors and groups.
    order = np.lexsort((-sim, train, test))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (test[order][1:] != test[order][:-1]) | (train[order][1:] != train[order][:-1])
    order = order[first]  # the best window of each (test, train)
    order = order[np.lexsort((-sim[order], test[order]))]
    rank = np.arange(len(order)) - np.searchsorted(test[order], test[order])
    order = order[rank < k]
    return train[order], test[order], window[order], mirrored[order].astype(bool), sim[order]


def _window_params(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 4) transforms of candidates' windows, and which side each applies to: True for
    the train image (the test image is its crop), False for the test image."""
    w = len(WINDOWS)
    return np.array(WINDOWS, dtype=np.float32)[window % w], window >= w


def _pool16(grey: np.ndarray) -> np.ndarray:
    """2x2 means of (n, 32, 32) thumbnails: (n, 16, 16), float32 (strided sums: a
    reshape's mean over two axes took ten times as long)."""
    out = np.empty((len(grey), SMALL, SMALL), dtype=np.float32)
    for s in range(0, len(grey), BLOCK):
        g = grey[s:s + BLOCK].astype(np.float32)
        out[s:s + BLOCK] = (g[:, ::2, ::2] + g[:, 1::2, ::2] + g[:, ::2, 1::2]
                            + g[:, 1::2, 1::2]) * 0.25
    return out


# The local search around a candidate's start: shifts by a step (32 px units) in the 8
# directions (twice: up to 2 px), then scales by a factor either way, turns, and again at
# half the steps. Pairs whose
# best correlation after the first moves is under _HOPELESS stop there (different photos:
# no refinement brings them to MIN_ALIGNED).
_MOVES = (("shift", 1.0), ("shift", 1.0), ("scale", 1.04), ("turn", 2.5), ("shift", 0.5),
          ("scale", 1.02), ("turn", 1.25))
_HOPELESS = 0.8
# A move is taken when it raises the correlation by more than this: a step that gains
# less is noise, and the transform named in the failure stays the simplest that fits.
_GAIN = 0.002


def _trials(move: str, size: float) -> list[tuple[float, float, float, float]]:
    """(scale factor, degrees, dx, dy) steps of one move from the current transform."""
    if move == "shift":
        return [(1.0, 0.0, dx * size, dy * size) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                if dx or dy]
    if move == "turn":
        return [(1.0, size, 0.0, 0.0), (1.0, -size, 0.0, 0.0)]
    return [(size, 0.0, 0.0, 0.0), (1 / size, 0.0, 0.0, 0.0)]


def _align(train_grey: np.ndarray, test_grey: np.ndarray, ai: np.ndarray, bi: np.ndarray,
           window: np.ndarray, mirrored: np.ndarray, block: int = 4096
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each candidate's correlation under its refined transform (the central 16x16, or
    32x32 where higher), its 32x32 detail agreement (-1 where it stopped early), the
    transform (scale, degrees, dx, dy) as an (P, 4) array, and the side it applies to
    (True: the train image's view is compared with the whole test image). The image that
    holds more of the picture is the one seen through the transform, so no view reaches
    past its edges."""
    params, side = _window_params(window)
    corr = np.empty(len(ai), dtype=np.float32)
    detail = np.full(len(ai), -1.0, dtype=np.float32)
    small_train = _pool16(train_grey)
    small_test = _pool16(test_grey)

    def score(images: np.ndarray, p: np.ndarray, target: np.ndarray) -> np.ndarray:
        view = _warp(images, *p.T, SMALL, margin=_MARGIN16)
        return np.einsum("nd,nd->n", _unit(view), target)

    def pair(train: np.ndarray, test: np.ndarray, m: np.ndarray, t: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """(moving, still): the (mirrored, where so) test image and the train image, the
        one seen through the transform first."""
        test = test.copy()
        test[m] = test[m][:, :, ::-1]
        t = t[:, None, None]
        return np.where(t, train, test), np.where(t, test, train)

    for s in range(0, len(ai), block):
        a, b, m, t = ai[s:s + block], bi[s:s + block], mirrored[s:s + block], side[s:s + block]
        moving, still = pair(small_train[a], small_test[b], m, t)
        target = _unit(still.reshape(len(a), -1)[:, _CENTRE16])
        p = params[s:s + block].copy()
        live = np.arange(len(a))
        # From the candidate's window, from no transform, or from the window's shift alone,
        # whichever lines up best: the window that described a shifted copy best may be a
        # zoomed one.
        best = score(moving, p, target)
        for start in (np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32) * np.ones_like(p),
                      p * np.array([0.0, 1.0, 1.0, 1.0], dtype=np.float32) + [1, 0, 0, 0]):
            c = score(moving, start, target)
            better = c > best
            best[better] = c[better]
            p[better] = start[better]
        for k, (move, size) in enumerate(_MOVES):
            start = p[live].copy()
            for f, turn, ox, oy in _trials(move, size):
                trial = start * np.array([f, 1, 1, 1], dtype=np.float32)
                trial[:, 1] += turn
                trial[:, 2] += ox
                trial[:, 3] += oy
                c = score(moving[live], trial, target[live])
                better = c > best[live] + _GAIN
                best[live[better]] = c[better]
                p[live[better]] = trial[better]
            if k == 0:
                live = live[best[live] >= _HOPELESS]
        # The search can settle on a slight zoom where the copy is only moved: the same
        # framing at the whole-pixel shift nearest is taken where it fits about as well.
        snap = p[live] * np.array([0, 0, 1, 1], dtype=np.float32) + [1, 0, 0, 0]
        snap[:, 2:] = np.round(snap[:, 2:])
        c = score(moving[live], snap, target[live])
        simpler = c >= best[live] - _GAIN
        best[live[simpler]] = np.maximum(c[simpler], best[live[simpler]])
        p[live[simpler]] = snap[simpler]
        corr[s:s + block] = best
        if len(live):  # at 32x32: a shift of one pixel is half a pixel at 16x16, a blur
            big, partner = pair(train_grey[a[live]].astype(np.float32),
                                test_grey[b[live]].astype(np.float32), m[live], t[live])
            view = _warp(big, *p[live].T, THUMB)
            partner = partner.reshape(len(live), -1)
            corr[s + live] = np.maximum(best[live], np.einsum(
                "nd,nd->n", _unit(view[:, _CENTRE32]), _unit(partner[:, _CENTRE32])))
            detail[s + live] = np.einsum(
                "nd,nd->n", _unit(_detail(view)[:, _CENTRE32]),
                _unit(_detail(partner)[:, _CENTRE32]))
        params[s:s + block] = p
    return corr, detail, params, side


def _describe(scale: float, degrees: float, dx: float, dy: float, train_side: bool) -> str:
    """How the two images line up, in words: the framing, the turn, and where the picture
    sits in one image against the other."""
    moving, still = ("train", "test") if train_side else ("test", "train")
    if round(scale, 2) >= 1:
        what = "the same framing"
    else:
        what = f"the {still} image is the {moving} image cut to {scale:.0%} of its side"
    turned = [f"turned {degrees:+.0f} degrees"] if round(degrees) else []
    # The view of the moving image at x shows its pixel at x + dx: the picture sits dx
    # further right (dy further down) there than in the still image.
    moved = [f"{abs(v) / THUMB:.0%} further {sides[v > 0]}"
             for v, sides in ((dx, ("left", "right")), (dy, ("up", "down")))
             if round(abs(v) / THUMB, 2)]
    sits = [f"the picture sits {' and '.join(moved)} in the {moving} image"] if moved else []
    return ", ".join([what, *turned, *sits])


def _aligned_pairs(a: _Prepared, b: _Prepared, known: set[tuple[int, int]],
                   min_similarity: float = ALIGNED_SIMILARITY,
                   min_detail: float = ALIGNED_DETAIL) -> list[LeakPair]:
    """Pairs between train ``a`` and test ``b`` that line up under a crop, zoom, shift or
    turn (see the module's docstring); pairs in ``known`` and images under MIN_NEAR_SIDE
    are left out."""
    if not len(a.ids) or not len(b.ids) or a.tiny.all() or b.tiny.all():
        return []
    k = max(TOP_K, CANDIDATE_BUDGET // len(b.ids))
    ai, bi, window, mirrored, _ = _candidates(a.grey, b.grey, k=k)
    keep = ~(a.tiny[ai] | b.tiny[bi]) & np.array(
        [(int(i), int(j)) not in known for i, j in zip(ai, bi, strict=True)], dtype=bool)
    ai, bi, window, mirrored = ai[keep], bi[keep], window[keep], mirrored[keep]
    corr, detail, params, side = _align(a.grey, b.grey, ai, bi, window, mirrored)
    # A search that wandered past MAX_SHIFT lines up two different parts of a texture.
    ok = ((corr >= min_similarity) & (detail >= min_detail)
          & (np.abs(params[:, 2:]).max(axis=1) <= MAX_SHIFT))
    return [LeakPair(int(i), int(j), "near-flipped" if m else "near", "aligned",
                     similarity=round(float(c), 4), detail=round(float(d), 4),
                     alignment=_describe(*map(float, p), bool(t)))
            for i, j, m, c, d, p, t in zip(ai[ok], bi[ok], mirrored[ok], corr[ok], detail[ok],
                                           params[ok], side[ok], strict=True)]
