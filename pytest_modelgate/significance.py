"""Is a drop against the baseline more than noise? Paired tests on the same test samples.

A baseline stores, per gate test, each metric's value, n and interval, and per set of test
predictions the predicted classes and per-sample correctness (packed, base64) with a hash
of the test samples' ids and labels. When the hash matches, the comparison is paired:

- McNemar's exact test for accuracy and the recall of one class (an accuracy on that
  class's samples): only the samples one model gets right and the other wrong count.
- A paired bootstrap for every other metric of the confusion matrix (precision, F1,
  averages, balanced accuracy, MCC): both models' predictions are resampled together.
- A paired bootstrap of expected calibration error (``paired_bootstrap_ece``) on each
  sample's confidence and top-label correctness, which calibration gates add to the pack.

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
    if y_true.ndim == 2:
        return _pack_matrices(y_true, y_pred, class_names, ids)
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


def _pack_matrices(y_true: Any, y_pred: Any, class_names: Sequence[str],
                   ids: Sequence[str] | None) -> dict[str, Any]:
    """``pack_samples`` of a multilabel task: the (n, K) 0/1 matrices one bit a cell, row
    by row, and correctness (every label right) one bit a sample; ``multilabel`` True."""
    import numpy as np

    return {
        "test_hash": sample_set_hash(y_true, ids),
        "n": int(len(y_true)),
        "classes": [str(c) for c in class_names],
        "multilabel": True,
        "y_true": _encode(np.packbits(y_true.astype(bool)).tobytes()),
        "y_pred": _encode(np.packbits(y_pred.astype(bool)).tobytes()),
        "correct": _encode(np.packbits(np.all(y_true == y_pred, axis=1)).tobytes()),
        "ids": "content" if ids is not None else "positions",
    }


def _unpack_matrix(packed: dict[str, Any], key: str):
    import numpy as np

    n, k = packed["n"], len(packed["classes"])
    bits = np.unpackbits(np.frombuffer(_decode(packed[key]), dtype=np.uint8))
    if len(bits) < n * k:
        raise ValueError(f"packed {key} holds {len(bits)} cells, not {n} x {k}")
    return bits[: n * k].reshape(n, k).astype(np.int64)


def samples_key(packed: dict[str, Any]) -> str:
    """A short id for one set of test predictions within a record."""
    text = f"{packed['test_hash']}|{packed['y_pred']}"
    if "confidence" in packed:  # the same classes with other probabilities are other samples
        text += f"|{packed['confidence']}|{packed['top_correct']}|{packed['binning']}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def unpack_predictions(packed: dict[str, Any]):
    """The predicted classes of a packed sample set (an (n, K) 0/1 matrix: multilabel)."""
    import numpy as np

    if packed.get("multilabel"):
        return _unpack_matrix(packed, "y_pred")

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
    """``"mcnemar"``, ``"bootstrap"``, ``"calibration"`` (``paired_bootstrap_ece``), or
    None when no per-sample test applies (timing ratios, leakage counts, the train/test
    gap, operating points)."""
    metric = MetricName.parse(name)
    base = metric.base
    if base == "accuracy" or (base == "recall" and metric.arg is not None and
                              metric.average is None):
        return "mcnemar"
    if base in ("balanced_accuracy", "mcc", "precision", "recall", "f1"):
        return "bootstrap"
    if base == "ece":
        return "calibration"
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
    seeds: int = 1  # >1: tested against the spread of that many baseline seeds


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


def paired_label_bootstrap(name: str, class_names: Sequence[str], y_true: Any, base_pred: Any,
                           current_pred: Any, *, higher_is_better: bool = True,
                           margin: float = 0.0, n_resamples: int = N_RESAMPLES,
                           seed: int = 0) -> DropTest:
    """``paired_bootstrap`` of a multilabel task: test samples (rows of the (n, K)
    matrices) resampled with replacement, both models scored on the same draws
    (``multilabel.bootstrap``); the p-value is the share of resamples in which the current
    model is worse by no more than ``margin``."""
    import numpy as np

    from .multilabel import bootstrap

    vb, vc = bootstrap(name, class_names, y_true, [base_pred, current_pred], n_resamples,
                       seed)
    d = vb - vc if higher_is_better else vc - vb  # positive: the current model is worse
    p = (1 + int(np.sum(d <= margin + 1e-12))) / (len(d) + 1)
    return DropTest(float(p), f"paired bootstrap over samples ({len(d)} resamples)", True,
                    float(d.std()), len(np.asarray(y_true)))


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


# --- against the seed spread of a multi-seed baseline ------------------------------------

SEED_MIX_DRAWS = 2000  # synthetic seeds: p-values down to 1/2001, as the bootstrap's


def student_t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with a whole number ``df`` of degrees of freedom, from the
    closed forms of Abramowitz and Stegun 26.7.3-4 (no scipy at run time)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a whole number >= 1, got {df!r}")
    if t < 0:
        return 1.0 - student_t_sf(-t, df)
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df == 1:
        inside = 2 * theta / math.pi  # P(|T| < t)
    elif df % 2:
        term = total = math.cos(theta)
        for k in range(3, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        inside = 2 / math.pi * (theta + math.sin(theta) * total)
    else:
        term = total = 1.0
        for k in range(2, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        inside = math.sin(theta) * total
    return min(1.0, max(0.0, (1.0 - inside) / 2))


def poisson_upper(events: int, confidence: float = 0.95) -> float:
    """The one-sided upper confidence bound of a Poisson mean from ``events`` seen (3.0 for
    none at 95%, the rule of three), by bisection on the Poisson distribution function."""
    def cdf(lam: float) -> float:
        term = total = math.exp(-lam)
        for i in range(1, events + 1):
            term *= lam / i
            total += term
        return total

    low, high = 0.0, 10.0 + 4.0 * events
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) > 1 - confidence else (low, mid)
    return high


def fresh_rates(right: Any) -> tuple[float, float]:
    """How often a seed is wrong where every other seed is right (a fresh error), and right
    where every other is wrong (a fresh fix): each of the K seeds against the other K - 1,
    counted over all samples.

    Under "the new run is one more seed" it meets the K seeds as each seed meets the others
    (with one more of them, so it has fewer chances), so these rates are what a new seed of
    the same recipe shows; the per-sample evidence of a regression is fresh errors well
    beyond them. Fresh errors are rare, so each rate is the upper 95% bound of its count
    (``poisson_upper``): a few quiet seeds do not make them look impossible.
    """
    import numpy as np

    right = np.asarray(right, dtype=bool)
    k_seeds = right.shape[0]
    if k_seeds < 2:
        return 0.0, 0.0
    total = right.sum(axis=0)
    others_right = total[None, :] - right  # per seed: how many of the others got it right
    chances_err = others_right == k_seeds - 1
    chances_fix = others_right == 0
    errors = int(np.sum(chances_err & ~right))
    fixes = int(np.sum(chances_fix & right))
    return (min(1.0, poisson_upper(errors) / max(int(chances_err.sum()), 1)),
            min(1.0, poisson_upper(fixes) / max(int(chances_fix.sum()), 1)))


def seed_mixed(names: Sequence[str], class_names: Sequence[str], y_true: Any,
               seed_preds: Any, *, draws: int = SEED_MIX_DRAWS, seed: int = 0
               ) -> dict[str, Any]:
    """Per metric, its values over ``draws`` synthetic new seeds whose test samples each
    change from seed to seed on their own (an array each).

    A synthetic new seed predicts each sample on its own: a sample some seeds got right and
    some wrong takes the prediction of a seed drawn for it alone; a sample every seed got
    right goes wrong at the seeds' fresh-error rate (``fresh_rates``), as one of its
    class's usual confusions; a sample every seed got wrong comes right at the fresh-fix
    rate. So K seeds that happen to agree on a class do not make losing one of its
    images impossible.

    Seeds also move many samples together (one seed's model confuses 7s and 9s a little
    more), which this leaves out: see ``seed_floors`` and ``seed_prediction_test`` for
    how it is used.
    """
    import numpy as np

    preds = np.asarray(seed_preds, dtype=np.int64)
    k_seeds, n = preds.shape
    if k_seeds < 2 or n == 0:
        raise ValueError(f"synthetic seeds need 2 or more seeds and a sample, got {k_seeds} "
                         f"seeds of {n} samples")
    k = len(class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    right = preds == y_true[None, :]
    fresh_error, fresh_fix = fresh_rates(right)
    total = right.sum(axis=0)
    # Where each class's wrong predictions go (every other class alike when it has none).
    confusion = np.zeros((k, k))
    np.add.at(confusion, (np.broadcast_to(y_true, preds.shape), preds), 1.0)
    confusion[np.arange(k), np.arange(k)] = 0.0
    confusion[confusion.sum(axis=1) == 0] = 1.0
    if k > 1:
        confusion[np.arange(k), np.arange(k)] = 0.0
    wrong_cdf = np.cumsum(confusion / confusion.sum(axis=1, keepdims=True), axis=1)
    rng = np.random.default_rng(seed)
    stacks = []
    for size in (len(c) for c in np.array_split(np.arange(draws), 4) if len(c)):
        mixed = preds[rng.integers(0, k_seeds, size=(size, n)), np.arange(n)[None, :]]
        flip = rng.random((size, n))
        errs = (total == k_seeds)[None, :] & (flip < fresh_error)
        rows, cols = np.nonzero(errs)
        cdf = wrong_cdf[y_true[cols]]
        mixed[rows, cols] = np.minimum((cdf < rng.random((len(cols), 1))).sum(axis=1), k - 1)
        fixes = (total == 0)[None, :] & (flip < fresh_fix)
        mixed[fixes] = np.broadcast_to(y_true, (size, n))[fixes]
        codes = (y_true[None, :] * k + mixed) + (np.arange(size)[:, None] * k * k)
        stacks.append(np.bincount(codes.ravel(), minlength=size * k * k).reshape(size, k, k))
    cms = np.concatenate(stacks)
    return {name: np.asarray(metric_from_cms(name, cms, class_names), dtype=float)
            for name in names}


def _of_one_class(name: str) -> bool:
    """A metric of one class (``f1[3]``, ``recall[8]``), not of the whole test set."""
    return MetricName.parse(name).arg is not None


def seed_floors(values: dict[str, Sequence[float]], mixed: dict[str, float]
                ) -> tuple[dict[str, float], dict[str, float]]:
    """Per metric, the least seed spread its test assumes, and the overdispersion factor
    behind it.

    ``mixed`` is each metric's spread over ``seed_mixed``'s synthetic seeds, the spread if
    samples moved independently. Seeds move samples together, so a metric spreads more
    than that, by a factor its seeds show: s^2 / mixed^2. With K seeds each metric's own
    factor rests on K - 1 deviations, and a few seeds that happen to agree show almost
    none, so the factor is pooled over the metrics of the test (computed on the same
    predictions, they share the seeds' moves), as a moderated variance is pooled over
    genes in microarray tests (Smyth 2004):

    - over the metrics of the whole test set (accuracy, macro averages, MCC), the mean of
      their ratios;
    - over the metrics of one class, the largest ratio of any class: a seed that confuses
      two classes more (a few 7s read as 9s together) moves those classes' metrics far
      more than the rest, and which classes it hits differs from seed to seed. Measured
      on MNIST, that tail made a per-class F1 of 5-10 seeds that happened to agree look
      regressed in up to 7 of 100 seed-only reruns with the mean.

    Each factor is at least 1. The floor of a metric is ``mixed * sqrt(factor)``.
    """
    ratios: dict[bool, list[float]] = {True: [], False: []}
    for name, vals in values.items():
        k = len(vals)
        floor = mixed.get(name, 0.0)
        if k < 2 or floor <= 0:
            continue
        mean = sum(vals) / k
        ratios[_of_one_class(name)].append(
            sum((v - mean) ** 2 for v in vals) / (k - 1) / floor ** 2)
    factors = {True: max([1.0, *ratios[True]]),
               False: max(1.0, sum(ratios[False]) / len(ratios[False])) if ratios[False]
               else 1.0}
    factor = {name: factors[_of_one_class(name)] for name in values}
    return {name: mixed.get(name, 0.0) * math.sqrt(factor[name]) for name in values}, factor


def seed_prediction_test(values: Sequence[float], current: float, *, higher_is_better: bool,
                         floor_sd: float = 0.0, n: int = 0, mixed: Any = None,
                         factor: float = 1.0) -> DropTest:
    """Is ``current`` one more draw from the baseline's seed distribution (``values``, one
    per seed, K >= 2), or worse? Two tests, and the larger p-value counts: a drop must be
    unusual against both.

    - A one-sided prediction interval: with the K values from a normal distribution,
      (mean - current) / (s * sqrt(1 + 1/K)) follows Student's t with K - 1 degrees of
      freedom when the current run is one more seed of the same recipe. ``s`` is the
      seeds' standard deviation, raised to ``floor_sd`` where it is smaller
      (``seed_floors``): a larger scale only makes the test more cautious.
    - Where ``mixed`` holds the metric's values over synthetic seeds (``seed_mixed``), the
      share of them at or below ``current`` after their spread is widened by
      sqrt(``factor``), the test's overdispersion: the per-sample evidence. It keeps its
      shape where the normal curve fails, a metric of a few test images that K seeds all
      got right (one lost image is then a step of several "standard deviations" that a
      new seed still takes now and then).
    """
    import numpy as np

    k = len(values)
    if k < 2:
        raise ValueError(f"a seed prediction test needs 2 or more seeds, got {k}")
    mean = sum(values) / k
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    sd = max(s, floor_sd)
    se = sd * math.sqrt(1 + 1 / k)
    drop = (mean - current) if higher_is_better else (current - mean)
    floor = " (the per-sample floor)" if floor_sd > s else ""
    method = (f"prediction interval over {k} seeds (Student's t, {k - 1} df, seed spread "
              f"{sd:.4f}{floor})")
    p = (0.0 if drop > 0 else 1.0) if se <= 0 else student_t_sf(drop / se, k - 1)
    if mixed is not None and len(mixed):
        v = np.asarray(mixed, dtype=float)
        centre = float(v.mean())
        wide = centre + (v - centre) * math.sqrt(max(factor, 1.0))
        as_bad = np.sum(wide <= current + 1e-12) if higher_is_better else np.sum(
            wide >= current - 1e-12)
        p_mixed = (1 + int(as_bad)) / (len(v) + 1)
        method += f", and {len(v)} synthetic seeds of its test samples (p={p_mixed:.4f})"
        p = max(p, p_mixed)
    return DropTest(p, method, True, se, n, k)


def unpack_labels(packed: dict[str, Any]):
    """The true classes of a packed sample set (an (n, K) 0/1 matrix: multilabel)."""
    import numpy as np

    if packed.get("multilabel"):
        return _unpack_matrix(packed, "y_true")

    dtype = np.uint8 if len(packed["classes"]) <= 256 else np.uint16
    return np.frombuffer(_decode(packed["y_true"]), dtype=dtype).astype(np.int64)


# --- calibration: per-sample confidences -----------------------------------------------------

CONFIDENCE_STEPS = 1000  # confidences are kept to 1/1000: two bytes a sample


def pack_confidences(packed: dict[str, Any], confidence: Any, top_correct: Any, *,
                     bins: int, binning: str) -> dict[str, Any]:
    """A packed sample set with what a paired test of calibration error needs besides:
    each sample's confidence (its largest class probability, to 1/1000, two bytes) and
    whether that class is the true one (one bit), and the binning the error was computed
    with. Only calibration gates add them; the key (``samples_key``) covers them.

    Example:
        >>> p = pack_confidences(pack_samples([0, 1], [0, 0], ["a", "b"]), [0.9, 0.6],
        ...                      [True, False], bins=2, binning="equal-mass")
        >>> unpack_confidences(p)[0].tolist(), unpack_confidences(p)[1].tolist()
        ([0.9, 0.6], [True, False])
    """
    import numpy as np

    steps = np.rint(np.asarray(confidence, dtype=np.float64) * CONFIDENCE_STEPS)
    return dict(packed,
                confidence=_encode(steps.astype("<u2").tobytes()),
                top_correct=_encode(np.packbits(np.asarray(top_correct, dtype=bool))
                                    .tobytes()),
                bins=int(bins), binning=str(binning))


def unpack_confidences(packed: dict[str, Any]):
    """``(confidence, top_correct)`` arrays of a packed sample set with confidences."""
    import numpy as np

    steps = np.frombuffer(_decode(packed["confidence"]), dtype="<u2")
    if len(steps) != packed["n"]:
        raise ValueError(f"packed confidences hold {len(steps)} samples, not {packed['n']}")
    bits = np.unpackbits(np.frombuffer(_decode(packed["top_correct"]), dtype=np.uint8))
    return steps / CONFIDENCE_STEPS, bits[: packed["n"]].astype(bool)


def paired_bootstrap_ece(base: tuple[Any, Any], current: tuple[Any, Any], *, bins: int,
                         binning: str, margin: float = 0.0, n_resamples: int = N_RESAMPLES,
                         seed: int = 0) -> DropTest:
    """Is the current model's expected calibration error higher than the baseline's by more
    than ``margin``? ``base`` and ``current`` are ``(confidence, top_correct)`` on the same
    test samples in the same order. Each resample draws the same samples for both models
    (the pairing), and the p-value is the share of resamples in which the current error
    exceeds the baseline's by no more than ``margin``, as ``paired_bootstrap``."""
    import numpy as np

    from .metrics import bootstrap_draws, resampled_ece

    conf_b, right_b = (np.asarray(a) for a in base)
    conf_c, right_c = (np.asarray(a) for a in current)
    n = len(conf_b)
    if len(conf_c) != n or n == 0:
        raise ValueError(f"a paired test needs the same samples: {n} and {len(conf_c)}")
    diffs = []
    for draws in bootstrap_draws(n, n_resamples, np.random.default_rng(seed)):
        diffs.append(resampled_ece(conf_c, right_c, draws, bins=bins, binning=binning)
                     - resampled_ece(conf_b, right_b, draws, bins=bins, binning=binning))
    d = np.concatenate(diffs)  # positive: the current model is worse calibrated
    p = (1 + int(np.sum(d <= margin + 1e-12))) / (len(d) + 1)
    return DropTest(float(p), f"paired bootstrap of ECE ({len(d)} resamples)", True,
                    float(d.std()), n)
