"""A multilabel gate as users run it: --modelgate writes the report and the baseline, then
one label regresses and fails the test against the baseline."""

from __future__ import annotations

import json

import numpy as np

from pytest_modelgate.options import OPTION_ENABLE, OPTION_UPDATE

# Label matrices from a file, so one gate test sees the baseline model, then a changed one.
MULTILABEL_GATE = """
import json, pathlib
import numpy as np, pytest
from pytest_modelgate import Predictions, assert_f1_above, assert_recall_above

@pytest.mark.modelgate
def test_tags():
    d = json.loads(pathlib.Path(__file__).with_name("tags.json").read_text())
    p = Predictions.from_arrays(np.array(d["y"]), np.array(d["pred"]),
                                class_names=["cat", "dog", "bird"])
    assert_recall_above(p, 0.5, per_class=True)
    assert_f1_above(p, 0.5, average="samples")
"""


def _write(project, y, pred):
    (project.path / "tags.json").write_text(json.dumps({"y": y.tolist(), "pred": pred.tolist()}))


def test_a_regressed_label_fails_against_the_baseline(project):
    rng = np.random.default_rng(0)
    y = (rng.random((300, 3)) < 0.4).astype(int)
    y[:3] = np.eye(3, dtype=int)   # every label shown
    project.makepyfile(test_tags=MULTILABEL_GATE)
    _write(project, y, y)
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    doc = json.loads((project.path / "modelgate-baseline.json").read_text())
    entry = doc["tests"]["test_tags.py::test_tags"]
    assert set(entry["metrics"]) == {"recall[cat]", "recall[dog]", "recall[bird]",
                                     "f1[samples]"}
    (packed,) = entry["samples"].values()
    assert packed["multilabel"] is True and packed["n"] == 300

    worse = y.copy()
    worse[np.flatnonzero(y[:, 1])[:30], 1] = 0   # 30 dogs missed now
    _write(project, y, worse)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*metrics? regressed beyond tolerance against baseline .*, significantly:",
        r" +recall\[dog\] +1\.0000 +0\.\d{4} +>= 0\.9800 +regressed .*",
        r" +recall\[dog\]: McNemar exact \(b=30, c=0\).*",
    ])
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "recall[dog]" in html and "regressed" in html
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    names = {r["name"]: r["verdict"] for r in report["tests"][0]["regressions"]}
    assert names["recall[dog]"] == "regressed"
