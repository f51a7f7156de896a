"""The HTML report and its JSON twin, written by a real run."""

from __future__ import annotations

import json

import pytest

from pytest_modelgate.options import OPTION_ENABLE, OPTION_REPORT_DIR

REPORT_FILE = """
from pytest_modelgate import assert_accuracy_above, assert_faster_than_scratch
from conftest import RACE

def test_race(finetune, digits, pretrained_tiny):
    run = finetune(pretrained_tiny, digits, epochs=8, freeze="backbone", lr=1e-2, **RACE)
    assert_accuracy_above(run, 0.5)
    assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=1.0)
"""


def test_report_and_json_hold_the_numbers(project):
    project.makepyfile(test_report=REPORT_FILE)
    result = project.runpytest(OPTION_ENABLE, f"{OPTION_REPORT_DIR}=out")
    result.assert_outcomes(passed=1)
    data = json.loads((project.path / "out" / "modelgate.json").read_text())
    (test,) = data["tests"]
    assert test["nodeid"] == "test_report.py::test_race" and test["outcome"] == "passed"
    accuracy = test["metrics"][0]
    runs = {r["id"]: r for r in test["runs"]}
    pretrained = runs["factory (pretrained, freeze=backbone)"]
    cm = pretrained["summary"]["confusion_matrix"]
    assert accuracy["value"] == pytest.approx(sum(cm[i][i] for i in range(3)) / sum(map(sum, cm)))
    assert accuracy["n"] == sum(map(sum, cm)) == 162
    assert [row["label"] for row in pretrained["summary"]["per_class"]] == ["zero", "one", "seven"]
    assert len(pretrained["history"]) == 8 and pretrained["seconds"] > 0
    (race,) = test["races"]
    assert race["scratch_run"] == "factory (scratch, freeze=none)"
    assert race["speedup"] == pytest.approx(race["scratch_seconds"] / race["pretrained_seconds"])

    html = (project.path / "out" / "modelgate.html").read_text()
    for text in ("Confusion matrix", "Pretrained versus scratch", "precision", "recall",
                 "s training in all", "backbone features computed once",
                 "test accuracy against training seconds, pretrained and scratch",
                 "pretrained: test accuracy", "scratch: test accuracy", "x faster than scratch",
                 f"{accuracy['value']:.3f}", "test_report.py::test_race"):
        assert text in html
    assert "<script" not in html and "http" not in html.replace("http://www.w3.org", "")
    assert not (project.path / "reports").exists()
