"""Slices of the test set: choosing samples (``slices.py``), the gates' ``slice=`` and
``where=``, Holm over slices, ``min_slice_size``, per-slice baselines and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_modelgate import (
    ModelGateError,
    ModelGateWarning,
    assert_accuracy_above,
    assert_balanced_accuracy_above,
    assert_f1_above,
    assert_fbeta_above,
    assert_precision_above,
    assert_recall_above,
)
from pytest_modelgate.assertions import recording
from pytest_modelgate.baseline import baseline_entry, compare, parse_tolerance
from pytest_modelgate.report.context import build_context
from pytest_modelgate.report.html import render_html
from pytest_modelgate.run import Predictions
from pytest_modelgate.slices import (
    FAILED,
    PASSED,
    TOO_SMALL,
    check_min_slice_size,
    holm_over_slices,
    select_slices,
    worst_first,
)
from pytest_modelgate.specs import MetricName, junit_properties, metric_spec

ATTRS = {"camera": np.array(["A", "B", "A", "C", "B", "A"]),
         "time": np.array(["day", "night", "night", "day", "night", "day"]),
         "site": np.array([1, 2, 1, 2, 1, 2])}


# --- choosing samples ---------------------------------------------------------------------

def test_slice_gives_one_slice_per_value_in_sorted_order():
    parts = select_slices(ATTRS, slice="camera")
    assert [(s.text, s.indices.tolist(), s.n) for s in parts] == [
        ("camera=A", [0, 2, 5], 3), ("camera=B", [1, 4], 2), ("camera=C", [3], 1)]


def test_where_ands_its_keys_and_a_list_is_any_of():
    (night,) = select_slices(ATTRS, where={"time": "night"})
    assert (night.text, night.indices.tolist()) == ("time=night", [1, 2, 4])
    (both,) = select_slices(ATTRS, where={"time": "night", "camera": ["A", "C"]})
    assert (both.text, both.indices.tolist()) == ("time=night,camera=A|C", [2])
    (by_text,) = select_slices(ATTRS, where={"site": "2"})   # a manifest's "2" is 2
    assert by_text.indices.tolist() == [1, 3, 5]


def test_slice_within_where():
    parts = select_slices(ATTRS, slice="camera", where={"time": "night"})
    assert [(s.text, s.indices.tolist()) for s in parts] == [
        ("time=night,camera=A", [2]), ("time=night,camera=B", [1, 4])]


@pytest.mark.parametrize("kwargs, message", [
    ({}, "pass slice='attribute'"),
    ({"slice": "cam"}, "no attribute 'cam' (did you mean 'camera'?); their attributes are "
                       "['camera', 'site', 'time']"),
    ({"slice": ""}, "slice names an attribute"),
    ({"slice": 3}, "slice names an attribute"),
    ({"where": {}}, "where must be a non-empty dict"),
    ({"where": ["time"]}, "where must be a non-empty dict"),
    ({"where": {"weather": "rain"}}, "no attribute 'weather'"),
    ({"where": {"time": "nite"}}, "where={'time': 'nite'} selects no test sample; attribute "
                                  "'time' holds ['day', 'night']"),
    ({"where": {"time": []}}, "where['time'] is an empty list"),
    ({"where": {"time": "day", "camera": "B"}},
     "selects no test sample among the samples the other keys select; attribute 'camera' "
     "holds ['A', 'C']"),
])
def test_bad_slices_are_named(kwargs, message):
    with pytest.raises(ModelGateError) as info:
        select_slices(ATTRS, **kwargs)
    assert message in str(info.value)


def test_samples_without_attributes_say_how_to_get_them():
    with pytest.raises(ModelGateError, match=r"slice='camera' needs per-sample attributes.*"
                                             r"from_manifest.*Predictions\.from_arrays"):
        select_slices({}, slice="camera")


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "20"])
def test_bad_min_slice_size(value):
    with pytest.raises(ModelGateError, match="min_slice_size must be a positive integer"):
        check_min_slice_size(value)


def test_min_slice_size_none_gates_every_slice():
    assert check_min_slice_size(None) == 1 and check_min_slice_size(20) == 20


# --- Holm over slices ----------------------------------------------------------------------

def test_holm_holds_each_slice_to_a_stricter_level_stepping_down():
    # Lower bounds clear the threshold up to these confidence levels.
    clears_up_to = {"a": 0.999, "b": 0.98, "c": 0.96}
    out = holm_over_slices(list(clears_up_to), lambda s, c: c <= clears_up_to[s], 0.95)
    # k=3: 98.33% -> a; k=2: 97.5% -> b; k=1: 95% -> c. All pass, each at its level.
    assert out == {"a": (True, pytest.approx(1 - 0.05 / 3)),
                   "b": (True, pytest.approx(0.975)), "c": (True, pytest.approx(0.95))}
    # b clears only at 97%: at k=2 (97.5%) nothing clears, so b and c fail there.
    clears_up_to["b"] = 0.97
    out = holm_over_slices(list(clears_up_to), lambda s, c: c <= clears_up_to[s], 0.95)
    assert out["a"][0] and not out["b"][0] and not out["c"][0]
    assert out["b"][1] == pytest.approx(0.975)


def test_one_slice_is_judged_at_the_confidence_itself():
    assert holm_over_slices(["x"], lambda s, c: c <= 0.95, 0.95) == {"x": (True, 0.95)}


def test_worst_first_puts_failures_then_lowest_then_not_gated():
    rows = [{"slice": "a", "value": 0.95, "verdict": PASSED},
            {"slice": "b", "value": None, "verdict": TOO_SMALL},
            {"slice": "c", "value": 0.97, "verdict": FAILED},
            {"slice": "d", "value": 0.70, "verdict": FAILED},
            {"slice": "e", "value": 0.90, "verdict": PASSED}]
    assert [r["slice"] for r in worst_first(rows)] == ["d", "c", "e", "a", "b"]


# --- the name keeps the slice ----------------------------------------------------------

def test_metric_names_keep_the_slice_and_everything_reads_it():
    name = MetricName.parse("recall[defect]{camera=B}")
    assert (name.base, name.label, name.slice) == ("recall", "defect", "camera=B")
    assert str(name) == "recall[defect]{camera=B}" and str(name.whole) == "recall[defect]"
    assert MetricName.parse("accuracy{time=night}").slice == "time=night"
    assert MetricName.parse("f1[macro]{camera=A|B}").average == "macro"
    assert MetricName.parse("recall[a{b]").slice is None   # braces inside a class name
    assert metric_spec("f2[defect]{camera=B}").higher_is_better
    # The tolerance named for recall applies to each slice's recall.
    assert parse_tolerance("recall=0.05").for_metric("recall[defect]{camera=B}") == (0.05, False)


# --- the gates ------------------------------------------------------------------------------

def cameras(n_per=40, broken="B", miss=12, small=None):
    """Binary predictions over cameras A, B, C: half of each camera's samples are defects;
    camera ``broken`` misses ``miss`` of its defects. ``small``: a camera E of that size."""
    cams = ["A", "B", "C"]
    y, pred, cam = [], [], []
    for c in cams:
        yc = np.repeat([0, 1], n_per // 2)
        pc = yc.copy()
        if c in broken:
            pc[n_per // 2:n_per // 2 + miss] = 0
        y += yc.tolist()
        pred += pc.tolist()
        cam += [c] * n_per
    if small:
        y += [1] * small
        pred += [0] * small
        cam += ["E"] * small
    return Predictions.from_arrays(y, pred, class_names=["ok", "defect"],
                                   attributes={"camera": cam, "time": ["night"] * len(y)})


def test_slice_fails_naming_the_worst_slice_first():
    p = cameras(small=7)
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_recall_above(p, 0.9, label="defect", slice="camera")
    lines = str(info.value).splitlines()
    assert lines[0] == ("recall(defect) on camera=B = 0.400 < 0.900 required "
                        "[n=20, 95% CI 0.219-0.613]")
    assert lines[1] == "  recall(defect): 1 of 3 gated slices below the threshold"
    assert lines[2] == "  passed: camera=A 1.000 (n=20), camera=C 1.000 (n=20)"
    assert lines[3] == "  not gated: camera=E n=7 < 20"
    assert lines[4].startswith("  Fix: train longer")
    assert [m["name"] for m in record["metrics"]] == [
        "recall[defect]{camera=A}", "recall[defect]{camera=B}", "recall[defect]{camera=C}"]
    assert [m["passed"] for m in record["metrics"]] == [True, False, True]
    # Each slice's figure is computed on its samples: n is that slice's defects.
    assert {m["n"] for m in record["metrics"]} == {20}
    (table,) = record["slices"]
    assert table["gate"] == "recall[defect]" and table["slice"] == "camera"
    assert [(r["slice"], r["verdict"]) for r in table["rows"]] == [
        ("camera=B", FAILED), ("camera=A", PASSED), ("camera=C", PASSED),
        ("camera=E", TOO_SMALL)]
    assert table["rows"][-1]["reason"] == "n=7 < 20"
    json.dumps(record)


def test_where_gates_one_slice():
    p = cameras()
    assert_recall_above(p, 0.9, label="defect", where={"camera": ["A", "C"]})
    with pytest.raises(AssertionError) as info:
        assert_recall_above(p, 0.9, label="defect", where={"camera": "B"})
    assert str(info.value).splitlines() == [
        "recall(defect) on camera=B = 0.400 < 0.900 required [n=20, 95% CI 0.219-0.613]",
        "  Fix: train longer or on more images of the weak classes, or lower the threshold if "
        "it asks for more than this data can show; or gather more test images of the failing "
        "slices"]
    with pytest.raises(AssertionError, match=r"on time=night,camera=B = 0\.400"):
        assert_recall_above(p, 0.9, label="defect", where={"time": "night"}, slice="camera")


@pytest.mark.parametrize("call, first", [
    (lambda p: assert_precision_above(p, 0.9, label="ok", slice="camera"),
     "precision(ok) on camera=B = 0.625 < 0.900 required [n=32, 95% CI"),
    (lambda p: assert_f1_above(p, 0.9, slice="camera"),
     "f1 (macro over classes) on camera=B = 0.670 < 0.900 required [n=40, 95% CI"),
    (lambda p: assert_fbeta_above(p, 0.9, beta=2, label="defect", where={"camera": "B"}),
     "f2(defect) on camera=B = 0.455 < 0.900 required [n=20, 95% CI"),
    (lambda p: assert_accuracy_above(p, 0.9, slice="camera"),
     "accuracy on camera=B = 0.700 < 0.900 required [n=40, 95% CI"),
    (lambda p: assert_balanced_accuracy_above(p, 0.9, where={"camera": "B"}),
     "balanced accuracy on camera=B = 0.700 < 0.900 required [n=40, 95% CI"),
    (lambda p: assert_recall_above(p, 0.9, per_class=True, slice="camera"),
     "recall(defect) on camera=B = 0.400 < 0.900 required [n=20, 95% CI"),
])
def test_every_gate_takes_slices(call, first):
    with recording() as record, pytest.raises(AssertionError) as info:
        call(cameras())
    assert str(info.value).startswith(first), str(info.value)
    assert all(MetricName.parse(m["name"]).slice for m in record["metrics"])


def test_passing_slices_record_and_raise_nothing():
    with recording() as record:
        assert_accuracy_above(cameras(miss=0), 0.9, slice="camera")
    assert [m["name"] for m in record["metrics"]] == [
        "accuracy{camera=A}", "accuracy{camera=B}", "accuracy{camera=C}"]
    assert all(r["verdict"] == PASSED for r in record["slices"][0]["rows"])


def test_bad_gate_arguments_fail_before_any_slice():
    with pytest.raises(ModelGateError, match="label='dog' is not a class"):
        assert_recall_above(cameras(), 0.9, label="dog", slice="camera")
    with pytest.raises(ModelGateError, match="threshold=90"):
        assert_recall_above(cameras(), 90, slice="camera")
    with pytest.raises(ModelGateError, match="needs per-sample attributes"):
        assert_recall_above(([0, 1, 1], [0, 1, 0]), 0.5, slice="camera")
    with pytest.raises(ModelGateError, match="min_slice_size must be"):
        assert_recall_above(cameras(), 0.5, slice="camera", min_slice_size=0)


def test_a_slice_without_the_gated_class_is_not_gated_and_said():
    y = [0] * 30 + [1] * 30 + [0] * 30
    cam = ["A"] * 60 + ["B"] * 30   # camera B shows no defects
    p = Predictions.from_arrays(y, y, class_names=["ok", "defect"], attributes={"camera": cam})
    with recording() as record:
        assert_recall_above(p, 0.9, label="defect", slice="camera")
    rows = record["slices"][0]["rows"]
    assert rows[-1]["slice"] == "camera=B" and rows[-1]["verdict"].startswith("not gated")
    assert rows[-1]["reason"].startswith("the test split (camera=B) has no images of class "
                                         "'defect'")


def test_every_slice_too_small_fails_clearly():
    with pytest.raises(AssertionError) as info:
        assert_recall_above(cameras(), 0.5, label="defect", slice="camera",
                            min_slice_size=50)
    assert str(info.value).splitlines() == [
        "no slice of the test set could gate recall(defect): camera=A n=40 < 50; "
        "camera=B n=40 < 50; camera=C n=40 < 50 (min_slice_size=50)",
        "  Fix: add test images to these slices, or lower min_slice_size (min_slice_size=1 "
        "or None gates every slice)"]


def test_min_slice_size_one_or_none_gates_small_slices():
    for size in (1, None):
        with pytest.raises(AssertionError, match=r"recall\(defect\) on camera=E = 0\.000"):
            assert_recall_above(cameras(miss=0, small=7), 0.9, label="defect",
                                slice="camera", min_slice_size=size)


def test_holm_makes_slices_that_each_clear_fail_together():
    # 19 of 20 defects found on each of three cameras: each slice alone clears 0.75 at
    # 95% (lower bound 0.764), but held to 98.3% (Holm over three) none does.
    p = cameras(miss=1, broken="ABC")
    assert_recall_above(p, 0.75, label="defect", where={"camera": "A"}, confidence=0.95)
    with recording() as record, pytest.raises(AssertionError) as info:
        assert_recall_above(p, 0.75, label="defect", slice="camera", confidence=0.95)
    message = str(info.value)
    assert message.splitlines()[0] == (
        "recall(defect) on camera=A: lower 98.3% bound 0.706 < 0.750 required (value 0.950, "
        "n=20, 95% CI 0.764-0.991, Holm over 3 slices)")
    assert "Holm's step-down over the 3 slices" in message
    rows = record["slices"][0]["rows"]
    assert record["slices"][0]["holm"] and all(r["verdict"] == FAILED for r in rows)
    assert rows[0]["level"] == pytest.approx(1 - 0.05 / 3)
    assert rows[0]["held_interval"][0] == pytest.approx(0.706, abs=1e-3)
    # The recorded interval stays the nominal 95% one.
    assert record["metrics"][0]["interval"][0] == pytest.approx(0.764, abs=1e-3)
    # Without confidence= the point values decide: all pass.
    assert_recall_above(p, 0.75, label="defect", slice="camera")


# --- baselines per slice ----------------------------------------------------------------

def _recorded(p, **kwargs):
    with recording() as record:
        assert_recall_above(p, 0.0, label="defect", slice="camera", **kwargs)
    return record


def test_a_slice_that_regressed_is_tested_on_its_own_samples():
    base = _recorded(cameras(miss=0))
    entry = baseline_entry(base)
    assert set(entry["metrics"]) == {"recall[defect]{camera=A}", "recall[defect]{camera=B}",
                                     "recall[defect]{camera=C}"}
    assert len(entry["samples"]) == 3   # each slice's own packed samples
    tolerance = parse_tolerance("0.02")
    # Camera B now misses 12 of its 20 defects: regressed, by McNemar on B's defects.
    (r,) = compare(_recorded(cameras(miss=12))["metrics"], entry, tolerance, alpha=0.05,
                   samples=_recorded(cameras(miss=12))["samples"])
    assert (r.name, r.verdict) == ("recall[defect]{camera=B}", "regressed")
    assert "McNemar exact (b=12, c=0)" in r.method and r.n == 20
    # Two misses: beyond the tolerance, but 20 defects cannot show it: inconclusive.
    current = _recorded(cameras(miss=2))
    (r,) = compare(current["metrics"], entry, tolerance, alpha=0.05,
                   samples=current["samples"])
    assert (r.name, r.verdict) == ("recall[defect]{camera=B}", "inconclusive")
    assert "McNemar exact (b=2, c=0)" in r.method


def test_a_slice_whose_samples_changed_is_compared_unpaired():
    entry = baseline_entry(_recorded(cameras(miss=0)))
    moved = cameras(miss=12)
    cams = np.array(moved.attributes["camera"]).copy()
    cams[[0, 40]] = cams[[40, 0]]   # one sample of A and one of B swap cameras
    p = Predictions.from_arrays(moved.y_true, moved.y_pred, class_names=moved.class_names,
                                attributes={"camera": cams})
    current = _recorded(p)
    regressions = compare(current["metrics"], entry, parse_tolerance("0.02"), alpha=0.05,
                          samples=current["samples"])
    assert [r.note for r in regressions] == [
        "the test set changed since the baseline: unpaired comparison"]


def test_junit_properties_carry_the_sliced_names():
    props = dict(junit_properties(_recorded(cameras()), "passed"))
    assert props["modelgate.recall[defect]{camera=B}"] == 0.4


# --- the report -----------------------------------------------------------------------------

def _escaped(p):
    """``p`` with camera A named ``<b>A</b>``: user data the report must escape."""
    cams = np.array(p.attributes["camera"])
    return Predictions.from_arrays(p.y_true, p.y_pred, class_names=p.class_names,
                                   attributes={"camera": np.where(cams == "A", "<b>A</b>",
                                                                  cams)})


def test_report_shows_a_slice_table_worst_first_with_regressions():
    entry = baseline_entry(_recorded(_escaped(cameras(miss=0))))
    record = _recorded(_escaped(cameras(miss=12)))
    regressions = compare(record["metrics"], entry, parse_tolerance("0.02"), alpha=0.05,
                          samples=record["samples"])
    tests = [{"nodeid": "t.py::test_cams", "outcome": "failed", "duration": 0.1,
              "record": record, "regressions": [r.to_dict() for r in regressions],
              "verdict": "regressed"}]
    ctx = build_context(tests, baseline_path="b.json", baseline_found=True,
                        updated_baseline=False, baseline={"t.py::test_cams": entry})
    (table,) = ctx["tests"][0]["slices"]
    assert table["title"] == "recall[defect] by camera"
    assert [(r["slice"], r["verdict"]) for r in table["rows"]] == [
        ("camera=B", "regressed"), ("camera=<b>A</b>", PASSED), ("camera=C", PASSED)]
    assert table["rows"][0]["value_shown"] == "0.400"
    json.dumps(ctx)
    html = render_html(ctx)
    assert "Slices: recall[defect] by camera" in html
    assert "camera=&lt;b&gt;A&lt;/b&gt;" in html and "camera=<b>A</b>" not in html
    assert '<td class="l regressed">regressed</td>' in html


def test_a_run_slices_its_test_set_and_keeps_its_images_for_thumbnails():
    import dataclasses

    from pytest_modelgate.data import ImageSet
    from pytest_modelgate.gate import current_gate

    from .test_assertions import Y_PRED, Y_TRUE, make_run

    images = np.arange(25 * 4, dtype=np.uint8).reshape(25, 2, 2)
    test_set = ImageSet(images, np.asarray(Y_TRUE), ("cat", "dog", "<b>eel</b>"),
                        name="test", attributes={"camera": ["A", "B"] * 12 + ["A"]})
    run = dataclasses.replace(make_run(Y_TRUE, Y_PRED), test_set=test_set)
    with recording() as record:
        assert_accuracy_above(run, 0.5, slice="camera", min_slice_size=None)
        kept = dict(current_gate().images)
    assert [m["run"] for m in record["metrics"]] == [run.label] * 2
    assert run.label in record["runs"]
    keys = [m["samples"] for m in record["metrics"]]
    assert len(set(keys)) == 2 and set(keys) <= set(kept)
    b = kept[record["metrics"][1]["samples"]]
    assert len(b) == 12 and b.ids == test_set.ids[1::2][:12]


def test_a_slice_short_of_min_support_fails_with_its_name():
    with pytest.raises(AssertionError) as info:
        assert_recall_above(cameras(), 0.1, label="defect", slice="camera", min_support=21)
    first = str(info.value).splitlines()[0]
    assert first.startswith("camera=A: insufficient evidence: defect (n=20) below "
                            "min_support=21")
    assert "  recall(defect): 3 of 3 gated slices fail\n" in str(info.value)


def test_where_values_are_recorded_as_text():
    p = Predictions.from_arrays([0, 1] * 30, [0, 1] * 30, attributes={"site": [1, 2] * 30})
    with recording() as record:
        assert_accuracy_above(p, 0.5, where={"site": np.int64(2)})
    assert record["slices"][0]["where"] == {"site": ["2"]}
    assert record["metrics"][0]["name"] == "accuracy{site=2}"
    json.dumps(record)


def test_slice_refuses_a_measurement_and_says_to_band_it():
    from pytest_modelgate.slices import select_slices

    lux = np.linspace(1.5, 900.25, 300)
    with pytest.raises(ModelGateError, match=r"slice='lux' would make 300 slices, one per "
                       r"value.*holds numbers.*a manifest column such as lux_band"):
        select_slices({"lux": lux}, slice="lux")
    with pytest.raises(ModelGateError, match="would make 101 slices"):
        select_slices({"site": np.arange(303) % 101}, slice="site")
    assert len(select_slices({"site": np.arange(300) % 3}, slice="site")) == 3


def test_a_pass_that_left_small_slices_out_warns_naming_them():
    y = np.r_[np.zeros(15, int), np.ones(15, int), np.ones(5, int)]
    pred = np.r_[np.zeros(15, int), np.ones(15, int), np.zeros(5, int)]   # B: all missed
    cams = ["A"] * 30 + ["B"] * 5
    p = Predictions.from_arrays(y, pred, attributes={"camera": cams})
    with pytest.warns(ModelGateWarning, match=r"passed on 1 gated slice\(s\) but did not gate "
                      r"camera=B n=5 < 20 \(min_slice_size=20\)"):
        assert_recall_above(p, 0.9, slice="camera")
