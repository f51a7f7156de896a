"""Update, pass, regress and fail, update again, pass: all in one directory."""

from __future__ import annotations

import json

from pytest_modelgate.options import OPTION_ENABLE, OPTION_TOLERANCE, OPTION_UPDATE

TEMPLATE = """
from pytest_modelgate import assert_accuracy_above, assert_recall_above
from conftest import GRAY

def test_gate(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs={epochs}, freeze="none", lr={lr}, **GRAY)
    assert_accuracy_above(run, 0.0)
    assert_recall_above(run, 0.0, label="seven")
"""
GOOD = TEMPLATE.format(epochs=3, lr=1e-2)
WORSE = TEMPLATE.format(epochs=1, lr=1e-3)
NODE = "test_gate.py::test_gate"


def _baseline(project):
    return json.loads((project.path / "modelgate-baseline.json").read_text())


def test_baseline_workflow(project):
    project.makepyfile(test_gate=GOOD)

    # 1. Record a baseline.
    result = project.runpytest(OPTION_UPDATE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["baseline written: *modelgate-baseline.json"])
    doc = _baseline(project)
    good_accuracy = doc["tests"][NODE]["metrics"]["accuracy"]["value"]
    assert good_accuracy > 0.85
    assert set(doc["tests"][NODE]["metrics"]) == {"accuracy", "recall[seven]"}
    text = (project.path / "modelgate-baseline.json").read_text()
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"

    # 2. Nothing changed: passes against it.
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["compared with baseline *modelgate-baseline.json"])

    # 3. A worse model: the gates' own thresholds pass, the baseline fails the test. (The
    # tolerance alone decides here; significance has its own tests in test_verdicts_e2e.)
    project.makepyfile(test_gate=WORSE)
    result = project.runpytest(OPTION_ENABLE, "--modelgate-significance=off")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r"2 metrics regressed beyond tolerance against baseline "
        r".*modelgate-baseline.json:",
        r" +metric +baseline +current +allowed",
        rf" +accuracy +{good_accuracy:.4f} +0\.\d{{4}} +>= {good_accuracy - 0.02:.4f}",
        r" +recall\[seven\] +1\.0000 +0\.\d{4} +>= 0\.9800",
        r"If the change is intended, rerun with --modelgate-update-baseline and commit "
        r"modelgate-baseline.json; to allow more noise, raise --modelgate-tolerance.",
    ])
    assert _baseline(project)["tests"][NODE]["metrics"]["accuracy"]["value"] == good_accuracy
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    assert report["tests"][0]["regressions"][0]["name"] == "accuracy"

    # A tolerance wide enough lets the same drop through.
    result = project.runpytest(OPTION_ENABLE, f"{OPTION_TOLERANCE}=1.0",
                               "--modelgate-significance=off")
    result.assert_outcomes(passed=1)

    # 4. Accept the new figures on purpose.
    result = project.runpytest(OPTION_UPDATE)
    result.assert_outcomes(passed=1)
    assert _baseline(project)["tests"][NODE]["metrics"]["accuracy"]["value"] < good_accuracy

    # 5. And the worse model now passes against its own baseline.
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=1)


def test_baseline_path_option_and_other_tests_kept(project):
    project.makepyfile(test_gate=GOOD)
    (project.path / "gates").mkdir()
    result = project.runpytest(OPTION_UPDATE, "--modelgate-baseline=gates/base.json")
    result.assert_outcomes(passed=1)
    doc = json.loads((project.path / "gates" / "base.json").read_text())
    doc["tests"]["other.py::test_old"] = {
        "metrics": {"accuracy": {"value": 0.5, "n": 10, "higher_is_better": True}}}
    (project.path / "gates" / "base.json").write_text(json.dumps(doc))
    result = project.runpytest(OPTION_UPDATE, "--modelgate-baseline=gates/base.json")
    result.assert_outcomes(passed=1)
    doc = json.loads((project.path / "gates" / "base.json").read_text())
    assert set(doc["tests"]) == {NODE, "other.py::test_old"}
    assert not (project.path / "modelgate-baseline.json").exists()
