"""Is a drop against the baseline more than noise? Paired tests on the same test samples.

A baseline stores, per gate test, each metric's value, n and interval, and per set of test
predictions the predicted classes and per-sample correctness (packed, base64) with a hash
of the test samples' ids and labels. When the hash matches, the comparison is paired:

- McNemar's exact test for accuracy and the recall of one class (an accuracy on that
  class's samples): only the samples one model gets right and the other wrong count.
- A paired bootstrap for every other metric of the confusion matrix (precision, F1,
  averages, balanced accuracy, MCC): both models' predictions are resampled together.

What is tested is the gate's claim: the metric is worse by more than the tolerance, not
merely worse. Two models trained with different seeds do differ, and on a large test set
a test of "worse at all" finds a seed's few-tenths-of-a-point difference significant. So
the bootstrap counts resamples in which the drop stays within the tolerance, and for
accuracy-type metrics McNemar's exact test (a drop exists) and that bootstrap (it exceeds
the tolerance) must both reject: the larger p-value counts.

When the test set changed, the comparison is unpaired: a z test on the two proportions
for accuracy-type metrics, on the two intervals' widths for the rest. Holm's
step-down correction keeps the chance of a false red at ``alpha`` per gate test however many
metrics it compares. Pure: numpy and the standard library, imported when first needed.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from .specs import MetricName, metric_spec

N_RESAMPLES = 2000  # paired bootstrap resamples: p-values down to 1/2001 for Holm's levels
POWER = 0.8  # the power "samples needed" is sized for
_NORMAL = NormalDist()


def _encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def sample_set_hash(y_true: Any, ids: Sequence[str] | None = None) -> str:
    """Identity of a test set: its sample ids (content ids, or positions) and labels."""
    import numpy as np

    h = hashlib.sha256()
    h.update(np.asarray(y_true, dtype=np.int64).tobytes())
    if ids is not None:
        h.update("\n".join(ids).encode())
    return h.hexdigest()[:16]


def pack_samples(y_true: Any, y_pred: Any, class_names: Sequence[str],
                 ids: Sequence[str] | None = None) -> dict[str, Any]:
    """What a paired comparison needs of one set of test predictions, JSON-ready and small:
    predicted classes (one byte each up to 256 classes) and correctness (one bit each)."""
    import numpy as np

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    dtype = np.uint8 if len(class_names) <= 256 else np.uint16
    return {
        "test_hash": sample_set_hash(y_true, ids),
        "n": int(len(y_true)),
        "classes": [str(c) for c in class_names],
        "y_true": _encode(y_true.astype(dtype).tobytes()),
        "y_pred": _encode(y_pred.astype(dtype).tobytes()),
        "correct": _encode(np.packbits(y_true == y_pred).tobytes()),
        "ids": "content" if ids is not None else "positions",
    }


def samples_key(packed: dict[str, Any]) -> str:
    """A short id for one set of test predictions within a record."""
    return hashlib.sha256(f"{packed['test_hash']}|{packed['y_pred']}".encode()).hexdigest()[:12]


def unpack_predictions(packed: dict[str, Any]):
    """The predicted classes of a packed sample set."""
    import numpy as np

    dtype = np.uint8 if len(packed["classes"]) <= 256 else np.uint16
    y_pred = np.frombuffer(_decode(packed["y_pred"]), dtype=dtype).astype(np.int64)
    if len(y_pred) != packed["n"]:
        raise ValueError(f"packed predictions hold {len(y_pred)} samples, not {packed['n']}")
    return y_pred


def unpack_correct(packed: dict[str, Any]):
    """Per-sample correctness (bool array) of a packed sample set."""
    import numpy as np

    bits = np.unpackbits(np.frombuffer(_decode(packed["correct"]), dtype=np.uint8))
    return bits[: packed["n"]].astype(bool)


# --- which test for which metric -----------------------------------------------------------

def significance_kind(name: str) -> str | None:
    """``"mcnemar"``, ``"bootstrap"``, or None when no per-sample test applies (timing
    ratios, leakage counts, the train/test gap, operating points)."""
    metric = MetricName.parse(name)
    base = metric.base
    if base == "accuracy" or (base == "recall" and metric.arg is not None and
                              metric.average is None):
        return "mcnemar"
    if base in ("balanced_accuracy", "mcc", "precision", "recall", "f1"):
        return "bootstrap"
    return None


def metric_from_cms(name: str, cms: Any, class_names: Sequence[str]):
    """A metric's value on one confusion matrix or a stack (..., K, K)."""
    import numpy as np

    from .metrics import (
        average_from_cm,
        balanced_accuracy_from_cm,
        class_metric_from_cm,
        mcc_from_cm,
    )

    metric = MetricName.parse(name)
    base = metric.base
    cms = np.asarray(cms)
    if base == "accuracy":
        return np.trace(cms, axis1=-2, axis2=-1) / np.maximum(cms.sum(axis=(-2, -1)), 1)
    if base == "balanced_accuracy":
        return balanced_accuracy_from_cm(cms)
    if base == "mcc":
        return mcc_from_cm(cms)
    if metric.average is not None:
        return average_from_cm(cms, base, metric.average)
    return class_metric_from_cm(cms, base, list(class_names).index(str(metric.arg)))


# --- the tests -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DropTest:
    """One drop, tested: one-sided p-value that the current model is truly worse, the test's
    name, whether it was paired, and the standard error of the difference (for sizing)."""

    p: float
    method: str
    paired: bool
    se: float
    n: int


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exact."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    # Integers throughout: exact for any n, and int / int rounds once.
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


def mcnemar(base_correct: Any, current_correct: Any) -> DropTest:
    """McNemar's exact one-sided test: b samples only the baseline got right, c only the
    current model; under "no difference" b ~ Binomial(b + c, 1/2)."""
    import numpy as np

    base_correct = np.asarray(base_correct, dtype=bool)
    current_correct = np.asarray(current_correct, dtype=bool)
    n = len(base_correct)
    b = int(np.sum(base_correct & ~current_correct))
    c = int(np.sum(~base_correct & current_correct))
    d = (b - c) / max(n, 1)
    se = math.sqrt(max((b + c) / max(n, 1) - d * d, 0.0) / max(n, 1))
    return DropTest(binomial_tail(b, b + c), f"McNemar exact (b={b}, c={c})", True, se, n)


def paired_bootstrap(name: str, class_names: Sequence[str], y_true: Any, base_pred: Any,
                     current_pred: Any, *, higher_is_better: bool = True, margin: float = 0.0,
                     n_resamples: int = N_RESAMPLES, seed: int = 0) -> DropTest:
    """Resample test samples with replacement, score both models on each resample; the
    p-value is the share of resamples in which the current model is worse by no more than
    ``margin`` (the tolerance: the claim tested is "worse by more than the tolerance").

    Resampling samples is a multinomial draw over the cells of the joint table
    (true, baseline prediction, current prediction), one draw per non-empty cell, as in
    ``metrics.bootstrap_confusion``.
    """
    import numpy as np

    k = len(class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    codes = (y_true * k + np.asarray(base_pred, dtype=np.int64)) * k + np.asarray(
        current_pred, dtype=np.int64)
    cells, counts = np.unique(codes, return_counts=True)
    n = int(counts.sum())
    true_of, base_of, cur_of = cells // (k * k), (cells // k) % k, cells % k
    rng = np.random.default_rng(seed)
    diffs = []
    for size in (len(c) for c in np.array_split(np.arange(n_resamples), 4) if len(c)):
        draws = rng.multinomial(n, counts / n, size=size)  # (size, cells)
        cm_b = np.zeros((k * k, size), dtype=np.int64)
        cm_c = np.zeros((k * k, size), dtype=np.int64)
        np.add.at(cm_b, true_of * k + base_of, draws.T)
        np.add.at(cm_c, true_of * k + cur_of, draws.T)
        vb = metric_from_cms(name, cm_b.T.reshape(size, k, k), class_names)
        vc = metric_from_cms(name, cm_c.T.reshape(size, k, k), class_names)
        diffs.append(vb - vc if higher_is_better else vc - vb)
    d = np.concatenate(diffs)  # positive: the current model is worse
    p = (1 + int(np.sum(d <= margin + 1e-12))) / (len(d) + 1)
    return DropTest(float(p), f"paired bootstrap ({len(d)} resamples)", True, float(d.std()),
                    n)


def unpaired(name: str, base: dict[str, Any], current: dict[str, Any], margin: float = 0.0
             ) -> DropTest | None:
    """Different test samples: a z test that the drop exceeds ``margin``. Proportions use the
    two-proportion standard error; other metrics the standard errors their intervals imply."""
    spec = metric_spec(name)
    sign = 1 if spec.higher_is_better else -1
    drop = sign * (float(base["value"]) - float(current["value"]))
    n1, n2 = int(base.get("n") or 0), int(current.get("n") or 0)
    if significance_kind(name) == "mcnemar" and n1 and n2:
        p1, p2 = float(base["value"]), float(current["value"])
        se = math.sqrt(max(p1 * (1 - p1), 0.25 / n1) / n1 + max(p2 * (1 - p2), 0.25 / n2) / n2)
        method = "z test on two proportions (unpaired)"
    else:
        ses = []
        for entry in (base, current):
            interval = entry.get("interval")
            if not interval:
                return None
            z = _NORMAL.inv_cdf(0.5 + float(entry.get("confidence") or 0.95) / 2)
            ses.append((float(interval[1]) - float(interval[0])) / (2 * z))
        se = math.sqrt(ses[0] ** 2 + ses[1] ** 2)
        method = "z test on the intervals (unpaired)"
    if se <= 0:
        return DropTest(0.0 if drop > margin else 1.0, method, False, 0.0, n2)
    return DropTest(1 - _NORMAL.cdf((drop - margin) / se), method, False, se, n2)


def holm(pvalues: dict[str, float], alpha: float, m: int | None = None
         ) -> dict[str, tuple[bool, float]]:
    """Holm's step-down procedure over ``m`` hypotheses (default: those given; pass more
    when some compared metrics were not tested because they were within tolerance).

    Returns, per name, whether it is rejected and the level its p-value was held to.
    """
    m = max(m or 0, len(pvalues))
    out: dict[str, tuple[bool, float]] = {}
    still = True
    for rank, (name, p) in enumerate(sorted(pvalues.items(), key=lambda kv: kv[1])):
        level = alpha / (m - rank)
        still = still and p <= level
        out[name] = (still, level)
    return out


def samples_needed(drop: float, test: DropTest, level: float, margin: float = 0.0,
                   power: float = POWER) -> int | None:
    """About how many test samples would show that a drop of this size exceeds ``margin``
    at ``level`` with ``power``, if the per-sample variability stays as observed (normal
    approximation: the standard error shrinks as one over the square root of n)."""
    effect = drop - margin
    if effect <= 0 or test.se <= 0 or test.n <= 0:
        return None
    z = _NORMAL.inv_cdf(1 - level) + _NORMAL.inv_cdf(power)
    return math.ceil(test.n * (z * test.se / effect) ** 2)


def unpack_labels(packed: dict[str, Any]):
    """The true classes of a packed sample set."""
    import numpy as np

    dtype = np.uint8 if len(packed["classes"]) <= 256 else np.uint16
    return np.frombuffer(_decode(packed["y_true"]), dtype=dtype).astype(np.int64)
