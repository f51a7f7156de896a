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


# --- against the spread of a multi-seed baseline --------------------------------------------

from pytest_modelgate.significance import (  # noqa: E402
    fresh_rates,
    poisson_upper,
    seed_floors,
    seed_mixed,
    seed_prediction_test,
    student_t_sf,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 19, 40])
@pytest.mark.parametrize("t", [-2.0, 0.0, 0.3, 1.0, 2.5, 5.0, 12.0])
def test_student_t_tail_matches_scipy(t, df):
    assert student_t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-3, abs=1e-12)


def test_student_t_needs_whole_degrees_of_freedom():
    with pytest.raises(ValueError, match="whole number >= 1"):
        student_t_sf(1.0, 0)
    with pytest.raises(ValueError, match="whole number"):
        student_t_sf(1.0, 2.5)


def test_seed_prediction_test_is_the_t_prediction_interval():
    values = [0.90, 0.92, 0.91, 0.93, 0.89]
    k = len(values)
    s = float(np.std(values, ddof=1))
    t = (np.mean(values) - 0.87) / (s * np.sqrt(1 + 1 / k))
    test = seed_prediction_test(values, 0.87, higher_is_better=True, n=100)
    assert test.p == pytest.approx(stats.t.sf(t, k - 1), rel=1e-3)
    assert test.seeds == 5 and "5 seeds" in test.method and "4 df" in test.method
    # Lower is better: a rise is the drop.
    assert seed_prediction_test([0.1, 0.12, 0.11], 0.3, higher_is_better=False).p < 0.05
    assert seed_prediction_test([0.1, 0.12, 0.11], 0.0, higher_is_better=False).p > 0.5
    with pytest.raises(ValueError, match="2 or more seeds"):
        seed_prediction_test([0.9], 0.8, higher_is_better=True)


def test_seeds_that_agree_do_not_make_every_drop_significant():
    # Every seed scored 1.0: no spread at all among them. The per-sample floor (samples
    # some seed got wrong) keeps one lost sample from looking like a certain regression.
    assert seed_prediction_test([1.0] * 5, 0.98, higher_is_better=True).p == 0.0
    test = seed_prediction_test([1.0] * 5, 0.98, higher_is_better=True, floor_sd=0.02)
    assert test.p > 0.2 and "per-sample floor" in test.method


def test_synthetic_seeds_spread_accuracy_as_independent_samples_do():
    # Each sample right with its own chance p: over independent samples the accuracy's
    # variance is sum p(1-p)/n^2; the K/(K-1) scaling makes each sample's share unbiased.
    rng = np.random.default_rng(3)
    n, k = 400, 8
    p = rng.choice([1.0, 0.9, 0.5, 0.2], size=n, p=[0.7, 0.15, 0.1, 0.05])
    y = rng.integers(0, 3, size=n)
    estimates, truth = [], np.sqrt(np.sum(p * (1 - p))) / n
    for _ in range(30):
        right = rng.random((k, n)) < p
        preds = np.where(right, y, (y + 1) % 3)
        estimates.append(seed_mixed(["accuracy"], ["a", "b", "c"], y, preds,
                                    draws=300)["accuracy"].std(ddof=1))
    assert np.mean(estimates) == pytest.approx(truth, rel=0.1)


def _seeded_runs(rng, n_runs, logits, seed_scale, shift=0.0):
    """Correctness of ``n_runs`` trainings: sample i right with probability
    sigmoid(logit_i + u_s + shift), where each run's u_s moves every sample together (a
    seed's model is a little better or worse overall): exchangeable runs, correlated
    samples, as retraining gives."""
    u = rng.normal(0.0, seed_scale, size=(n_runs, 1))
    return rng.random((n_runs, len(logits))) < 1 / (1 + np.exp(-(logits + u + shift)))


def _rejections(rng, *, k, shift, seed_scale, draws, alpha=0.05, n=300):
    logits = rng.normal(3.0, 2.0, size=n)  # most samples easy, some hard, a few hopeless
    y = np.zeros(n, dtype=np.int64)
    rejected = 0
    for _ in range(draws):
        base = _seeded_runs(rng, k, logits, seed_scale)
        new = _seeded_runs(rng, 1, logits, seed_scale, shift)[0]
        preds = np.where(base, 0, 1)
        mixed = seed_mixed(["accuracy"], ["a", "b"], y, preds, draws=200)["accuracy"]
        test = seed_prediction_test(base.mean(axis=1).tolist(), float(new.mean()),
                                    higher_is_better=True, floor_sd=float(mixed.std(ddof=1)),
                                    n=n, mixed=mixed)
        rejected += test.p <= alpha
    return rejected / draws


@pytest.mark.parametrize("seed_scale", [0.0, 0.3, 0.5])
@pytest.mark.parametrize("k", [3, 5])
def test_retraining_noise_is_red_at_most_alpha_of_the_time(k, seed_scale):
    """Type-I error under exchangeable seeds is at most alpha (plus three binomial standard
    errors of the estimate from 600 draws), with seeds that move no samples together
    (0.0) or many (0.3 and 0.5: the accuracy's seed variance 3 and 7 times what
    independent samples give; the example's digits measure 1.6)."""
    rate = _rejections(np.random.default_rng(k * 10 + int(seed_scale * 10)), k=k, shift=0.0,
                       seed_scale=seed_scale, draws=600)
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 600)


def test_power_grows_with_the_drop():
    rng = np.random.default_rng(11)
    rates = [_rejections(rng, k=5, shift=-shift, seed_scale=0.3, draws=150)
             for shift in (0.0, 0.3, 0.6, 1.2)]
    assert rates == sorted(rates) and rates[-1] > 0.8 and rates[0] < 0.1


def test_seed_floors_pool_the_overdispersion_over_a_tests_metrics():
    # Whole-test metrics share the mean of their ratios: accuracy's seeds spread 3x its
    # independent-sample floor (ratio 9), mcc's not at all (its seeds happened to agree):
    # (9 + 0) / 2 lifts mcc's floor too.
    values = {"accuracy": [0.90, 0.93, 0.96], "mcc": [0.5, 0.5, 0.5],
              "f1[a]": [0.8, 0.9, 0.85], "f1[b]": [0.7, 0.7, 0.7], "recall[c]": [1.0] * 3}
    mixed = {"accuracy": 0.01, "mcc": 0.02, "f1[a]": 0.01, "f1[b]": 0.01, "recall[c]": 0.0}
    floors, factor = seed_floors(values, mixed)
    assert factor["accuracy"] == factor["mcc"] == pytest.approx(4.5)
    assert floors["mcc"] == pytest.approx(0.02 * np.sqrt(4.5))
    # Metrics of one class take the largest ratio of any class: f1[a]'s 25.
    assert factor["f1[b]"] == pytest.approx(25.0)
    assert floors["f1[b]"] == pytest.approx(0.01 * 5)
    assert floors["recall[c]"] == 0.0   # never wrong on any seed: nothing to scale
    # Seeds that spread less than independent samples would: the factor stays 1.
    assert seed_floors({"accuracy": [0.5, 0.5001]}, {"accuracy": 0.1})[1]["accuracy"] == 1.0


@pytest.mark.parametrize("events", [0, 1, 2, 5, 20])
def test_poisson_upper_bound_is_the_chi_square_bound(events):
    assert poisson_upper(events) == pytest.approx(stats.chi2.ppf(0.95, 2 * events + 2) / 2,
                                                  rel=1e-9)


def test_fresh_rates_count_each_seed_against_the_others():
    # Four seeds, six samples. Sample 0: seed 3 alone wrong (a fresh error); sample 5:
    # seed 0 alone right (a fresh fix); the rest agree.
    right = np.array([[1, 1, 1, 1, 0, 1],
                      [1, 1, 1, 1, 0, 0],
                      [1, 1, 1, 1, 0, 0],
                      [0, 1, 1, 1, 0, 0]], dtype=bool)
    error, fix = fresh_rates(right)
    # Chances of a fresh error, per seed and sample, where the 3 others are right: samples
    # 1-3 for every seed (12) and sample 0 for seed 3 (its others are right; seeds 0-2
    # each see seed 3 wrong there): 13 chances, 1 error; the bound is poisson_upper(1) / 13.
    assert error == pytest.approx(poisson_upper(1) / 13)
    # Chances of a fresh fix: the others all wrong: sample 4 (4 seeds), sample 5 for seed 0.
    assert fix == pytest.approx(poisson_upper(1) / 5)


def test_one_lost_image_of_a_class_the_seeds_all_got_right_is_no_regression():
    """Five seeds got all 15 images of a class right: a sixth losing one of them is a step of
    many 'standard deviations' of the per-sample spread, yet a new seed does it now and
    then. The synthetic seeds keep that shape: not significant at Holm's levels."""
    rng = np.random.default_rng(0)
    classes = [str(c) for c in range(10)]
    y = np.repeat(np.arange(10), 15)
    base = np.tile(y, (5, 1))
    for seed_row in base:  # a few errors elsewhere, different per seed
        wrong = rng.choice(np.flatnonzero(y >= 5), 3, replace=False)
        seed_row[wrong] = (y[wrong] + 1) % 10
    new = y.copy()
    new[0] = 1  # one image of class 0 lost
    from pytest_modelgate.significance import metric_from_cms

    def f1_0(pred):
        cm = np.zeros((10, 10), dtype=np.int64)
        np.add.at(cm, (y, pred), 1)
        return float(metric_from_cms("f1[0]", cm, classes))

    mixed = seed_mixed(["f1[0]"], classes, y, base)["f1[0]"]
    test = seed_prediction_test([f1_0(p) for p in base], f1_0(new), higher_is_better=True,
                                floor_sd=float(mixed.std(ddof=1)), mixed=mixed)
    assert test.p > 0.05 / 15 and "synthetic seeds" in test.method
