"""The optional embedding stage: nearest train images by pooled features, confirmed
by a crop-aligned correlation."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from ..errors import ModelGateError, user_error_frames
from .hashing import SMALL, THUMB, _small
from .pairs import LeakPair
from .prepare import _Prepared

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

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
    model (a gate's run, a name ``finetune`` knows, or a model object) whose classifier
    head is cut off, leaving its pooled features, by the model's framework adapter. A run
    gives its model as pretrained, before fine-tuning (``FinetuneRun.backbone``)."""
    from ..frameworks import DEFAULT, adapters, framework_for, named
    from ..run import FinetuneRun

    if isinstance(embeddings, FinetuneRun):
        framework = named(embeddings.config.get("framework", DEFAULT))
        make = embeddings.backbone or partial(_carries_no_model, embeddings.model)
    elif callable(embeddings) and not hasattr(embeddings, "parameters") and not (
            _takes_no_arguments(embeddings)) and not any(
            a.claims(embeddings) for a in adapters()):  # a model factory is a model
        return lambda images: np.asarray(embeddings(images), dtype=np.float32)
    else:
        framework = framework_for(embeddings)
        make = partial(_load, framework, embeddings)
    features = framework.feature_extractor(make, size)
    return partial(_resized_features, features, size)


def _carries_no_model(name: str, size: int) -> Any:
    raise ModelGateError(f"embeddings=: this run of {name} carries no model (it was not made "
                         "by finetune); pass the model's name or module instead")


def _load(framework: Any, model: Any, size: int) -> Any:
    return framework.load(model, weights="DEFAULT", image_size=size, mean=None, std=None,
                          transform=None)


def _resized_features(features: Callable[[np.ndarray], np.ndarray], size: int,
                      images: list[np.ndarray]) -> np.ndarray:
    from PIL import Image

    return features(np.stack([np.asarray(Image.fromarray(a).convert("RGB").resize(
        (size, size), Image.Resampling.BILINEAR)) for a in images]))


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
