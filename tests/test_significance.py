"""The statistics behind the regression gate, checked against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_modelgate.baseline import INCONCLUSIVE, REGRESSED, Tolerance, baseline_entry, compare
from pytest_modelgate.significance import (
    binomial_tail,
    holm,
    mcnemar,
    pack_samples,
    paired_bootstrap,
    samples_key,
    unpack_correct,
    unpack_labels,
    unpack_predictions,
    unpaired,
)

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 0), (5, 2), (20, 1), (40, 25), (700, 600)])
def test_mcnemar_exact_matches_scipys_binomial_test(b, c):
    base = np.array([True] * b + [False] * c + [True] * 50)
    current = np.array([False] * b + [True] * c + [True] * 50)
    expected = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    assert mcnemar(base, current).p == pytest.approx(expected, rel=1e-9)


def test_binomial_tail_edges():
    assert binomial_tail(0, 5) == 1.0
    assert binomial_tail(6, 5) == 0.0
    assert binomial_tail(5, 5) == 1 / 32


def test_holm_step_down():
    # Levels 0.05/3, 0.05/2, 0.05/1 in order of p; the first that fails stops the rest.
    out = holm({"a": 0.01, "b": 0.02, "c": 0.04}, 0.05)
    assert out == {"a": (True, pytest.approx(0.05 / 3)), "b": (True, 0.025),
                   "c": (True, 0.05)}
    out = holm({"a": 0.01, "b": 0.03, "c": 0.001}, 0.05, m=15)
    assert out["c"] == (True, pytest.approx(0.05 / 15))
    assert out["a"] == (False, pytest.approx(0.05 / 14))
    assert out["b"][0] is False  # after a non-rejection nothing is rejected


def test_pack_and_unpack_round_trip():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 300, 1001)
    pred = np.where(rng.random(1001) < 0.8, y, rng.integers(0, 300, 1001))
    names = [f"c{i}" for i in range(300)]  # more than 256 classes: two bytes each
    packed = pack_samples(y, pred, names, ids=[str(i) for i in range(1001)])
    assert (unpack_labels(packed) == y).all()
    assert (unpack_predictions(packed) == pred).all()
    assert (unpack_correct(packed) == (y == pred)).all()
    assert packed["ids"] == "content" and packed["n"] == 1001
    other = pack_samples(y, pred, names)  # identified by position: another test set id
    assert other["test_hash"] != packed["test_hash"]
    assert samples_key(other) != samples_key(packed)


def test_paired_bootstrap_sees_a_real_drop_and_not_an_equal_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 2000)
    base = np.where(rng.random(2000) < 0.9, y, (y + 1) % 4)
    same = base.copy()
    worse = np.where(rng.random(2000) < 0.15, (y + 2) % 4, base)
    names = list("abcd")
    assert paired_bootstrap("f1[macro]", names, y, base, same).p == 1.0
    assert paired_bootstrap("f1[macro]", names, y, base, worse).p < 0.001
    # Worse by more than a margin larger than the drop: not shown.
    assert paired_bootstrap("f1[macro]", names, y, base, worse, margin=0.3).p == 1.0


def test_unpaired_uses_proportions_or_intervals():
    drop = unpaired("accuracy", {"value": 0.95, "n": 1000}, {"value": 0.85, "n": 1000})
    assert drop is not None and drop.p < 1e-6 and not drop.paired
    small = unpaired("accuracy", {"value": 0.95, "n": 40}, {"value": 0.90, "n": 40}, 0.02)
    assert small is not None and small.p > 0.1
    assert unpaired("f1[macro]", {"value": 0.9}, {"value": 0.8}) is None  # no interval
    f1 = unpaired("f1[macro]", {"value": 0.9, "interval": [0.88, 0.92]},
                  {"value": 0.8, "interval": [0.78, 0.82]})
    assert f1 is not None and f1.p < 1e-6


def _record(y, pred, names=("neg", "pos")):
    packed = pack_samples(y, pred, names)
    key = samples_key(packed)
    acc = float(np.mean(y == pred))
    metrics = [{"name": "accuracy", "value": acc, "higher_is_better": True, "n": len(y),
                "samples": key}]
    return {"metrics": metrics, "samples": {key: packed}}


def test_compare_gives_regressed_inconclusive_and_off():
    y = np.repeat([0, 1], 500)
    baseline = baseline_entry(_record(y, y.copy()))
    big = y.copy()
    big[:100] = 1 - big[:100]
    rec = _record(y, big)
    (r,) = compare(rec["metrics"], baseline, Tolerance(), alpha=0.05, samples=rec["samples"])
    # The bootstrap floor (1 / 2001) is the smallest p the combined test gives.
    assert r.verdict == REGRESSED and r.p < 1e-3 and "McNemar exact (b=100, c=0)" in r.method

    y40 = np.repeat([0, 1], 20)
    baseline = baseline_entry(_record(y40, y40.copy()))
    two = y40.copy()
    two[:2] = 1
    rec = _record(y40, two)
    (r,) = compare(rec["metrics"], baseline, Tolerance(), alpha=0.05, samples=rec["samples"])
    assert r.verdict == INCONCLUSIVE and r.p > 0.05 and r.needed and r.needed > 40
    # Significance off: the tolerance alone decides, as before.
    (r,) = compare(rec["metrics"], baseline, Tolerance(), alpha=None, samples=rec["samples"])
    assert r.verdict == REGRESSED and r.p is None


def test_compare_falls_back_to_unpaired_when_the_test_set_changed():
    y = np.repeat([0, 1], 500)
    baseline = baseline_entry(_record(y, y.copy()))
    y2 = y[::-1].copy()  # same labels, other order: another test set as far as ids go
    y2[0] = 0
    pred = y2.copy()
    pred[:100] = 1 - pred[:100]
    rec = _record(y2, pred)
    (r,) = compare(rec["metrics"], baseline, Tolerance(), alpha=0.05, samples=rec["samples"])
    assert r.verdict == REGRESSED
    assert r.note == "the test set changed since the baseline: unpaired comparison"
    assert "unpaired" in r.method


def test_a_version_1_entry_compares_unpaired_or_by_tolerance():
    base = {"metrics": {"accuracy": {"value": 1.0, "n": 1000},
                        "f1[macro]": {"value": 1.0, "n": 1000}}, "samples": {}, "env": {}}
    y = np.repeat([0, 1], 500)
    flipped = y.copy()
    flipped[:100] = 1 - flipped[:100]
    rec = _record(y, flipped)
    rec["metrics"].append({"name": "f1[macro]", "value": 0.9, "higher_is_better": True,
                           "n": 1000, "samples": rec["metrics"][0]["samples"]})
    acc, f1 = compare(rec["metrics"], base, Tolerance(), alpha=0.05, samples=rec["samples"])
    assert acc.verdict == REGRESSED and "unpaired" in acc.method
    assert acc.note.startswith("the baseline holds no per-sample results")
    assert f1.verdict == REGRESSED and f1.p is None
    assert f1.method.startswith("none (the baseline holds no interval")
