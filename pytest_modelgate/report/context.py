"""Turn test records into the plain dict both the HTML and the JSON report show.

Pure: no jinja2, no pytest. Everything here is JSON-ready, and the HTML template only lays
out what this module computed (cell shades, curve points), so both reports agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .. import __version__

CURVE_W, CURVE_H = 320, 120


def _curve(history: list[dict], key: str) -> str:
    """SVG polyline points for one per-epoch series in 0-1 (x: epoch, y: value)."""
    if not history:
        return ""
    n = len(history)
    pts = []
    for i, h in enumerate(history):
        x = CURVE_W * (i / (n - 1) if n > 1 else 0.5)
        y = CURVE_H * (1 - max(0.0, min(1.0, float(h[key]))))
        pts.append(f"{x:.1f},{y:.1f}")
    return " ".join(pts)


def _matrix(summary: dict) -> list[list[dict]]:
    """Rows of cells with a count and a shade (share of the true class, 0-1)."""
    rows = []
    for i, counts in enumerate(summary["confusion_matrix"]):
        total = sum(counts) or 1
        rows.append([{"count": c, "shade": round(c / total, 3), "diagonal": i == j}
                     for j, c in enumerate(counts)])
    return rows


def _pr_view(metric: dict) -> dict:
    """SVG points of a precision-recall curve (x: recall, y: precision) and the chosen point."""
    detail = metric.get("detail")
    if not metric["name"].startswith(("precision_at_recall", "recall_at_precision")) or \
            not isinstance(detail, dict):
        return metric
    view = dict(metric)
    view["pr_curve"] = " ".join(f"{CURVE_W * r:.1f},{CURVE_H * (1 - p):.1f}"
                                for r, p in detail["curve"])
    if detail.get("point"):
        r, p = detail["point"]
        view["pr_point"] = {"x": round(CURVE_W * r, 1), "y": round(CURVE_H * (1 - p), 1)}
    return view


def _run_view(run: dict) -> dict:
    view = dict(run)
    view["matrix"] = _matrix(run["summary"])
    view["curve_test"] = _curve(run["history"], "test_accuracy")
    view["curve_train"] = _curve(run["history"], "train_accuracy")
    return view


def build_context(tests: list[dict[str, Any]], *, baseline_path: str | None,
                  baseline_found: bool, updated_baseline: bool,
                  session: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's data.

    Args:
        tests: one dict per gate test: ``nodeid``, ``outcome``, ``duration`` and its
            ``record`` (metrics, runs, races as the assertions wrote them), plus
            ``regressions`` (list of dicts).
        session: how the session ended: ``interrupted``, ``exitstatus``, ``not_run``
            (node ids), ``not_run_are_gates``, ``baseline_note`` (why an update wrote no
            baseline) and ``replacing`` (an unreadable baseline being replaced).
    """
    out_tests = []
    for t in tests:
        record = t.get("record") or {"metrics": [], "runs": {}, "races": []}
        out_tests.append({
            "nodeid": t["nodeid"],
            "outcome": t["outcome"],
            "duration": round(float(t.get("duration", 0.0)), 3),
            "metrics": [_pr_view(m) for m in record["metrics"]],
            "runs": [dict(_run_view(r), id=rid) for rid, r in record["runs"].items()],
            "races": record["races"],
            "regressions": t.get("regressions", []),
        })
    counts: dict[str, int] = {}
    for t in out_tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    return {
        "title": "pytest-modelgate report",
        "version": __version__,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "baseline": {"path": baseline_path, "found": baseline_found,
                     "updated": updated_baseline},
        "session": {"interrupted": False, "exitstatus": 0, "not_run": [],
                    "not_run_are_gates": True, "baseline_note": None, "replacing": None,
                    **(session or {})},
        "tests": out_tests,
        "curve": {"width": CURVE_W, "height": CURVE_H},
    }
