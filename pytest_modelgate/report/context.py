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
            "verdict": t.get("verdict", "passed" if t["outcome"] == "passed" else "failed"),
            "reason": t.get("reason"),
            "changes": t.get("changes"),
            "env": t.get("env") or {},
            "baseline_note": t.get("baseline_note"),
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


# --- what changed against the baseline: thumbnails ------------------------------------------

THUMBS_PER_SIDE = 12  # per direction and gate test: a reviewer's minute, and a small report
THUMB_PX = 40


def thumbnail(image: Any) -> str:
    """A small image as a data URI (PNG for grey, JPEG for colour), upscaled without
    smoothing so 8x8 scans stay legible."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    img = Image.fromarray(arr)
    scale = THUMB_PX / max(img.size)
    size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    img = img.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX)
    buf = io.BytesIO()
    if img.mode == "L":
        img.save(buf, format="PNG", optimize=True)
        mime = "png"
    else:
        img.convert("RGB").save(buf, format="JPEG", quality=85)
        mime = "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def changed_samples(regressions: list, base_samples: dict, current_samples: dict,
                    images: dict) -> dict | None:
    """The test images the baseline got right and this run gets wrong (and the reverse),
    among the samples the flagged metrics depend on (a class's rows and predictions for a
    per-class metric, every sample otherwise). None when the test set changed or no images
    are at hand (predictions from plain arrays)."""
    import numpy as np

    from ..baseline import _class_of
    from ..significance import unpack_labels, unpack_predictions

    pair = None
    subset = None
    for r in regressions:
        bkey, ckey = r.samples
        b, c = base_samples.get(bkey or ""), current_samples.get(ckey or "")
        if b is None or c is None or b["test_hash"] != c["test_hash"] or ckey not in images:
            continue
        if pair is None:
            pair = (b, c, images[ckey])
            y = unpack_labels(c)
            was, now = unpack_predictions(b), unpack_predictions(c)
        elif (b, c) != pair[:2]:
            continue
        cls = _class_of(r.name)
        if cls is None or cls not in c["classes"]:
            mask = np.ones(len(y), dtype=bool)
        else:
            i = c["classes"].index(cls)
            mask = (y == i) | (was == i) | (now == i)
        subset = mask if subset is None else subset | mask
    if pair is None or subset is None:
        return None
    classes, test_set = pair[1]["classes"], pair[2]

    def side(indices: Any) -> dict:
        return {"count": int(len(indices)), "shown": [
            {"index": int(i), "src": thumbnail(test_set.images[i]), "true": classes[y[i]],
             "was": classes[was[i]], "now": classes[now[i]],
             "source": test_set.describe(int(i))}
            for i in indices[:THUMBS_PER_SIDE]]}

    return {"now_wrong": side(np.flatnonzero(subset & (was == y) & (now != y))),
            "now_right": side(np.flatnonzero(subset & (was != y) & (now == y)))}
