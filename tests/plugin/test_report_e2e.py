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


MISSING_CLASS_FILE = """
import pytest
from torch import nn
from pytest_modelgate import assert_accuracy_above, assert_recall_above
from pytest_modelgate.data import from_folder

def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))

@pytest.fixture(scope="module")
def run(finetune):
    return finetune(tiny, from_folder("hym"), epochs=2, freeze="none", lr=1e-2,
                    image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3)

def test_accuracy(run):
    assert_accuracy_above(run, 0.0)

def test_recall_of_bees(run):
    assert_recall_above(run, 0.5, label="bees")
"""


def test_a_val_split_without_bees_warns_and_gates_what_it_can(project):
    # Issue 22: val/ without bees/ loaded silently, then every gate failed on the report's
    # precision-recall chart with "no positive samples", naming neither split nor class.
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, classes in (("train", ("ants", "bees")), ("val", ("ants",))):
        for c, cls in enumerate(classes):
            folder = project.path / "hym" / split / cls
            folder.mkdir(parents=True)
            for i in range(12 if split == "train" else 6):
                pixels = rng.integers(0, 60, (16, 16, 3)) + np.eye(3, dtype=int)[c] * 180
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    project.makepyfile(test_hym=MISSING_CLASS_FILE)
    result = project.runpytest(OPTION_ENABLE, f"{OPTION_REPORT_DIR}=out", "-W",
                               "always::pytest_modelgate.ModelGateWarning")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*ModelGateError: the test split (val) has no images of class 'bees', so no figure*",
        "*ModelGateWarning: the val split has no images of class ?'bees'? that train has*",
    ])
    data = json.loads((project.path / "out" / "modelgate.json").read_text())
    passed = next(t for t in data["tests"] if t["nodeid"].endswith("test_accuracy"))
    (run,) = passed["runs"]
    assert run["summary"]["per_class"][1]["recall"] is None
    assert "no images of 'bees'" in run["pr_note"]
    html = (project.path / "out" / "modelgate.html").read_text()
    assert "precision-recall curve not drawn" in html and ">n/a<" in html
