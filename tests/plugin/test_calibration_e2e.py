"""assert_calibrated through real ``pytest --modelgate`` runs: the report's reliability
diagram, a baseline with per-sample confidences, a later run whose probabilities are
overconfident regressing against it (paired bootstrap of ECE), and the merge of CI shards
rebuilding the same report from JSON."""

from __future__ import annotations

import json
import re
import sys

from pytest_modelgate.options import OPTION_ENABLE, OPTION_UPDATE

TEMPLATE = """
import numpy as np
import pytest
from pytest_modelgate import Predictions, assert_calibrated

@pytest.mark.modelgate
def test_calibration():
    # 600 test images of 3 classes; a confidence c is right with probability c - {shift}.
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 3, n)
    conf = rng.uniform(0.4, 0.95, n)
    right = rng.random(n) < conf
    pred = np.where(right, y, (y + 1) % 3)
    top = np.minimum(conf + {shift}, 0.999)
    probs = np.tile(((1 - top) / 2)[:, None], (1, 3))
    probs[np.arange(n), pred] = top
    p = Predictions.from_arrays(y, pred, probs, class_names=["cat", "dog", "<b>eel</b>"])
    assert_calibrated(p, max_ece=0.5)
"""
GOOD = TEMPLATE.format(shift=0.0)
WORSE = TEMPLATE.format(shift=0.12)
NODE = "test_cal.py::test_calibration"


def test_calibration_report_baseline_regression_and_merge(project):
    project.makepyfile(test_cal=GOOD)
    result = project.runpytest(OPTION_UPDATE)
    result.assert_outcomes(passed=1)
    entry = json.loads((project.path / "modelgate-baseline.json").read_text())["tests"][NODE]
    ece = entry["metrics"]["ece"]
    assert ece["higher_is_better"] is False and ece["n"] == 600 and ece["value"] < 0.1
    packed = entry["samples"][ece["samples"]]
    assert {"confidence", "top_correct"} <= set(packed) and packed["binning"] == "equal-width"

    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    (metric,) = report["tests"][0]["metrics"]
    assert metric["name"] == "ece" and metric["detail"]["binning"] == "equal-width"
    assert sum(b["count"] for b in metric["detail"]["bins"]) == 600
    assert len(metric["reliability_chart"]["series"]) == 2
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert 'aria-label="reliability diagram"' in html and "Reliability per bin" in html

    # The same answers, claimed 0.12 more surely: ECE regresses, significantly.
    project.makepyfile(test_cal=WORSE)
    result = project.runpytest(OPTION_ENABLE, "--modelgate-shard=1/1",
                               "--modelgate-report-dir=s1")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r"1 metric regressed beyond tolerance against baseline .*modelgate-baseline.json, "
        r"significantly:",
        rf" +ece +{ece['value']:.4f} +0\.\d{{4}} +<= {ece['value'] + 0.02:.4f} +regressed",
        r" +ece: paired bootstrap of ECE \(2000 resamples\) for a rise beyond 0.02",
    ])

    # The merge rebuilds the report from the shard's JSON alone, reliability diagram and all.
    merged = project.run(sys.executable, "-m", "pytest_modelgate", "merge", "s1", "--out",
                         "merged")
    assert merged.ret == 1, merged.stdout.str()
    shard_html = (project.path / "s1" / "modelgate.html").read_text()
    merged_html = (project.path / "merged" / "modelgate.html").read_text()

    def diagram(text):
        start = text.index('aria-label="reliability diagram"')
        return re.sub(r"generated [^;.<]*", "", text[start:text.index("</table>", start)])

    assert diagram(merged_html) == diagram(shard_html)
