from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_modelgate import assert_accuracy_above
from pytest_modelgate.assertions import recording
from pytest_modelgate.report.context import build_context
from pytest_modelgate.report.html import render_html, write_reports

from .test_assertions import Y_PRED, Y_TRUE, make_run


def _context():
    with recording() as record:
        assert_accuracy_above(make_run(Y_TRUE, Y_PRED), 0.5)
    tests = [{"nodeid": "test_x.py::test_<script>", "outcome": "passed", "duration": 1.5,
              "record": record, "regressions": []}]
    return build_context(tests, baseline_path="modelgate-baseline.json", baseline_found=False,
                         updated_baseline=False)


def test_context_holds_matrix_and_curves():
    ctx = _context()
    (test,) = ctx["tests"]
    (run,) = test["runs"]
    assert run["summary"]["confusion_matrix"] == [[8, 2, 0], [0, 10, 0], [0, 2, 3]]
    assert run["matrix"][2][1] == {"count": 2, "shade": 0.4, "diagonal": False}
    assert run["curve_test"] == "0.0,60.0 320.0,12.0"
    assert ctx["counts"] == {"passed": 1}
    json.dumps(ctx)  # JSON-ready throughout


def test_html_escapes_user_data_and_is_self_contained():
    html = render_html(_context())
    assert "<b>eel</b>" not in html and "&lt;b&gt;eel&lt;/b&gt;" in html
    assert "test_&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "Confusion matrix" in html and "No baseline at modelgate-baseline.json" in html


def test_write_reports(tmp_path):
    html_path, json_path = write_reports(_context(), tmp_path / "reports")
    assert html_path.read_text().startswith("<!DOCTYPE html>")
    data = json.loads(json_path.read_text())
    assert data["tests"][0]["metrics"][0]["value"] == np.mean(np.array(Y_TRUE) == np.array(Y_PRED))


def test_a_suite_of_20_regressed_gates_with_thumbnails_stays_under_2_mb():
    from pytest_modelgate.baseline import Regression
    from pytest_modelgate.data import ImageSet
    from pytest_modelgate.report.context import THUMBS_PER_SIDE, changed_samples
    from pytest_modelgate.significance import pack_samples, samples_key

    # Noise is the worst case for image compression: 64x64 colour, 300 test images.
    rng = np.random.default_rng(0)
    n, names = 300, [f"class_{i}" for i in range(10)]
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    test_set = ImageSet(images, rng.integers(0, 10, n), tuple(names), name="test")
    y = test_set.labels
    base = pack_samples(y, y, names, test_set.ids)
    worse = y.copy()
    worse[:60] = (worse[:60] + 1) % 10
    current = pack_samples(y, worse, names, test_set.ids)
    bkey, ckey = samples_key(base), samples_key(current)
    regression = Regression("accuracy", 1.0, 0.8, 0.98, samples=(bkey, ckey))
    changes = changed_samples([regression], {bkey: base}, {ckey: current}, {ckey: test_set})
    assert changes["now_wrong"]["count"] == 60
    assert len(changes["now_wrong"]["shown"]) == THUMBS_PER_SIDE
    assert changes["now_wrong"]["shown"][0]["src"].startswith("data:image/jpeg;base64,")

    run = make_run([i % 3 for i in range(n)], [i % 3 for i in range(n)],
                   accuracies=[0.1 * i for i in range(1, 11)])
    with recording() as record:
        assert_accuracy_above(run, 0.5)
    tests = [{"nodeid": f"test_gates.py::test_{i}", "outcome": "failed", "duration": 1.0,
              "record": record, "regressions": [regression.to_dict()], "verdict": "regressed",
              "reason": "accuracy 1.000 -> 0.800", "changes": changes} for i in range(20)]
    html = render_html(build_context(tests, baseline_path="b.json", baseline_found=True,
                                     updated_baseline=False))
    print(f"report of 20 regressed gate tests: {len(html.encode())} bytes")
    assert len(html.encode()) < 2_000_000
    assert html.count("<img ") == 20 * THUMBS_PER_SIDE
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_the_report_names_the_device_model_precision_and_layout():
    import dataclasses

    run = make_run(Y_TRUE, Y_PRED)
    gpu = dataclasses.replace(run, device="cuda:1", config={
        "image_size": 8, "device_name": "NVIDIA H200", "autocast_dtype": "bfloat16",
        "channels_last": True, "compile": True})
    cpu = dataclasses.replace(run, config={"image_size": 8, "device_name": "AMD EPYC 9654",
                                           "autocast_dtype": None, "channels_last": False})
    for source, text in ((gpu, "Device cuda:1 (NVIDIA H200), autocast bfloat16, channels_last, "
                               "torch.compile; seed"),
                         (cpu, "Device cpu (AMD EPYC 9654), float32, channels first; seed")):
        with recording() as record:
            assert_accuracy_above(source, 0.5)
        tests = [{"nodeid": "test_x.py::test_y", "outcome": "passed", "duration": 1.0,
                  "record": record, "regressions": []}]
        html = render_html(build_context(tests, baseline_path="b.json", baseline_found=False,
                                         updated_baseline=False))
        assert text in html


def _report_of(run, tmp_path):
    """The HTML and the JSON run entry of a report holding one gate test on ``run``."""
    with recording() as record:
        assert_accuracy_above(run, 0.5)
    tests = [{"nodeid": "test_x.py::test_y", "outcome": "passed", "duration": 1.0,
              "record": record, "regressions": []}]
    html_path, json_path = write_reports(
        build_context(tests, baseline_path="b.json", baseline_found=False,
                      updated_baseline=False), tmp_path)
    (entry,) = json.loads(json_path.read_text())["tests"][0]["runs"]
    return html_path.read_text(), entry


@pytest.mark.parametrize(("device", "config", "text"), [
    ("cpu", {"workers": 2, "backend": "gloo", "ranks": "spawn"},
     "Device cpu &middot; 2 ranks (gloo, spawn); seed"),
    ("cuda:0", {"device_name": "NVIDIA H200", "autocast_dtype": "bfloat16",
                "channels_last": True, "workers": 8, "backend": "nccl", "ranks": "torchrun"},
     "Device cuda:0 (NVIDIA H200) &middot; 8 ranks (nccl, torchrun), autocast bfloat16, "
     "channels_last; seed"),
    ("cuda:0", {"workers": 4, "backend": "nccl", "ranks": "ray", "sync_batchnorm": True},
     "Device cuda:0 &middot; 4 ranks (nccl, ray, SyncBatchNorm); seed"),
    ("cuda:0", {"workers": 2, "backend": "MirroredStrategy", "ranks": "here"},
     "Device cuda:0 &middot; 2 ranks (MirroredStrategy); seed"),
], ids=["gloo-spawn", "nccl-torchrun", "ray-syncbn", "keras"])
def test_a_data_parallel_run_shows_its_world_next_to_the_device(tmp_path, device, config,
                                                                   text):
    import dataclasses

    run = dataclasses.replace(make_run(Y_TRUE, Y_PRED), device=device,
                              config={"image_size": 8, "batch_size": 64, **config})
    html, entry = _report_of(run, tmp_path)
    assert text in html
    # The JSON twin keeps the facts themselves for machines, and the same words.
    assert {k: entry["config"][k] for k in config} == config
    assert entry["device"] == device and entry["world"] in text


@pytest.mark.parametrize("config", [{}, {"workers": 1, "sync_batchnorm": False}],
                         ids=["no-workers-key", "workers-1"])
def test_a_one_process_run_reports_as_before(tmp_path, config):
    import dataclasses

    run = dataclasses.replace(make_run(Y_TRUE, Y_PRED),
                              config={"image_size": 8, "device_name": "AMD EPYC 9654",
                                      **config})
    html, entry = _report_of(run, tmp_path)
    assert "Device cpu (AMD EPYC 9654); seed" in html
    assert "ranks" not in html and "&middot; 1" not in html
    assert "world" not in entry and entry["device"] == "cpu"


def test_an_fbeta_gate_is_reported_and_compared_like_f1():
    from pytest_modelgate import assert_fbeta_above
    from pytest_modelgate.specs import metric_spec

    with recording() as record:
        assert_fbeta_above(make_run(Y_TRUE, Y_PRED), 0.5, beta=2, label="cat")
    (metric,) = record["metrics"]
    assert metric["name"] == "f2[cat]" and metric["value"] == pytest.approx(5 * 8 / (4 * 10 + 8))
    assert metric_spec("f2[cat]").higher_is_better and metric_spec("f0.5[macro]").name == "f0.5"
    tests = [{"nodeid": "test_x.py::test_y", "outcome": "passed", "duration": 1.0,
              "record": record, "regressions": []}]
    html = render_html(build_context(tests, baseline_path="b.json", baseline_found=False,
                                     updated_baseline=False))
    assert "f2[cat]" in html


def test_the_race_chart_starts_each_curve_at_its_first_measured_point():
    """No point at (0 s, accuracy 0) that no run measured: a pretrained model does not
    start at accuracy 0, and the chart must not say it does."""
    from pytest_modelgate import assert_faster_than_scratch
    from pytest_modelgate.report.context import chart

    from .test_assertions import _racer

    run = make_run(Y_TRUE, Y_PRED, accuracies=(0.7, 0.9), scratch=_racer((0.3, 0.6, 0.92), 5.0))
    with recording() as record:
        assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=2, full_race=True)
    tests = [{"nodeid": "t.py::t", "outcome": "passed", "duration": 1.0, "record": record,
              "regressions": []}]
    ctx = build_context(tests, baseline_path="b.json", baseline_found=False,
                        updated_baseline=False)
    drawn = ctx["tests"][0]["races"][0]["chart"]
    measured = [[(1.0, 0.7), (2.0, 0.9)], [(5.0, 0.3), (10.0, 0.6), (15.0, 0.92)]]
    expected = chart([{"label": "", "colour": "", "points": p} for p in measured],
                     x_label="", y_label="", y_range=(0.0, 1.0))
    assert [s["dots"] for s in drawn["series"]] == [s["dots"] for s in expected["series"]]


def test_a_count_metric_shows_as_a_whole_number():
    from types import SimpleNamespace

    from pytest_modelgate.baseline import Regression
    from pytest_modelgate.plugin import _junit_properties

    metric = {"name": "leaked_pairs", "value": 3, "threshold": 0, "passed": False, "n": 40,
              "higher_is_better": False}
    tests = [{"nodeid": "t.py::t", "outcome": "failed", "duration": 1.0,
              "record": {"metrics": [metric], "runs": {}, "races": []}, "regressions": []}]
    baseline = {"t.py::t": {"metrics": {"leaked_pairs": {"value": 0}}}}
    ctx = build_context(tests, baseline_path="b.json", baseline_found=True,
                        updated_baseline=False, baseline=baseline)
    html = render_html(ctx)
    assert "<td>3</td>" in html and "3.000" not in html and "+3.000" not in html
    assert "<td>0</td>" in html and ">+3</td>" in html  # baseline 0, delta +3
    # The baseline comparison table: whole numbers too, never 0.0000 or 3.0000.
    tests[0]["regressions"] = [Regression("leaked_pairs", 0.0, 3.0, 0.0).to_dict()]
    html = render_html(build_context(tests, baseline_path="b.json", baseline_found=True,
                                     updated_baseline=False, baseline=baseline))
    assert "<td>0</td><td>3</td><td>0</td>" in html and "0.0000" not in html
    assert ">+3 regressed</td>" in html
    item = SimpleNamespace(user_properties=[])
    _junit_properties(item, {"metrics": [metric]}, "failed")
    assert item.user_properties[0] == ("modelgate.leaked_pairs", 3)
    assert type(item.user_properties[0][1]) is int


def _context_of(run):
    with recording() as record:
        assert_accuracy_above(run, 0.0)
    tests = [{"nodeid": "test_x.py::test_gate", "outcome": "passed", "duration": 1.0,
              "record": record, "regressions": []}]
    return build_context(tests, baseline_path="modelgate-baseline.json", baseline_found=False,
                         updated_baseline=False)


def test_a_class_missing_from_the_test_split_shows_as_na_and_its_curve_as_a_note(tmp_path):
    from .test_assertions import _no_bees_run

    ctx = _context_of(_no_bees_run())
    (run,) = ctx["tests"][0]["runs"]
    assert "pr_chart" not in run
    bees = run["per_class"][1]
    assert (bees["recall"], bees["recall_ci"], bees["f1"], bees["f1_ci"]) == (None,) * 4
    html = render_html(ctx)
    assert ("precision-recall curve not drawn: the test split (val) has no images of "
            "&#39;bees&#39;") in html
    assert html.count(">n/a<") == 2                    # bees' recall and F1
    data = json.loads(write_reports(ctx, tmp_path)[1].read_text())
    assert data["tests"][0]["runs"][0]["summary"]["per_class"][1]["recall"] is None


def test_a_chart_that_cannot_be_drawn_is_left_out_with_a_note():
    # A record whose curve cannot be drawn (here: no operating point) costs the chart, never
    # the report of every gate of the session.
    ctx = _context_of(make_run(Y_TRUE, Y_PRED))
    record = ctx["tests"][0]["runs"][0]
    broken = dict(record, pr_curve={"positive": "dog", "points": [[1.0, 0.5]],
                                    "operating_point": None})
    tests = [{"nodeid": "t.py::t", "outcome": "passed",
              "record": {"metrics": [], "runs": {"r": broken}, "races": []}}]
    ctx = build_context(tests, baseline_path="b.json", baseline_found=False,
                        updated_baseline=False)
    (run,) = ctx["tests"][0]["runs"]
    assert "pr_chart" not in run
    assert run["chart_notes"][0].startswith("precision-recall curve of dog not drawn: ")
    assert "precision-recall curve of dog not drawn: " in render_html(ctx)


def test_a_class_never_predicted_shows_na_precision():
    run = make_run([0, 0, 1, 1, 2], [0, 0, 1, 1, 1])
    (view,) = _context_of(run)["tests"][0]["runs"]
    eel = view["per_class"][2]
    assert (eel["precision"], eel["precision_ci"], eel["recall"]) == (None, None, 0.0)
    assert ">n/a<" in render_html(_context_of(run))


# --- a baseline over several seeds (--modelgate-baseline-seeds) ---------------------------

def _seeded_context(nodeid="test_x.py::test_<seeds>", inconclusive_fails=False):
    from pytest_modelgate.baseline import Regression
    from pytest_modelgate.specs import INCONCLUSIVE

    with recording() as record:
        assert_accuracy_above(make_run(Y_TRUE, Y_PRED), 0.5)  # accuracy 0.84
    regression = Regression("accuracy", 0.92, 0.84, 0.90, verdict=INCONCLUSIVE, p=0.1,
                            level=0.05, seeds=3, seed_sd=0.02)
    tests = [{"nodeid": nodeid, "outcome": "passed", "duration": 1.0, "record": record,
              "regressions": [regression.to_dict()], "verdict": INCONCLUSIVE,
              "reason": regression.change(), "baseline_seeds": 3}]
    baseline = {nodeid: {"replicas": 3, "metrics": {"accuracy": {
        "value": 0.92, "seeds": [0.90, 0.92, 0.94], "n": 25, "higher_is_better": True}}}}
    return build_context(tests, baseline_path="b.json", baseline_found=True,
                         updated_baseline=False, baseline=baseline,
                         session={"significance": 0.05,
                                  "inconclusive_fails": inconclusive_fails})


def test_a_baseline_over_seeds_shows_its_band_in_every_table_and_the_json(tmp_path):
    ctx = _seeded_context()
    (test,) = ctx["tests"]
    assert test["baseline_seeds"] == 3
    (row,) = test["metrics"]
    assert row["baseline_shown"] == "0.920 ± 0.020"
    assert row["baseline_seeds"] == 3 and row["baseline_sd"] == pytest.approx(0.02)
    (reg,) = test["regressions"]
    assert reg["baseline_shown"] == "0.9200 ± 0.0200"
    assert reg["seeds"] == 3 and reg["seed_sd"] == 0.02
    assert test["reason"] == "accuracy 0.840, baseline 0.920 ± 0.020 over 3 seeds"
    data = json.loads(write_reports(ctx, tmp_path)[1].read_text())
    assert data["tests"][0]["regressions"][0]["baseline_shown"] == "0.9200 ± 0.0200"
    html = render_html(ctx)
    assert '<td>0.9200 ± 0.0200 <span class="ci">over 3 seeds</span></td>' in html
    assert "0.920 ± 0.020 <span class=\"ci\">(3 seeds)</span>" in html
    assert "(baseline over 3 seeds)" in html
    assert "test_&lt;seeds&gt;" in html and "test_<seeds>" not in html  # still escaped


def test_the_accuracy_chart_draws_the_baseline_band_over_seeds():
    from pytest_modelgate.report.context import PLOT, accuracy_band

    (run,) = _seeded_context()["tests"][0]["runs"]
    (band,) = run["accuracy_chart"]["bands"]
    assert band["label"] == "baseline accuracy over 3 seeds: mean ± sd (0.920 ± 0.020)"
    h = run["accuracy_chart"]["plot"]["h"]
    # y from 0 to 1: the band spans 0.90 to 0.94 of the plot's height.
    assert band["y"] == pytest.approx(PLOT["top"] + h * (1 - 0.94), abs=0.1)
    assert band["height"] == pytest.approx(h * 0.04, abs=0.2)
    html = render_html(_seeded_context())
    assert '<rect class="band"' in html
    assert "baseline accuracy over 3 seeds: mean ± sd (0.920 ± 0.020)</span>" in html
    # One seed, or no accuracy gate: no band.
    assert accuracy_band({"metrics": {"accuracy": {"value": 0.9}}}) is None
    assert accuracy_band({"metrics": {"mcc": {"value": 0.9, "seeds": [0.8, 0.9]}}}) is None
    assert accuracy_band(None) is None
    (plain,) = _context()["tests"][0]["runs"]
    assert plain["accuracy_chart"]["bands"] == []
    assert '<rect class="band"' not in render_html(_context())


def test_an_inconclusive_verdict_that_fails_the_build_turns_the_report_red():
    warned = render_html(_seeded_context())
    assert '<section id="verdict" class="amber">' in warned
    failing = render_html(_seeded_context(inconclusive_fails=True))
    assert '<section id="verdict" class="red">' in failing
    assert "which fails the build too (--modelgate-inconclusive=fail)" in failing
    assert '<span class="badge inconclusive">inconclusive</span>' in failing
