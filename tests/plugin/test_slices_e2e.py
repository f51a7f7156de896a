"""Slices as users run them: ``slice="camera"`` under ``--modelgate``, the baseline keeps
each slice, a later run whose camera B got worse regresses naming that slice, and the
report (and its rebuild by ``python -m pytest_modelgate merge``) shows the slice table."""

from __future__ import annotations

import json
import sys

import numpy as np

from pytest_modelgate.options import OPTION_ENABLE, OPTION_UPDATE

# Predictions and cameras from a file, so one gate test sees a baseline model and then a
# changed one: deterministic, and no training.
SLICED_GATE = """
import json, pathlib
import pytest
from pytest_modelgate import Predictions, assert_recall_above

@pytest.mark.modelgate
def test_cameras():
    d = json.loads(pathlib.Path(__file__).with_name("preds.json").read_text())
    p = Predictions.from_arrays(d["y"], d["pred"], class_names=["ok", "defect"],
                                attributes={"camera": d["camera"]})
    assert_recall_above(p, 0.5, label="defect", slice="camera")
"""


def write_predictions(project, missed_on_b):
    y = np.tile(np.repeat([0, 1], 30), 3)
    camera = np.repeat(["A", "B", "C"], 60)
    pred = y.copy()
    b_defects = np.flatnonzero((camera == "B") & (y == 1))
    pred[b_defects[:missed_on_b]] = 0
    (project.path / "preds.json").write_text(json.dumps(
        {"y": y.tolist(), "pred": pred.tolist(), "camera": camera.tolist()}))


def slice_rows(doc):
    (table,) = doc["tests"][0]["slices"]
    return [(r["slice"], r["verdict"]) for r in table["rows"]]


def test_a_worse_slice_regresses_by_name(project):
    project.makepyfile(test_cams=SLICED_GATE)
    write_predictions(project, 0)
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    baseline = json.loads((project.path / "modelgate-baseline.json").read_text())
    entry = baseline["tests"]["test_cams.py::test_cameras"]
    assert sorted(entry["metrics"]) == ["recall[defect]{camera=A}",
                                        "recall[defect]{camera=B}",
                                        "recall[defect]{camera=C}"]
    assert len(entry["samples"]) == 3

    # Camera B now misses 12 of its 30 defects: still above the 0.5 floor, but a drop
    # its own samples show beyond doubt.
    write_predictions(project, 12)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*1 metric regressed beyond tolerance against baseline .*, significantly:",
        r" +recall\[defect\]\{camera=B\} +1\.0000 +0\.6000 +>= 0\.9800 +regressed .*",
        r" +recall\[defect\]\{camera=B\}: McNemar exact \(b=12, c=0\), .*",
    ])
    doc = json.loads((project.path / "reports" / "modelgate.json").read_text())
    assert slice_rows(doc) == [("camera=B", "regressed"), ("camera=A", "passed"),
                               ("camera=C", "passed")]
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "Slices: recall[defect] by camera" in html

    # The JSON rebuilds the same table.
    merged = project.run(sys.executable, "-m", "pytest_modelgate", "merge", "reports",
                         "--out", "merged")
    assert merged.ret == 1
    rebuilt = json.loads((project.path / "merged" / "modelgate.json").read_text())
    assert slice_rows(rebuilt) == slice_rows(doc)
