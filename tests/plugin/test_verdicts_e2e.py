"""Verdicts of the regression gate: passed, failed, regressed, inconclusive; significance on
and off; a changed test set; another environment; metrics in JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np

from pytest_modelgate.options import OPTION_ENABLE, OPTION_UPDATE

from .conftest import PROJECT_INI

# Predictions from a file, so one gate test (one node id) sees a baseline model and then
# a changed one: deterministic, and no training.
ARRAY_GATE = """
import json, pathlib
import numpy as np, pytest
from pytest_modelgate import assert_accuracy_above

@pytest.mark.modelgate
def test_gate():
    d = json.loads(pathlib.Path(__file__).with_name("preds.json").read_text())
    assert_accuracy_above((np.array(d["y"]), np.array(d["pred"])), d.get("threshold", 0.0))
"""


def write_predictions(project, y, pred, threshold=0.0):
    (project.path / "preds.json").write_text(json.dumps(
        {"y": [int(v) for v in y], "pred": [int(v) for v in pred], "threshold": threshold}))


def flipped(y, k):
    pred = np.array(y).copy()
    pred[:k] = 1 - pred[:k]
    return pred


def report(project):
    return json.loads((project.path / "reports" / "modelgate.json").read_text())


def test_regressed_inconclusive_and_passed(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    y = np.repeat([0, 1], 500)
    write_predictions(project, y, y)
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)

    # 100 of 1,000 samples newly wrong: a drop no seed explains. Red.
    write_predictions(project, y, flipped(y, 100))
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*1 metric regressed beyond tolerance against baseline .*, significantly:",
        r" +metric +baseline +current +allowed +verdict +p +level",
        r" +accuracy +1\.0000 +0\.9000 +>= 0\.9800 +regressed +0\.000\d +0\.0500",
        r" +accuracy: McNemar exact \(b=100, c=0\), and paired bootstrap .*",
    ])
    result.stdout.fnmatch_lines([
        "verdicts: 1 regressed (significance 0.05, Holm-corrected per test)",
        "  REGRESSED  test_arrays.py::test_gate: accuracy 1.000 -> 0.900 (p=0.0005)",
    ])
    assert report(project)["tests"][0]["verdict"] == "regressed"

    # 25 newly wrong: beyond the 0.02 tolerance, but 1,000 samples cannot show that it is
    # more than 0.02. A warning, not a red build.
    write_predictions(project, y, flipped(y, 25))
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*ModelGateWarning: test_arrays.py::test_gate: inconclusive: 1 metric below "
        "tolerance against baseline *, but not significantly (inconclusive):",
        "*accuracy: this drop would need about * test samples to show it exceeds the "
        "tolerance (has 1000)",
        "verdicts: 1 inconclusive (significance 0.05, Holm-corrected per test)",
        "  INCONCLUSIVE  test_arrays.py::test_gate: accuracy 1.000 -> 0.975 (p=*)",
    ])
    doc = report(project)
    assert doc["tests"][0]["verdict"] == "inconclusive"
    assert doc["tests"][0]["regressions"][0]["needed"] > 1000

    # Significance off: the tolerance alone decides, as the gate did before.
    result = project.runpytest(OPTION_ENABLE, "--modelgate-significance=off")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "verdicts: 1 regressed (significance off: every drop beyond tolerance regresses)"])

    # The same from the ini file.
    project.makeini(PROJECT_INI + "modelgate_significance = off\n")
    project.runpytest(OPTION_ENABLE).assert_outcomes(failed=1)

    # Within tolerance: passed.
    write_predictions(project, y, flipped(y, 10))
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  PASSED  test_arrays.py::test_gate"])


def test_a_failed_threshold_is_its_own_verdict(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    y = np.repeat([0, 1], 50)
    write_predictions(project, y, flipped(y, 40), threshold=0.9)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "verdicts: 1 failed",
        "  FAILED  test_arrays.py::test_gate: accuracy = 0.600 < 0.900 required *",
    ])
    assert report(project)["tests"][0]["verdict"] == "failed"
    # The section starts on its own line, right under its rule.
    lines = result.stdout.lines
    rule = next(i for i, line in enumerate(lines) if "= modelgate =" in line)
    assert lines[rule + 1] == "1 gate test recorded 1 metric"


def test_a_changed_test_set_is_compared_unpaired(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    y = np.repeat([0, 1], 500)
    write_predictions(project, y, y)
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    other = np.tile([0, 1], 500)  # the same classes and size, other samples
    write_predictions(project, other, flipped(other, 100))
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*accuracy: z test on two proportions (unpaired); the test set changed since the "
        "baseline: unpaired comparison",
    ])


def test_bad_significance_options_are_usage_errors(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    for arg, message in (
        ("--modelgate-significance=0.7", "the significance level must be in (0, 0.5)"),
        ("--modelgate-significance=5%", "'5%' is not a significance level like 0.05"),
        ("--modelgate-baseline-env=cpu", "'cpu' is not one of same, any"),
    ):
        result = project.runpytest(OPTION_ENABLE, arg)
        assert result.ret == 4
        assert message in result.stderr.str()


def test_metrics_and_verdicts_go_to_junit_xml(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    y = np.repeat([0, 1], 50)
    write_predictions(project, y, flipped(y, 5))
    result = project.runpytest(OPTION_ENABLE, "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    case = ET.parse(project.path / "junit.xml").getroot().find(".//testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props == {"modelgate.accuracy": "0.95", "modelgate.verdict": "passed"}


GATE = """
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_gate(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=2, freeze="none", lr=1e-2, device="cpu", **GRAY)
    assert_accuracy_above(run, 0.0)
"""


def test_a_baseline_from_another_device_class_is_not_compared(project):
    project.makepyfile(test_gate=GATE)
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    path = project.path / "modelgate-baseline.json"
    doc = json.loads(path.read_text())
    entry = doc["tests"]["test_gate.py::test_gate"]
    assert entry["env"]["device"] == "cpu" and entry["env"]["torch"].isdigit()
    entry["env"]["device"] = "cuda"
    entry["metrics"]["accuracy"]["value"] = 1.0  # would regress if compared
    entry["samples"] = {}
    entry["metrics"]["accuracy"].pop("samples")
    path.write_text(json.dumps(doc))

    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*ModelGateWarning: test_gate.py::test_gate: not compared with the baseline: it was "
        "recorded on cuda, and this run is on cpu; *Keep a baseline per environment "
        "(--modelgate-baseline=modelgate-baseline.cpu.json, then --modelgate-update-baseline "
        "there), or compare anyway with --modelgate-baseline-env=any",
    ])
    assert "not compared with the baseline" in report(project)["tests"][0]["baseline_note"]
    # Compared on request.
    result = project.runpytest(OPTION_ENABLE, "--modelgate-baseline-env=any")
    assert report(project)["tests"][0]["baseline_note"] is None
    assert "not compared" not in result.stdout.str()


# A race's speedup as assert_faster_than_scratch records it when scratch was stopped at the
# verdict (a lower bound), without the minute a real race takes.
BOUND_GATE = """
import json, pathlib
import pytest
from pytest_modelgate.assertions import _record_metric

@pytest.mark.modelgate
def test_race():
    value = json.loads(pathlib.Path(__file__).with_name("speedup.json").read_text())
    _record_metric("speedup", value, 2.0, True, n=10, lower_bound=True)
"""


def test_a_stopped_races_speedup_is_a_lower_bound_everywhere(project):
    project.makepyfile(test_race=BOUND_GATE)
    (project.path / "speedup.json").write_text("2.53")
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    doc = json.loads((project.path / "modelgate-baseline.json").read_text())
    assert doc["tests"]["test_race.py::test_race"]["metrics"]["speedup"]["lower_bound"] is True

    # The bound moved with the machine's timing (2.53 then 2.31): not a regression.
    (project.path / "speedup.json").write_text("2.311625")
    result = project.runpytest(OPTION_ENABLE, "--modelgate-tolerance=speedup=5%",
                               "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  PASSED  test_race.py::test_race"])
    case = ET.parse(project.path / "junit.xml").getroot().find(".//testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["modelgate.speedup"] == ">2.311625"
    (row,) = report(project)["tests"][0]["metrics"]
    assert row["lower_bound"] is True and row["baseline_lower_bound"] is True
    assert row["shown"] == ">2.312" and row["baseline_shown"] == ">2.530"
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "&gt;2.312" in html


def test_a_gate_failing_its_floor_still_shows_its_baseline_comparison(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    y = np.repeat([0, 1], 500)
    write_predictions(project, y, flipped(y, 157))  # accuracy 0.843
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    write_predictions(project, y, flipped(y, 280), threshold=0.8)  # 0.720, under its floor
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "verdicts: 1 failed (significance 0.05, Holm-corrected per test)",
        "  FAILED  test_arrays.py::test_gate: accuracy = 0.720 < 0.800 required *; against "
        "the baseline: accuracy 0.843 -> 0.720 (p=*)",
    ])
    test = report(project)["tests"][0]
    assert test["verdict"] == "failed"
    assert [r["name"] for r in test["regressions"]] == ["accuracy"]


def test_a_configuration_error_is_its_own_verdict(project):
    project.makepyfile(test_arrays=ARRAY_GATE, test_config="""
        import numpy as np
        import pytest
        from pytest_modelgate import assert_accuracy_above

        @pytest.mark.modelgate
        def test_typo():
            assert_accuracy_above((np.array([0, 1]), np.array([0, 1])), 300)
    """)
    y = np.repeat([0, 1], 50)
    write_predictions(project, y, flipped(y, 40), threshold=0.9)
    result = project.runpytest(OPTION_ENABLE, "--junitxml=junit.xml")
    result.assert_outcomes(failed=2)  # pytest's own count: an exception in the test body
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "verdicts: 1 error, 1 failed",
        "  ERROR   test_config.py::test_typo: threshold must be a number in [0, 1], got 300",
        "  FAILED  test_arrays.py::test_gate: accuracy = 0.600 < 0.900 required *",
    ])
    doc = report(project)
    assert {t["nodeid"]: t["verdict"] for t in doc["tests"]} == {
        "test_config.py::test_typo": "error", "test_arrays.py::test_gate": "failed"}
    assert doc["verdicts"] == [{"verdict": "error", "count": 1},
                               {"verdict": "failed", "count": 1}]
    cases = ET.parse(project.path / "junit.xml").getroot().iter("testcase")
    verdicts = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
                ["modelgate.verdict"] for c in cases}
    assert verdicts == {"test_typo": "error", "test_gate": "failed"}
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert '<span class="badge error">error</span>' in html
