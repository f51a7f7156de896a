from __future__ import annotations

import json

import numpy as np

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
