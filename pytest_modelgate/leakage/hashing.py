"""The perceptual hashes of 32x32 greyscale thumbnails, the 16x16 rows that confirm
their pairs, and the multi-index search over 64-bit hashes."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..errors import user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

THUMB = 32  # the perceptual hash's greyscale thumbnail
SMALL = 16  # the confirming correlation's thumbnail


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
    return _blocks(grey, _DCT8x8_T)


def _mirrored(coefficients: np.ndarray) -> np.ndarray:
    """The low frequencies of the mirrored thumbnails (the DC term keeps its sign)."""
    return np.concatenate([coefficients[:, :1], coefficients[:, 1:] * _MIRROR_SIGN], axis=1)


def _median_bits(coefficients: np.ndarray) -> np.ndarray:
    # The median of the 63 AC coefficients is the 32nd smallest.
    median = np.partition(coefficients[:, 1:], 31, axis=1)[:, 31:32]
    return _pack(coefficients > median)


def median_hashes(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """imagededup's PHash of (n, 32, 32) thumbnails and of their mirrors: each of the 64
    low-frequency DCT coefficients above the median of the 63 AC ones is a 1 bit."""
    c = _low_frequencies(grey)
    return _median_bits(c), _median_bits(_mirrored(c))


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


# Thumbnails go through the float32 matrix products this many at a time: a float32 copy of
# 500,000 at once would take 2 GB.
BLOCK = 32768


def _blocks(grey: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(n, 32, 32) thumbnails of any dtype, flattened, times ``matrix``, in float32."""
    flat = grey.reshape(len(grey), -1)
    out = np.empty((len(grey), matrix.shape[1]), dtype=np.float32)
    for s in range(0, len(grey), BLOCK):
        np.matmul(flat[s:s + BLOCK].astype(np.float32), matrix, out=out[s:s + BLOCK])
    return out


def _small(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm 16x16 thumbnails and their mirrors, as (n, 256) rows."""
    plain = _blocks(grey, _POOL)
    plain -= plain.mean(axis=1, keepdims=True)
    plain /= np.linalg.norm(plain, axis=1, keepdims=True) + 1e-6
    return plain, plain[:, _MIRROR_COLUMNS]


def _features(grey: np.ndarray) -> tuple[np.ndarray, ...]:
    """Median hashes and their mirrors, projection hashes and their mirrors, 16x16 rows
    and mirrored rows of (n, 32, 32) thumbnails (the DCT computed once)."""
    c = _low_frequencies(grey)
    return (_median_bits(c), _median_bits(_mirrored(c)), *_projection_bits(c), *_small(grey))



# --- multi-index hashing --------------------------------------------------------------------

_CHUNKS = 4
_CHUNK_BITS = 16


def _masks(radius: int) -> np.ndarray:
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(_CHUNK_BITS), r)]
    return np.array(masks, dtype=np.int64)


ChunkIndex = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def chunk_index(base: np.ndarray) -> ChunkIndex:
    """Per 16-bit chunk of the base hashes: their order by chunk value, where each value's
    run starts, and its length. Built once per base, searched by each of its hashes'
    query sets."""
    index = []
    for c in range(_CHUNKS):
        shift = np.uint64(c * _CHUNK_BITS)
        base_chunk = ((base >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(base_chunk, kind="stable")
        starts = np.searchsorted(base_chunk[order], np.arange((1 << _CHUNK_BITS) + 1))
        index.append((order, starts, np.diff(starts)))
    return index


def hash_neighbours(queries: np.ndarray, base: np.ndarray, max_distance: int,
                    block: int = 2048, index: ChunkIndex | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, base) pair of 64-bit hashes within ``max_distance`` bits, by
    multi-index hashing; returns query indices, base indices and distances. ``index`` is
    ``chunk_index(base)``, when the caller keeps one."""
    radius = max_distance // _CHUNKS
    masks = _masks(radius)
    found_q, found_b = [], []
    index = chunk_index(base) if index is None else index
    for c in range(_CHUNKS):
        shift = np.uint64(c * _CHUNK_BITS)
        order, starts, counts = index[c]
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
