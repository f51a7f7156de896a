"""Multilabel predictions ((n, classes) 0/1 matrices) through every gate, the baseline's
paired tests and the report; figures checked against scikit-learn."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from pytest_modelgate import (
    assert_accuracy_above,
    assert_balanced_accuracy_above,
    assert_beats_majority,
    assert_f1_above,
    assert_fbeta_above,
    assert_no_overfitting,
    assert_precision_above,
    assert_precision_at_recall,
    assert_recall_above,
)
from pytest_modelgate.assertions import recording
from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.multilabel import RowCounts, figure
from pytest_modelgate.run import EpochStats, FinetuneRun, Predictions

NAMES = ["cat", "dog", "bird", "<b>fish</b>"]


def _data(n=120, seed=0, flip=0.15):
    """Truth with every label present and absent, predictions with ``flip`` of cells wrong."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(NAMES))) < [0.5, 0.3, 0.2, 0.6]).astype(int)
    wrong = rng.random(y.shape) < flip
    return y, np.where(wrong, 1 - y, y)


def _preds(**kw):
    y, p = _data(**kw)
    return Predictions.from_arrays(y, p, class_names=NAMES)


# --- summary against scikit-learn ---------------------------------------------------------

def test_summary_matches_scikit_learn():
    skm = pytest.importorskip("sklearn.metrics")
    y, p = _data()
    s = _preds().summary()
    assert s["multilabel"] and s["n"] == len(y)
    assert s["label_confusion"] == skm.multilabel_confusion_matrix(y, p).tolist()
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert s["label_accuracy"] == pytest.approx(1 - skm.hamming_loss(y, p))
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, p, zero_division=0)
    for i, row in enumerate(s["per_class"]):
        assert row["label"] == NAMES[i] and row["support"] == support[i]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(
            (prec[i], rec[i], f1[i]))
        assert row["tp"] + row["fn"] == row["support"]
        assert row["tp"] + row["fp"] == row["predicted"]
    for avg in ("micro", "macro", "weighted"):
        want = skm.precision_recall_fscore_support(y, p, average=avg, zero_division=0)[:3]
        got = s["averages"][avg]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(want), avg
    # samples: as scikit-learn's, except a sample with no labels and none predicted is 1
    empty = (y.sum(1) == 0) & (p.sum(1) == 0)
    assert empty.any()
    some = skm.precision_recall_fscore_support(y[~empty], p[~empty], average="samples",
                                               zero_division=0)[:3]
    got = s["averages"]["samples"]
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(
        [(v * (~empty).sum() + empty.sum()) / len(y) for v in some])
    # F-beta per label and averaged, as fbeta_score
    rows = RowCounts.of(y, p)
    for avg in ("micro", "macro"):
        assert figure(f"f2[{avg}]", NAMES, rows)[0] == pytest.approx(
            skm.fbeta_score(y, p, beta=2, average=avg, zero_division=0))


def test_an_empty_row_predicted_empty_is_right_in_the_samples_average():
    y = np.array([[1, 0], [0, 0]])
    assert figure("f1[samples]", ["a", "b"], RowCounts.of(y, y))[0] == 1.0
    assert figure("recall[samples]", ["a", "b"], RowCounts.of(y, np.array([[1, 0], [1, 0]])))[0] \
        == 0.5   # the row with no labels but one predicted: recall undefined, counted 0


def test_the_bootstrap_is_seeded_and_chunked_alike(monkeypatch):
    from pytest_modelgate import multilabel

    y, p = _data()
    (a,) = multilabel.bootstrap("f1[samples]", NAMES, y, [p], 50, seed=3)
    (b,) = multilabel.bootstrap("f1[samples]", NAMES, y, [p], 50, seed=3)
    assert np.array_equal(a, b) and len(a) == 50
    monkeypatch.setattr(multilabel, "CHUNK_CELLS", 500)   # chunks of a few resamples
    (c,) = multilabel.bootstrap("f1[samples]", NAMES, y, [p], 50, seed=3)
    assert len(c) == 50 and abs(c.mean() - a.mean()) < 0.02
    # the same draws score both matrices: identical predictions, identical values
    d, e = multilabel.bootstrap("recall[cat]", NAMES, y, [p, p], 20, seed=1)
    assert np.array_equal(d, e)


def test_from_arrays_thresholds_independent_scores():
    y = np.array([[1, 0, 1], [0, 1, 0]])
    scores = np.array([[0.9, 0.8, 0.7], [0.1, 0.4, 0.2]])   # rows do not sum to 1: fine
    p = Predictions.from_arrays(y, scores=scores, class_names=["a", "b", "c"], threshold=0.45)
    assert p.multilabel and p.y_pred.tolist() == [[1, 1, 1], [0, 0, 0]]
    assert p.accuracy == 0.0
    assert Predictions.from_arrays(y, y).class_names == ("0", "1", "2")


@pytest.mark.parametrize("args, kwargs, match", [
    (([[1, 0], [0, 1]], [[1, 0, 0], [0, 1, 1]]), {}, r"y_pred has 3 columns but there are 2"),
    (([[1, 0], [0, 2]], [[1, 0], [0, 1]]), {}, r"y_true must hold 0 and 1 only.*row 1"),
    (([[1, 0], [0, 1]], [0, 1]), {}, r"y_true is a multilabel \(2, 2\) 0/1 matrix but y_pred"),
    (([0, 1], [[1, 0], [0, 1]]), {}, r"y_pred is an \(2, 2\) matrix but y_true holds one"),
    (([[1, 0], [0, 1]], None, [[1.2, 0], [0, 1]]), {}, r"sigmoid"),
    (([[1, 0], [0, 1]], None, [[0.2, 0.1]]), {}, r"scores must have shape \(2, 2\)"),
    (([[1, 0], [0, 1]], [[1, 0], [0, 1]]), {"class_names": ["a"]}, r"2 columns but there are 1"),
    (([[1, 0], [0, 1]], None, [[0.2, 0.1], [0.3, 0.9]]), {"threshold": 2},
     r"threshold must be a number in \[0, 1\]"),
])
def test_bad_multilabel_input_is_named(args, kwargs, match):
    with pytest.raises(ModelGateError, match=match):
        Predictions.from_arrays(*args, **kwargs)


# --- the gates ------------------------------------------------------------------------------

def test_per_label_floor_names_the_weak_label_with_the_table():
    y, p = _data()
    p[:, 2] = 0   # the model never calls "bird"
    preds = Predictions.from_arrays(y, p, class_names=NAMES)
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_recall_above(preds, 0.6, per_class=True)
    text = str(info.value)
    assert "recall(bird) = 0.000 < 0.600 required [n=" in text
    assert "per label (each a binary task):" in text and "    label " in text
    assert "lowest recall: bird 0.000" in text and "Fix: " in text
    names = [m["name"] for m in record["metrics"]]
    assert names == [f"recall[{n}]" for n in NAMES]
    (key,) = record["samples"]
    assert record["samples"][key]["multilabel"] is True


def test_one_label_precision_uses_wilson_and_says_never_predicted():
    y, p = _data()
    p[:, 1] = 0
    with pytest.raises(AssertionError, match=r"precision\(dog\) = 0\.000 < 0\.500 required "
                                             r"\[n=0.*the model never predicts label 'dog'"):
        assert_precision_above(Predictions.from_arrays(y, p, class_names=NAMES), 0.5,
                               label="dog")
    with recording() as record:
        assert_precision_above(_preds(), 0.5, label="cat")
    (m,) = record["metrics"]
    assert m["name"] == "precision[cat]" and m["interval"][0] < m["value"] < m["interval"][1]


def test_samples_average_gate_records_a_bootstrap_interval():
    preds = _preds()
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_f1_above(preds, 0.95, average="samples")
    (m,) = record["metrics"]
    assert m["name"] == "f1[samples]"
    assert m["value"] == pytest.approx(preds.summary()["averages"]["samples"]["f1"])
    assert m["interval"][0] < m["value"] < m["interval"][1]
    assert str(info.value).startswith("f1 (samples over samples) = ")


@pytest.mark.parametrize("avg", ["micro", "macro", "weighted"])
def test_label_averages_match_scikit_learn(avg):
    skm = pytest.importorskip("sklearn.metrics")
    y, p = _data()
    with recording() as record:
        assert_recall_above(Predictions.from_arrays(y, p, class_names=NAMES), 0.1, average=avg)
        assert_fbeta_above(Predictions.from_arrays(y, p, class_names=NAMES), 0.1, beta=2,
                           average=avg)
    recall, f2 = record["metrics"]
    assert recall["value"] == pytest.approx(skm.recall_score(y, p, average=avg))
    assert f2["name"] == f"f2[{avg}]"
    assert f2["value"] == pytest.approx(skm.fbeta_score(y, p, beta=2, average=avg))


def test_samples_average_on_single_label_is_refused():
    with pytest.raises(ModelGateError, match=r"average='samples'.*one label per sample"):
        assert_recall_above(([0, 1, 1], [0, 1, 0]), 0.5, average="samples")


def test_label_without_test_images_is_refused():
    y, p = _data()
    y[:, 0] = 0
    with pytest.raises(ModelGateError, match=r"no images showing label 'cat'"):
        assert_recall_above(Predictions.from_arrays(y, p, class_names=NAMES), 0.5, label="cat")


def test_accuracy_is_subset_accuracy_and_says_so():
    y, p = _data()
    with pytest.raises(AssertionError, match=r"^subset accuracy \(every label of a sample "
                                             r"right\) = 0\.\d+ < 0\.900 required"):
        assert_accuracy_above(Predictions.from_arrays(y, p, class_names=NAMES), 0.9)


def test_balanced_accuracy_is_the_mean_over_labels():
    y, p = _data()
    with recording() as record:
        assert_balanced_accuracy_above(Predictions.from_arrays(y, p, class_names=NAMES), 0.5)
    (m,) = record["metrics"]
    skm = pytest.importorskip("sklearn.metrics")
    want = np.mean([skm.balanced_accuracy_score(y[:, j], p[:, j]) for j in range(len(NAMES))])
    assert m["value"] == pytest.approx(want)


def test_beats_majority_per_label():
    y, _p = _data()
    assert_beats_majority(Predictions.from_arrays(y, y, class_names=NAMES))
    with pytest.raises(AssertionError) as info:
        assert_beats_majority(Predictions.from_arrays(y, np.zeros_like(y), class_names=NAMES))
    text = str(info.value)
    assert "does not beat guessing each label's majority value by 0.050" in text
    assert "mean balanced accuracy over labels 0.500" in text and "mean MCC 0.000" in text
    assert "lowest balanced accuracy: " in text and "Fix: " in text
    with pytest.raises(ModelGateError, match="present in all its images or in none"):
        assert_beats_majority(Predictions.from_arrays(np.ones((4, 2)), np.ones((4, 2))))


def test_no_overfitting_compares_label_accuracy():
    y, p = _data()
    preds = Predictions.from_arrays(y, p, class_names=NAMES, train=(y, y))
    with pytest.raises(AssertionError, match=r"train label accuracy 1\.000 - test label "
                                             r"accuracy 0\.8\d+ = gap"):
        assert_no_overfitting(preds, max_gap=0.05)
    assert_no_overfitting(preds, max_gap=0.3)


def test_operating_point_is_per_label():
    y, _p = _data()
    scores = np.clip(y * 0.5 + np.random.default_rng(1).random(y.shape) * 0.5, 0, 1)
    preds = Predictions.from_arrays(y, scores=scores, class_names=NAMES)
    with recording() as record:
        assert_precision_at_recall(preds, recall=0.9, min_precision=0.5, positive="dog")
    assert record["metrics"][0]["name"] == "precision_at_recall[dog@0.9]"
    with pytest.raises(ModelGateError, match="operating point per label: name it with "
                                             "positive="):
        assert_precision_at_recall(preds, recall=0.9, min_precision=0.5)


# --- runs, the baseline, the report --------------------------------------------------------

def _run(y, p):
    history = (EpochStats(1, 0.5, 0.4, 0.5, 1.0), EpochStats(2, 0.3, 0.6, 0.7, 2.0))
    return FinetuneRun(model="toy", class_names=tuple(NAMES), y_true=y, y_pred=p,
                       probabilities=np.clip(p * 0.8 + 0.1, 0, 1), history=history,
                       seconds=2.0, setup_seconds=0.0, device="cpu", freeze="backbone",
                       pretrained=True, config={"image_size": 8}, train_y_true=y,
                       train_y_pred=y)


def test_a_multilabel_run_describes_itself():
    y, p = _data()
    run = _run(y, p)
    assert "subset accuracy" in repr(run) and "4 classes" in repr(run)
    assert run.accuracy == pytest.approx(np.mean(np.all(y == p, axis=1)))
    d = run.to_dict()
    json.dumps(d)
    assert d["summary"]["multilabel"] and d["pr_curve"] is None


def test_packing_round_trips_and_single_label_is_unchanged():
    from pytest_modelgate.significance import pack_samples, unpack_labels, unpack_predictions

    y, p = _data(n=37)
    packed = pack_samples(y, p, NAMES)
    assert packed["multilabel"] and len(packed["y_pred"]) <= 4 * (37 * 4 // 8 + 1) // 3 + 4
    assert np.array_equal(unpack_labels(packed), y)
    assert np.array_equal(unpack_predictions(packed), p)
    single = pack_samples([0, 1, 2], [0, 2, 2], ["a", "b", "c"])
    assert "multilabel" not in single and single["y_pred"] == "AAIC"


def _record(y, p):
    with recording() as record:
        preds = Predictions.from_arrays(y, p, class_names=NAMES)
        assert_recall_above(preds, 0.0, per_class=True)
        assert_f1_above(preds, 0.0, average="samples")
        assert_accuracy_above(preds, 0.0)
    return record


def test_a_regressed_label_is_caught_and_a_small_drop_is_inconclusive():
    from pytest_modelgate.baseline import Tolerance, baseline_entry, compare
    from pytest_modelgate.specs import INCONCLUSIVE, REGRESSED

    y, p = _data(n=400, flip=0.05)
    base = baseline_entry(_record(y, p))
    worse = p.copy()
    worse[y[:, 0] == 1, 0] = 0   # every cat missed now
    current = _record(y, worse)
    regs = {r.name: r for r in compare(current["metrics"], base, Tolerance(), alpha=0.05,
                                        samples=current["samples"])}
    assert regs["recall[cat]"].verdict == REGRESSED and "McNemar" in regs["recall[cat]"].method
    assert "recall[dog]" not in regs
    assert regs["f1[samples]"].verdict == REGRESSED
    assert "paired bootstrap over samples" in regs["f1[samples]"].method
    # one bird lost of about 80: beyond a zero tolerance, not significant
    slight = p.copy()
    slight[np.flatnonzero((y[:, 2] == 1) & (p[:, 2] == 1))[:1], 2] = 0
    current = _record(y, slight)
    regs = {r.name: r for r in compare(current["metrics"], base, Tolerance(default=0.0),
                                        alpha=0.05, samples=current["samples"])}
    assert regs["recall[bird]"].verdict == INCONCLUSIVE


def test_the_report_draws_per_label_matrices(tmp_path):
    from pytest_modelgate.report.context import build_context
    from pytest_modelgate.report.html import render_html, write_reports

    y, p = _data()
    with recording() as record, warnings.catch_warnings():
        assert_recall_above(_run(y, p), 0.1, per_class=True)
    tests = [{"nodeid": "t.py::test_ml", "outcome": "passed", "duration": 1.0,
              "record": record, "regressions": []}]
    ctx = build_context(tests, baseline_path="b.json", baseline_found=False,
                        updated_baseline=False)
    (run,) = ctx["tests"][0]["runs"]
    first = run["label_matrices"][0]
    s = run["summary"]["per_class"][0]
    assert (first["tp"], first["fn"], first["fp"], first["tn"]) == (s["tp"], s["fn"], s["fp"],
                                                                    s["tn"])
    assert [c["name"] for row in first["cells"] for c in row] == ["TP", "FN", "FP", "TN"]
    assert all(r["f1_ci"] and r["recall_ci"] for r in run["per_class"])
    html = render_html(ctx)
    assert html.count('<table class="cm small">') == len(NAMES)
    assert "&lt;b&gt;fish&lt;/b&gt;" in html and "<b>fish</b>" not in html
    assert "Per label, with 95% intervals" in html and "samples" in html
    _html, json_path = write_reports(ctx, tmp_path)
    assert json.loads(json_path.read_text())["tests"][0]["runs"][0]["label_matrices"]


def test_summary_agrees_with_the_scikit_learn_style_functions_of_metrics():
    from pytest_modelgate import metrics

    y, p = _data()
    s = _preds().summary()
    assert s["label_confusion"] == metrics.multilabel_confusion_matrix(y, p).tolist()
    for avg in ("micro", "weighted"):   # macro: over the labels the test split shows
        want = metrics.precision_recall_fscore_support(y, p, average=avg, zero_division=0)
        assert [s["averages"][avg][k] for k in ("precision", "recall", "f1")] == \
            pytest.approx(want[:3])


def test_a_multilabel_race_runs_to_label_accuracy():
    import dataclasses

    from pytest_modelgate import assert_faster_than_scratch

    from .test_assertions import _racer

    y, p = _data()
    run = dataclasses.replace(_run(y, p), scratch_runner=_racer((0.3, 0.5), 5.0))
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_faster_than_scratch(run, target_accuracy=0.7, min_speedup=6, full_race=True)
    assert str(info.value).startswith("speedup to label accuracy 0.700 = >")
    assert record["races"][0]["pretrained_seconds"] == 2.0


def test_the_paired_bootstrap_over_samples_tells_noise_from_a_drop():
    from pytest_modelgate.significance import paired_label_bootstrap

    y, p = _data(n=300, flip=0.05)
    same = paired_label_bootstrap("f1[macro]", NAMES, y, p, p, n_resamples=200)
    assert same.p == 1.0 and same.paired and same.n == 300
    worse = np.where(np.random.default_rng(5).random(y.shape) < 0.2, 1 - p, p)
    drop = paired_label_bootstrap("f1[macro]", NAMES, y, p, worse, n_resamples=200)
    assert drop.p < 0.01
    # within a margin wider than the drop: no evidence it exceeds the tolerance
    assert paired_label_bootstrap("f1[macro]", NAMES, y, p, worse, margin=0.5,
                                  n_resamples=200).p == 1.0


def test_a_multilabel_baseline_over_seeds_tests_against_the_seed_spread():
    from pytest_modelgate.baseline import Tolerance, compare
    from pytest_modelgate.significance import pack_samples, samples_key

    y, p = _data(n=200, flip=0.05)
    packs, values = {}, []
    for seed in range(3):
        pred = np.where(np.random.default_rng(seed).random(y.shape) < 0.02, 1 - p, p)
        packed = pack_samples(y, pred, NAMES)
        packs[samples_key(packed)] = packed
        values.append(float(np.mean(pred[y[:, 0] == 1, 0])))
    keys = list(packs)
    base = {"metrics": {"recall[cat]": {"value": float(np.mean(values)), "seeds": values,
                                        "seed_samples": keys, "samples": keys[0], "n": 100,
                                        "higher_is_better": True}},
            "samples": packs}
    worse = p.copy()
    worse[np.flatnonzero(y[:, 0])[:40], 0] = 0
    current = pack_samples(y, worse, NAMES)
    metric = {"name": "recall[cat]", "value": float(np.mean(worse[y[:, 0] == 1, 0])),
              "n": int(y[:, 0].sum()), "higher_is_better": True,
              "samples": samples_key(current), "interval": None}
    (reg,) = compare([metric], base, Tolerance(), alpha=0.05,
                     samples={samples_key(current): current})
    assert reg.seeds == 3 and "prediction interval over 3 seeds" in reg.method
    assert reg.verdict == "regressed"


def test_the_report_of_a_merge_rebuilds_label_matrices_from_json():
    """``python -m pytest_modelgate merge`` builds the context from the JSON records."""
    from pytest_modelgate.report.context import build_context

    y, p = _data()
    with recording() as record:
        assert_recall_above(_run(y, p), 0.1, label="cat")
    record = json.loads(json.dumps(record))
    ctx = build_context([{"nodeid": "t.py::test_ml", "outcome": "passed", "record": record}],
                        baseline_path="b.json", baseline_found=False, updated_baseline=False)
    assert len(ctx["tests"][0]["runs"][0]["label_matrices"]) == len(NAMES)


def test_changed_images_of_a_regressed_label_are_captioned_with_label_sets():
    from pytest_modelgate.baseline import Regression
    from pytest_modelgate.data import ImageSet
    from pytest_modelgate.report.context import changed_samples
    from pytest_modelgate.significance import pack_samples, samples_key

    y, p = _data(n=40, flip=0.0)
    images = ImageSet(np.random.default_rng(0).integers(0, 255, (40, 8, 8), dtype=np.uint8),
                      y, NAMES, name="test")
    worse = p.copy()
    cats = np.flatnonzero(y[:, 0])[:3]
    worse[cats, 0] = 0          # three cats missed now
    worse[np.flatnonzero(y[:, 1] == 0)[:2], 1] = 1   # dogs called: not what recall[cat] asks
    base, cur = pack_samples(y, p, NAMES), pack_samples(y, worse, NAMES)
    bk, ck = samples_key(base), samples_key(cur)
    reg = Regression(name="recall[cat]", baseline=1.0, current=0.8, allowed=0.98, n=20,
                     samples=(bk, ck))
    changes = changed_samples([reg], {bk: base}, {ck: cur}, {ck: images})
    assert changes["now_wrong"]["count"] == 3 and changes["now_right"]["count"] == 0
    first = changes["now_wrong"]["shown"][0]
    i = int(cats[0])
    assert first["index"] == i and first["true"].startswith("cat")
    assert "cat" in first["was"] and "cat" not in first["now"].split(", ")
    # an average flags every label: the dogs called count too
    avg = Regression(name="f1[samples]", baseline=1.0, current=0.8, allowed=0.98, n=40,
                     samples=(bk, ck))
    assert changed_samples([avg], {bk: base}, {ck: cur}, {ck: images})["now_wrong"][
        "count"] == 5


def test_fbeta_and_balanced_accuracy_messages_name_labels():
    y, p = _data()
    p[:, 3] = 0
    preds = Predictions.from_arrays(y, p, class_names=NAMES)
    with pytest.raises(AssertionError) as info:
        assert_fbeta_above(preds, 0.7, beta=2, per_class=True)
    text = str(info.value)
    assert text.startswith("f2(<b>fish</b>) = 0.000 < 0.700 required [n=")
    assert "lowest f2: <b>fish</b> 0.000" in text and "Fix: F2 counts recall 2x" in text
    with pytest.raises(AssertionError, match=r"^balanced accuracy \(mean over labels of each "
                                             r"label's\) = 0\.\d{3} < 0\.950 required \[n=120"):
        assert_balanced_accuracy_above(preds, 0.95)


def test_a_slice_of_a_multilabel_task_is_gated_per_label():
    y, p = _data()
    camera = np.where(np.arange(len(y)) % 2, "A", "B")
    p[camera == "B", 0] = 0   # camera B: no cat found
    preds = Predictions.from_arrays(y, p, class_names=NAMES, attributes={"camera": camera})
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_recall_above(preds, 0.5, label="cat", slice="camera")
    assert "camera=B" in str(info.value).splitlines()[0]
    names = {m["name"] for m in record["metrics"]}
    assert {"recall[cat]{camera=A}", "recall[cat]{camera=B}"} <= names
    assert all(packed["multilabel"] for packed in record["samples"].values())
