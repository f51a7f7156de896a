"""Calibration: the ECE formula, assert_calibrated's messages and record, its baseline
comparison (the paired bootstrap of ECE) and its reliability diagram in the report.

One file for the feature across metrics, assertions, significance, baseline and report,
beside the modules' own test files (which other work edits at the same time).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pytest_modelgate import Predictions, assert_calibrated
from pytest_modelgate.assertions import recording
from pytest_modelgate.baseline import (
    INCONCLUSIVE,
    REGRESSED,
    Tolerance,
    baseline_entry,
    compare,
    parse_tolerance,
)
from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.metrics import (
    bootstrap_ece,
    calibration_bins,
    expected_calibration_error,
    metric_spec,
    top_label,
)
from pytest_modelgate.report.context import build_context
from pytest_modelgate.report.html import render_html
from pytest_modelgate.significance import (
    pack_confidences,
    pack_samples,
    paired_bootstrap_ece,
    samples_key,
    unpack_confidences,
)

# Four samples, two classes: confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (right).
Y4 = [0, 1, 1, 0]
P4 = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]


def _reference_ece(y, probs, bins, binning):
    """A straightforward loop: Guo et al.'s (lower, upper] bins, or the sorted samples cut
    into runs of n // bins (+1 for the first n % bins) samples, equal confidences kept in
    the bin of the first of them."""
    probs = np.asarray(probs, dtype=float)
    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == np.asarray(y)).astype(float)
    n = len(conf)
    groups = []
    if binning == "equal-width":
        edges = np.linspace(0, 1, bins + 1)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            inside = [i for i in range(n) if (lo < conf[i] <= hi) or (lo == 0 and conf[i] == 0)]
            groups.append(inside)
    else:
        order = sorted(range(n), key=lambda i: conf[i])
        bin_at = []   # the bin of each position in confidence order
        for b in range(bins):
            bin_at += [b] * (n // bins + (1 if b < n % bins else 0))
        groups = [[] for _ in range(bins)]
        for i in order:   # ties go to the bin of the first of them
            first = next(j for j in range(n) if conf[order[j]] == conf[i])
            groups[bin_at[first]].append(i)
    total = 0.0
    for g in groups:
        if g:
            total += len(g) / n * abs(np.mean(right[g]) - np.mean(conf[g]))
    return total


def _calibrated(n, rng, k=3, shift=0.0):
    """n samples whose top-label confidence is honest (right with that probability); with
    ``shift`` the model is that much less accurate than it claims (overconfident)."""
    y = rng.integers(0, k, n)
    conf = rng.uniform(1 / k + 0.05, 1.0, n)
    right = rng.random(n) < np.clip(conf - shift, 0, 1)
    pred = np.where(right, y, (y + 1 + rng.integers(0, k - 1, n)) % k)
    probs = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
    probs[np.arange(n), pred] = conf
    return y, pred, probs


# --- the formula -------------------------------------------------------------------------

def test_ece_by_hand():
    # One bin: mean confidence 0.75, accuracy 3/4: calibrated on the whole.
    assert expected_calibration_error(Y4, P4, bins=1) == pytest.approx(0.0)
    # Equal-mass, 2 bins: {0.6, 0.7} both right: |1 - 0.65| = 0.35; {0.8, 0.9}: one right,
    # |0.5 - 0.85| = 0.35; each half the samples.
    assert expected_calibration_error(Y4, P4, bins=2, binning="equal-mass") == \
        pytest.approx(0.35)
    # Equal-width, 2 bins: every confidence in (0.5, 1]: one bin, as bins=1.
    assert expected_calibration_error(Y4, P4, bins=2) == pytest.approx(0.0)
    # Equal-width, 4 bins of 0.25: (0.5, 0.75] holds 0.6 and 0.7, (0.75, 1] 0.8 and 0.9.
    assert expected_calibration_error(Y4, P4, bins=4, binning="equal-width") == \
        pytest.approx(0.35)
    rows = calibration_bins(Y4, P4, bins=2, binning="equal-mass")
    assert [(r["lower"], r["upper"], r["count"]) for r in rows] == [(0.6, 0.7, 2),
                                                                     (0.8, 0.9, 2)]
    assert rows[0]["accuracy"] == 1.0 and rows[1]["confidence"] == pytest.approx(0.85)
    wide = calibration_bins(Y4, P4, bins=4, binning="equal-width")
    assert [(r["lower"], r["upper"]) for r in wide] == [(0.5, 0.75), (0.75, 1.0)]


@pytest.mark.parametrize("binning", ["equal-mass", "equal-width"])
@pytest.mark.parametrize("bins", [1, 2, 7, 15, 40])
def test_ece_matches_a_reference_loop(binning, bins):
    rng = np.random.default_rng(bins)
    y, _, probs = _calibrated(123, rng, shift=0.1)
    probs[:10] = np.round(probs[:10], 1)  # some confidences on bin edges and tied
    probs[:10] /= probs[:10].sum(axis=1, keepdims=True)
    assert expected_calibration_error(y, probs, bins=bins, binning=binning) == \
        pytest.approx(_reference_ece(y, probs, bins, binning), abs=1e-12)
    rows = calibration_bins(y, probs, bins=bins, binning=binning)
    assert sum(r["count"] for r in rows) == 123
    if binning == "equal-mass":   # about n / bins each; tied confidences in one bin
        assert max(r["count"] for r in rows) <= 123 // bins + 10
        assert all(a["upper"] < b["lower"] for a, b in zip(rows, rows[1:], strict=False))


def test_bins_1_is_the_gap_between_accuracy_and_mean_confidence():
    rng = np.random.default_rng(0)
    y, _, probs = _calibrated(500, rng, shift=0.2)
    gap = abs(np.mean(probs.argmax(axis=1) == y) - probs.max(axis=1).mean())
    for binning in ("equal-mass", "equal-width"):
        assert expected_calibration_error(y, probs, bins=1, binning=binning) == \
            pytest.approx(gap)


@pytest.mark.parametrize("binning", ["equal-mass", "equal-width"])
def test_calibrated_data_scores_near_zero_and_overconfident_data_high(binning):
    rng = np.random.default_rng(1)
    y, _, probs = _calibrated(20000, rng)
    assert expected_calibration_error(y, probs, binning=binning) < 0.015
    y, _, probs = _calibrated(20000, rng, shift=0.25)
    assert expected_calibration_error(y, probs, binning=binning) == pytest.approx(0.25,
                                                                                  abs=0.02)


def _crowded_ece(rng, n, accuracy_of, draws=200):
    """Mean ECE, equal-width and equal-mass (15 bins), of ``draws`` test sets of ``n``
    images whose confidences crowd near 1 (mean about 0.98), as a fine-tuned model's do."""
    width, mass = [], []
    for _ in range(draws):
        conf = 1 - rng.beta(1, 30, n) * 0.5
        right = rng.random(n) < accuracy_of(conf)
        probs = np.stack([conf, 1 - conf], axis=1)
        y = np.where(right, 0, 1)
        width.append(expected_calibration_error(y, probs))
        mass.append(expected_calibration_error(y, probs, binning="equal-mass"))
    return np.mean(width), np.mean(mass)


def test_equal_width_is_less_biased_where_confidences_crowd_near_1():
    """Why equal-width is the default (assert_calibrated's docstring quotes these
    figures): on 200 test images with confidences crowded near 1, ECE of a calibrated
    model (true 0) and of an overconfident one (true 0.032) overstates less with
    equal-width bins, which pool the crowded confidences, than with equal-mass bins."""
    rng = np.random.default_rng(2)
    width, mass = _crowded_ece(rng, 200, lambda c: c)
    assert width == pytest.approx(0.008, abs=0.003) and mass == pytest.approx(0.021, abs=0.003)
    width, mass = _crowded_ece(rng, 200, lambda c: 1 - (1 - c) * 3)
    assert width == pytest.approx(0.033, abs=0.003) and mass == pytest.approx(0.044, abs=0.003)


def test_bootstrap_interval_is_seeded_and_covers_the_value():
    rng = np.random.default_rng(3)
    y, _, probs = _calibrated(300, rng, shift=0.1)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == y
    a = bootstrap_ece(conf, right, n_resamples=200, seed=5)
    assert (a == bootstrap_ece(conf, right, n_resamples=200, seed=5)).all()
    value = expected_calibration_error(y, probs)
    assert np.quantile(a, 0.025) < value < np.quantile(a, 0.975)


@pytest.mark.parametrize("binning", ["equal-mass", "equal-width"])
def test_resampled_ece_is_ece_of_each_resample_spelled_out(binning):
    from pytest_modelgate.metrics import bootstrap_draws, resampled_ece

    rng = np.random.default_rng(11)
    y, _, probs = _calibrated(90, rng, shift=0.1)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == y
    (draws,) = list(bootstrap_draws(90, 6, rng))
    assert (draws.sum(axis=1) == 90).all()
    fast = resampled_ece(conf, right, draws, bins=7, binning=binning)
    for value, times in zip(fast, draws, strict=True):
        rows = np.repeat(np.arange(90), times)
        assert value == pytest.approx(expected_calibration_error(
            y[rows], probs[rows], bins=7, binning=binning), abs=1e-12)


# --- the assertion -----------------------------------------------------------------------

def _overconfident(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y, pred, probs = _calibrated(n, rng, shift=0.2)
    return Predictions.from_arrays(y, pred, probs, class_names=["cat", "dog", "<b>eel</b>"])


def test_calibrated_predictions_pass_and_record_the_bins():
    y, pred, probs = _calibrated(2000, np.random.default_rng(4))
    p = Predictions.from_arrays(y, pred, probs)
    with recording() as record:
        assert_calibrated(p, 0.05)
    (metric,) = record["metrics"]
    assert metric["name"] == "ece" and metric["op"] == "<=" and metric["passed"]
    assert metric["higher_is_better"] is False and metric["threshold"] == 0.05
    # Not 0: a bin's |accuracy - confidence| is never below 0, so noise reads as error.
    assert metric["n"] == 2000 and metric["value"] < 0.04
    assert metric["interval"][0] <= metric["value"] <= metric["interval"][1]
    detail = metric["detail"]
    assert detail["binning"] == "equal-width" and detail["n_bins"] == 15
    # Confidences from 0.38: the 5 lowest of 15 equal-width bins are empty, and left out.
    assert len(detail["bins"]) == 10 and sum(b["count"] for b in detail["bins"]) == 2000
    assert detail["bins"][0]["lower"] == pytest.approx(1 / 3)
    assert set(detail["bins"][0]) == {"lower", "upper", "count", "confidence", "accuracy"}
    # The samples behind it carry per-sample confidences for the paired test.
    packed = record["samples"][metric["samples"]]
    conf, right = unpack_confidences(packed)
    assert np.allclose(conf, probs.max(axis=1), atol=5e-4)
    assert (right == (probs.argmax(axis=1) == y)).all()
    assert packed["bins"] == 15 and packed["binning"] == "equal-width"
    json.dumps(record)


def test_an_overconfident_model_fails_with_the_worst_bins_and_the_fix():
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_calibrated(_overconfident(), max_ece=0.05)
    message = str(info.value)
    value = record["metrics"][0]["value"]
    lo, hi = record["metrics"][0]["interval"]
    assert message.startswith(f"ECE = {value:.3f} > 0.050 allowed [n=400, 95% CI {lo:.3f}-"
                              f"{hi:.3f}, 15 equal-width bins]; overconfident: confidence "
                              "above accuracy in the bins that carry ")
    assert "  worst bins:\n    confidence 0." in message
    assert " test images (mean confidence 0." in message
    assert "Fix: temperature scaling: fit one temperature T on held-out data" in message
    assert "T > 1 softens an overconfident model" in message
    assert "it does not change the arg-max, so accuracy stays the same" in message
    assert record["metrics"][0]["detail"]["direction"] == "overconfident"


def test_an_underconfident_model_is_named_so():
    rng = np.random.default_rng(5)
    y, pred, probs = _calibrated(400, rng, shift=-0.3)
    with pytest.raises(AssertionError, match="underconfident: accuracy above confidence"):
        assert_calibrated((y, pred, probs), max_ece=0.05, binning="equal-mass")


def test_confidence_asks_the_upper_bound_to_clear():
    # A calibrated model on 60 images: its ECE is small, but the interval is wide.
    y, pred, probs = _calibrated(60, np.random.default_rng(6))
    value = expected_calibration_error(y, probs, bins=5)
    assert_calibrated((y, pred, probs), max_ece=value + 0.01, bins=5)
    with pytest.raises(AssertionError) as info:
        assert_calibrated((y, pred, probs), max_ece=value + 0.01, bins=5, confidence=0.95)
    assert str(info.value).startswith("ECE: upper 95% bound 0.")
    assert "the test set is too small to show the model is calibrated within it" in \
        str(info.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bins": 0}, r"bins must be an integer >= 1 such as 15, got 0"),
    ({"bins": 2.5}, r"bins must be an integer >= 1 such as 15, got 2.5"),
    ({"bins": True}, r"bins must be an integer >= 1"),
    ({"bins": 500}, r"bins=500 is more than the 400 test samples: .* pass at most bins=400"),
    ({"binning": "quantile"}, r"binning must be one of 'equal-mass', 'equal-width', got "
                              r"'quantile'"),
    ({"max_ece": 5}, r"max_ece=5 is a fraction in \[0, 1\]: did you mean 0.05\?"),
    ({"max_ece": -0.1}, r"max_ece must be a number in \[0, 1\]"),
    ({"confidence": 95}, r"confidence must be a float in \(0, 1\)"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ModelGateError, match=message):
        assert_calibrated(_overconfident(), **kwargs)


def test_predictions_without_scores_say_to_pass_scores():
    with pytest.raises(ModelGateError, match=r"needs class probabilities.*pass scores="):
        assert_calibrated(([0, 1, 1], [0, 1, 0]))
    with pytest.raises(ModelGateError, match="run must be the result of finetune"):
        assert_calibrated("run")


def test_the_functions_refuse_bad_shapes():
    with pytest.raises(ModelGateError, match=r"probabilities must have shape \(n, classes\)"):
        expected_calibration_error([0, 1], [0.9, 0.2])
    with pytest.raises(ModelGateError, match="binning must be one of"):
        calibration_bins(Y4, P4, bins=2, binning="uniform")


# --- spec, baseline and the paired test --------------------------------------------------

def test_ece_is_lower_is_better_with_an_absolute_tolerance():
    spec = metric_spec("ece")
    assert not spec.higher_is_better and (spec.lower, spec.upper) == (0.0, 1.0)
    assert Tolerance().allowed("ece", 0.05) == pytest.approx(0.07)  # worse is higher
    assert parse_tolerance("ece=0.01").allowed("ece", 0.05) == pytest.approx(0.06)


def _ece_record(y, pred, probs, bins=15, binning="equal-mass"):
    with recording() as record:
        try:
            assert_calibrated((y, pred, probs), max_ece=1.0, bins=bins, binning=binning)
        except AssertionError:
            pass
    return record


def test_pack_confidences_keeps_them_to_a_thousandth_and_keys_them():
    y, pred = [0, 1, 1], [0, 1, 0]
    base = pack_samples(y, pred, ["a", "b"])
    one = pack_confidences(base, [0.9004, 0.5, 0.61], [True, True, False], bins=2,
                           binning="equal-mass")
    two = pack_confidences(base, [0.95, 0.5, 0.61], [True, True, False], bins=2,
                           binning="equal-mass")
    conf, right = unpack_confidences(one)
    assert conf.tolist() == [0.9, 0.5, 0.61] and right.tolist() == [True, True, False]
    assert len({samples_key(base), samples_key(one), samples_key(two)}) == 3
    assert json.loads(json.dumps(one)) == one  # JSON-ready, no pickle


def test_paired_bootstrap_of_ece_sees_a_real_rise_and_not_an_equal_model():
    rng = np.random.default_rng(7)
    y, _, probs = _calibrated(1000, rng)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == y
    same = paired_bootstrap_ece((conf, right), (conf, right), bins=15, binning="equal-mass",
                                n_resamples=400)
    assert same.p == 1.0 and same.paired
    hot = np.minimum(conf + 0.15, 1.0)  # the same answers, claimed more surely
    worse = paired_bootstrap_ece((conf, right), (hot, right), bins=15, binning="equal-mass",
                                 n_resamples=400)
    assert worse.p < 0.01
    beyond = paired_bootstrap_ece((conf, right), (hot, right), bins=15, binning="equal-mass",
                                  margin=0.3, n_resamples=400)
    assert beyond.p == 1.0


def _rejections(rng, shift, draws, n=300, alpha=0.05, margin=0.0):
    """How often the paired test calls a second model worse: both models answer the same
    test samples, the second right with probability confidence - ``shift``."""
    rejected = 0
    for _ in range(draws):
        conf_b = rng.uniform(0.55, 1.0, n)
        conf_c = rng.uniform(0.55, 1.0, n)
        right_b = rng.random(n) < conf_b
        right_c = rng.random(n) < conf_c - shift
        test = paired_bootstrap_ece((conf_b, right_b), (conf_c, right_c), bins=10,
                                    binning="equal-width", margin=margin, n_resamples=199)
        rejected += test.p <= alpha
    return rejected / draws


def test_paired_ece_test_is_red_at_most_alpha_of_the_time_and_sees_a_rise():
    """By simulation: two equally calibrated models (a new seed) are called worse at most
    about alpha of the time; a model 0.2 overconfident is called worse nearly always.

    The test is conservative: ECE reads noise as error, and a resample adds more of it to
    the better calibrated model, so the resampled rise sits below the observed one. Over
    400 such pairs of 300 images none was called worse at alpha 0.05 (0-5% over other
    confidence shapes, bin counts and both binnings); a rise of 0.10 was called in 61%."""
    rng = np.random.default_rng(8)
    null = _rejections(rng, 0.0, draws=120)
    assert null <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 120)
    assert _rejections(rng, 0.2, draws=40) > 0.9


def test_compare_regressed_inconclusive_and_unpaired_for_ece():
    rng = np.random.default_rng(9)
    y, pred, probs = _calibrated(1500, rng)
    baseline = baseline_entry(_ece_record(y, pred, probs))
    base_value = baseline["metrics"]["ece"]["value"]
    # The same predictions, every confidence raised: a large, real rise.
    hot = probs.copy()
    top = probs.argmax(axis=1)
    hot[np.arange(len(y)), top] = np.minimum(probs.max(axis=1) + 0.15, 0.999)
    rest = (1 - hot[np.arange(len(y)), top]) / 2
    for j in range(3):
        hot[:, j] = np.where(top == j, hot[:, j], rest)
    record = _ece_record(y, pred, hot)
    (r,) = compare(record["metrics"], baseline, Tolerance(), alpha=0.05,
                   samples=record["samples"])
    assert r.verdict == REGRESSED and r.current > r.allowed == pytest.approx(base_value + 0.02)
    assert r.method.startswith("paired bootstrap of ECE (2000 resamples) for a rise beyond")

    # Older baseline: the same entry without per-sample confidences: unpaired, with a note.
    old = json.loads(json.dumps(baseline))
    for packed in old["samples"].values():
        for key in ("confidence", "top_correct", "bins", "binning"):
            packed.pop(key)
    (r,) = compare(record["metrics"], old, Tolerance(), alpha=0.05, samples=record["samples"])
    assert r.verdict == REGRESSED and "unpaired" in r.method
    assert r.note.startswith("the baseline holds no per-sample confidences")

    # 80 test images, every confidence 0.04 lower (underconfident): ECE rises 0.03, past
    # the tolerance, but 80 images cannot show the rise exceeds it: inconclusive.
    ys, preds, probs_s = y[:80], pred[:80], probs[:80]
    small = baseline_entry(_ece_record(ys, preds, probs_s, bins=5))
    top = probs_s.argmax(axis=1)
    lowered = np.maximum(probs_s.max(axis=1) - 0.04, 0.34)
    warm = np.tile(((1 - lowered) / 2)[:, None], (1, 3))
    warm[np.arange(80), top] = lowered
    record = _ece_record(ys, preds, warm, bins=5)
    rises = compare(record["metrics"], small, Tolerance(), alpha=0.05,
                    samples=record["samples"])
    assert len(rises) == 1 and rises[0].verdict == INCONCLUSIVE and rises[0].p > 0.05
    assert rises[0].needed and rises[0].needed > 80  # the samples that would settle it
    # Significance off: the tolerance alone decides.
    (r,) = compare(record["metrics"], small, Tolerance(), alpha=None,
                   samples=record["samples"])
    assert r.verdict == REGRESSED and r.p is None

    # Another binning than the baseline's: compared unpaired, and said so.
    record = _ece_record(ys, preds, warm, bins=4)
    rises = compare(record["metrics"], small, Tolerance(), alpha=0.05,
                    samples=record["samples"])
    assert rises and rises[0].note.startswith("the binning changed since the baseline")


def test_a_multi_seed_baseline_tests_ece_against_its_seeds():
    rng = np.random.default_rng(10)
    y, pred, probs = _calibrated(500, rng)
    record = _ece_record(y, pred, probs)
    replica = json.loads(json.dumps(record))
    replica["metrics"][0]["value"] += 0.004
    record["replicas"] = [replica]
    baseline = baseline_entry(record)
    assert baseline["metrics"]["ece"]["seeds"][1] == pytest.approx(
        baseline["metrics"]["ece"]["seeds"][0] + 0.004)
    hot = np.tile(np.full(500, 0.0005)[:, None], (1, 3))
    hot[np.arange(500), probs.argmax(axis=1)] = 0.999
    current = _ece_record(y, pred, hot)
    (r,) = compare(current["metrics"], baseline, Tolerance(), alpha=0.05,
                   samples=current["samples"])
    assert r.verdict == REGRESSED and r.method.startswith("prediction interval over 2 seeds")


# --- the report --------------------------------------------------------------------------

def _report_context(record):
    tests = [{"nodeid": "test_cal.py::test_<script>", "outcome": "failed", "duration": 0.5,
              "record": record, "regressions": []}]
    return build_context(tests, baseline_path="b.json", baseline_found=False,
                         updated_baseline=False)


def test_the_report_draws_a_reliability_diagram_with_bin_counts():
    with recording() as record, pytest.raises(AssertionError):
        assert_calibrated(_overconfident(), bins=5, binning="equal-mass")
    ctx = _report_context(record)
    (row,) = ctx["tests"][0]["metrics"]
    chart = row["reliability_chart"]
    diagonal, bins = chart["series"]
    assert diagonal["dashed"] and diagonal["label"].startswith("calibrated")
    assert bins["label"] == "accuracy per bin (equal-mass)" and len(bins["dots"]) == 5
    assert chart["x_label"] == "mean confidence" and chart["y_label"] == "accuracy"
    html = render_html(ctx)
    assert 'aria-label="reliability diagram"' in html
    assert "Reliability per bin (5 equal-mass bins; overconfident: mean confidence" in html
    assert "<td>80</td>" in html  # each of 5 equal-mass bins holds 400 / 5 images
    assert "test_&lt;script&gt;" in html and "<script" not in html

    # The merge rebuilds the report from the JSON alone: the same context, the same page.
    again = _report_context(json.loads(json.dumps(record)))
    assert again["tests"][0]["metrics"] == json.loads(json.dumps(ctx["tests"][0]["metrics"]))
    # The page says when it was generated: the two renders may straddle a second.
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")
    assert stamp.sub("T", render_html(again)).split("generated")[1:] == \
        stamp.sub("T", html).split("generated")[1:]


def test_a_reliability_diagram_that_cannot_be_drawn_is_a_note():
    with recording() as record, pytest.raises(AssertionError):
        assert_calibrated(_overconfident(), bins=5)
    record["metrics"][0]["detail"]["bins"] = "garbled"
    (row,) = _report_context(record)["tests"][0]["metrics"]
    assert "reliability_chart" not in row
    assert row["chart_notes"][0].startswith("reliability diagram not drawn: TypeError")


def test_a_run_of_one_hot_probabilities_has_ece_equal_to_its_error_rate():
    """A model sure of every answer (probability 1) is off by exactly its error rate; the
    record names the run and keeps one pack of its samples, the one with confidences."""
    from .test_assertions import Y_PRED, Y_TRUE, make_run

    run = make_run(Y_TRUE, Y_PRED)
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_calibrated(run, 0.1, binning="equal-mass", bins=5)
    (metric,) = record["metrics"]
    assert metric["value"] == pytest.approx(4 / 25)
    assert metric["run"] == "toy (pretrained, freeze=backbone)" in record["runs"]
    assert list(record["samples"]) == [metric["samples"]]
    assert "\n  toy (pretrained, freeze=backbone)\n  Fix:" in str(info.value)


def test_multilabel_calibration_pools_each_labels_decision_and_draws_whole_images():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 3)) < 0.4).astype(int)
    scores = np.clip(y * 0.7 + rng.random((300, 3)) * 0.3, 0, 1)   # right, but timid
    p = Predictions.from_arrays(y, scores=scores, class_names=["a", "b", "c"])
    conf, correct = top_label(y, scores)
    assert conf.shape == correct.shape == (900,)
    np.testing.assert_allclose(conf, np.maximum(scores, 1 - scores).ravel())
    with pytest.raises(AssertionError) as info:
        assert_calibrated(p, max_ece=0.05)
    message = str(info.value)
    assert "[n=900" in message and "300 images x 3 labels" in message
    assert "underconfident" in message and "label decisions" in message
    assert "before the sigmoid (T < 1 sharpens" in message
    # Whole images are drawn: the interval is wider than drawing the 900 decisions alone.
    rows = bootstrap_ece(conf, correct, group=3, n_resamples=300)
    alone = bootstrap_ece(conf, correct, n_resamples=300)
    assert rows.std() >= 0.8 * alone.std()


def test_equal_mass_ece_does_not_depend_on_the_order_of_tied_confidences():
    # 100 samples at confidence 0.8, 80 of them right: calibrated, in any order.
    probs = np.tile([0.8, 0.2], (100, 1))
    wrong_first = np.r_[np.ones(20, int), np.zeros(80, int)]
    for y in (wrong_first, np.random.default_rng(0).permutation(wrong_first)):
        assert expected_calibration_error(y, probs, binning="equal-mass") == pytest.approx(0)
