"""Turn test records into the plain dict both the HTML and the JSON report show.

Pure: no jinja2, no pytest. Everything here is JSON-ready, and the HTML template only lays
out what this module computed (cell shades, curve points), so both reports agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .._version import __version__
from ..baseline import seed_band
from ..specs import VERDICTS, MetricName, format_band, format_metric
from ..thumbnails import thumbnail

CURVE_W, CURVE_H = 320, 120
# Charts: a plot area inside margins for tick labels and axis titles.
CHART_W, CHART_H = 360, 200
PLOT = {"left": 44, "top": 12, "right": 12, "bottom": 36}
COLOURS = {"test": "#1f5fbf", "train": "#d08a1c", "scratch": "#8a3ab9", "loss": "#555555",
           "band": "#1f5fbf"}


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


def _nice_max(value: float) -> float:
    """A round upper end for an axis: 1, 2, 2.5 or 5 times a power of ten."""
    import math

    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def chart(series: list[dict], *, x_label: str, y_label: str, x_max: float | None = None,
          y_range: tuple[float, float] | None = None, marks: list[dict] | None = None,
          integer_x: bool = False, point: tuple[float, float] | None = None,
          bands: list[dict] | None = None) -> dict:
    """An SVG line chart the template draws as is: each series' points in pixels, axis
    ticks with labels, axis titles. ``series``: ``label``, ``colour``, ``points`` (x, y)
    in data units, ``dashed``. ``marks``: horizontal lines (``y``, ``label``). ``bands``:
    horizontal bands across the plot (``low``, ``mid``, ``high`` in data units,
    ``label``, ``colour``), such as a baseline's spread over seeds."""
    xs = [x for s in series for x, _ in s["points"]]
    ys = [y for s in series for _, y in s["points"]]
    x_hi = _nice_max(x_max if x_max is not None else max(xs, default=1.0))
    y_lo, y_hi = y_range if y_range else (0.0, _nice_max(max(ys, default=1.0)))
    w = CHART_W - PLOT["left"] - PLOT["right"]
    h = CHART_H - PLOT["top"] - PLOT["bottom"]

    def px(x: float, y: float) -> tuple[float, float]:
        fy = (min(max(y, y_lo), y_hi) - y_lo) / ((y_hi - y_lo) or 1)
        return (round(PLOT["left"] + w * min(max(x, 0), x_hi) / x_hi, 1),
                round(PLOT["top"] + h * (1 - fy), 1))

    drawn = []
    for s in series:
        pts = [px(x, y) for x, y in s["points"]]
        drawn.append({"label": s["label"], "colour": s["colour"],
                      "dashed": bool(s.get("dashed")),
                      "points": " ".join(f"{x},{y}" for x, y in pts),
                      "dots": [{"x": x, "y": y} for x, y in pts]})
    steps = int(x_hi) if integer_x and x_hi <= 8 and x_hi == int(x_hi) else 4
    x_ticks = [{"x": px(x_hi * i / steps, y_lo)[0], "label": f"{x_hi * i / steps:g}"}
               for i in range(steps + 1)]
    y_ticks = [{"y": px(0, y_lo + (y_hi - y_lo) * i / 4)[1],
                "label": f"{y_lo + (y_hi - y_lo) * i / 4:g}"} for i in range(5)]
    marked = None
    if point is not None:
        x, y = px(*point)
        marked = {"x": x, "y": y}
    drawn_bands = []
    for b in bands or []:
        top, mid, bottom = (px(0, b[k])[1] for k in ("high", "mid", "low"))
        drawn_bands.append({"y": top, "height": round(bottom - top, 1), "mid": mid,
                            "label": b["label"], "colour": b["colour"]})
    return {"width": CHART_W, "height": CHART_H, "plot": dict(PLOT, w=w, h=h), "point": marked,
            "series": drawn, "x_ticks": x_ticks, "y_ticks": y_ticks,
            "x_label": x_label, "y_label": y_label, "bands": drawn_bands,
            "marks": [{"y": px(0, m["y"])[1], "label": m["label"]} for m in marks or []]}


def _matrix(summary: dict) -> list[list[dict]]:
    """Rows of cells with a count and a shade (share of the true class: row-normalised
    recall on the diagonal, confusion off it)."""
    rows = []
    for i, counts in enumerate(summary["confusion_matrix"]):
        total = sum(counts) or 1
        rows.append([{"count": c, "shade": round(c / total, 3), "diagonal": i == j}
                     for j, c in enumerate(counts)])
    return rows


def _pr_view(metric: dict) -> dict:
    """SVG points of a precision-recall curve (x: recall, y: precision) and the chosen point."""
    detail = metric.get("detail")
    if MetricName.parse(metric["name"]).base not in ("precision_at_recall",
                                                     "recall_at_precision") or \
            not isinstance(detail, dict):
        return metric
    view = dict(metric)

    def draw() -> dict:
        chosen = detail.get("point")
        return chart(
            [{"label": f"precision-recall of {detail['positive']}", "colour": COLOURS["test"],
              "points": [(float(r), float(p)) for r, p in detail["curve"]]}],
            x_label="recall", y_label="precision", x_max=1.0, y_range=(0.0, 1.0),
            point=(float(chosen[0]), float(chosen[1])) if chosen else None)

    _draw(view, "pr_chart", f"precision-recall curve of {detail.get('positive')}", draw)
    return view


def _reliability_view(metric: dict) -> dict:
    """A calibration gate's reliability diagram: per confidence bin, accuracy against mean
    confidence, with the diagonal a calibrated model follows; the bins' counts are the
    table beside it (``detail["bins"]``)."""
    detail = metric.get("detail")
    if MetricName.parse(metric["name"]).base != "ece" or not isinstance(detail, dict):
        return metric
    view = dict(metric)

    def draw() -> dict:
        bins = detail["bins"]
        return chart(
            [{"label": "calibrated (accuracy = confidence)", "colour": COLOURS["loss"],
              "dashed": True, "points": [(0.0, 0.0), (1.0, 1.0)]},
             {"label": f"accuracy per bin ({detail['binning']})", "colour": COLOURS["test"],
              "points": [(float(b["confidence"]), float(b["accuracy"])) for b in bins]}],
            x_label="mean confidence", y_label="accuracy", x_max=1.0, y_range=(0.0, 1.0))

    _draw(view, "reliability_chart", "reliability diagram", draw)
    return view


def _draw(view: dict, key: str, title: str, build: Any) -> None:
    """``view[key] = build()``, or a line in ``view["chart_notes"]`` saying why the chart is
    missing: a record the report cannot draw costs that chart, never the report (written
    for every gate of the session) and never a gate."""
    try:
        view[key] = build()
    except Exception as exc:  # noqa: BLE001 - any chart's failure, shown where it was
        view.setdefault("chart_notes", []).append(
            f"{title} not drawn: {type(exc).__name__}: {exc}")


def _label_matrices(summary: dict) -> list[dict]:
    """A multilabel run's per-label 2x2 matrices as small multiples: rows the truth (label
    present, absent), columns the prediction, shaded by the share of the row (green: TP
    and TN, right; red: FN and FP)."""
    out = []
    for name, ((tn, fp), (fn, tp)) in zip(summary["class_names"], summary["label_confusion"],
                                          strict=True):
        cells = []
        for row in ((tp, "TP", True), (fn, "FN", False)), ((fp, "FP", False), (tn, "TN", True)):
            total = sum(c for c, _n, _d in row) or 1
            cells.append([{"count": c, "name": n, "diagonal": d, "shade": round(c / total, 3)}
                          for c, n, d in row])
        out.append({"label": name, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "cells": cells})
    return out


def _per_class_intervals(summary: dict) -> list[dict]:
    """Per-class rows with 95% intervals: Wilson for precision and recall, a bootstrap of
    the confusion matrix (1,000 resamples, seeded) for F1."""
    import numpy as np

    from ..metrics import (
        bootstrap_confusion,
        class_metric_from_cm,
        percentile_interval,
        wilson_interval,
    )

    if summary.get("multilabel"):   # each label a binary task: its 2x2, positive class 1
        stacks = [(np.asarray(cm), 1) for cm in summary["label_confusion"]]
    else:
        cm = np.asarray(summary["confusion_matrix"])
        whole = bootstrap_confusion(cm, 1000, seed=0) if cm.sum() else None
        stacks = [(whole, i) for i in range(len(summary["per_class"]))]
    rows = []
    for i, row in enumerate(summary["per_class"]):
        # An undefined figure (None: a class never predicted, or absent from the test
        # split) has no interval either.
        out = dict(row, recall_ci=None, precision_ci=None, f1_ci=None)
        if row.get("recall") is not None:
            out["recall_ci"] = list(wilson_interval(row["tp"], row["support"]))
        if row.get("precision") is not None:
            out["precision_ci"] = list(wilson_interval(row["tp"], row["predicted"]))
        boot, index = stacks[i]
        if boot is not None and boot.ndim == 2:   # one label's 2x2, resampled here
            boot = bootstrap_confusion(boot, 1000, seed=0)
        if boot is not None and row.get("f1") is not None:
            out["f1_ci"] = list(percentile_interval(class_metric_from_cm(boot, "f1", index)))
        rows.append(out)
    return rows


def world(config: dict) -> str | None:
    """A data-parallel run's ranks as the report names them next to its device, e.g.
    ``8 ranks (nccl, torchrun)``; None for a one-process run (no ``workers`` key, or 1).

    The record's ``config`` keeps ``workers``, ``backend`` and ``ranks`` themselves for
    machines; this is the text a reader sees.
    """
    workers = int(config.get("workers") or 1)
    if workers <= 1:
        return None
    how = [str(config[key]) for key in ("backend", "ranks") if config.get(key)
           and config[key] != "here"]  # "here": one process (Keras' devices), nothing to add
    if config.get("sync_batchnorm"):
        how.append("SyncBatchNorm")  # BatchNorm over the global batch changes the result
    return f"{workers} ranks" + (f" ({', '.join(how)})" if how else "")


def accuracy_band(entry: dict | None) -> dict | None:
    """The band the accuracy chart draws for a baseline ``entry``'s accuracy over several
    seeds: mean ± one standard deviation over the seeds (None: one seed, or no accuracy)."""
    base = ((entry or {}).get("metrics") or {}).get("accuracy")
    if not base:
        return None
    mean, sd, seeds = seed_band(base)
    if sd is None:
        return None
    return {"low": mean - sd, "mid": mean, "high": mean + sd, "colour": COLOURS["band"],
            "label": f"baseline accuracy over {seeds} seeds: mean ± sd "
                     f"({format_band('accuracy', mean, sd)})"}


def _run_view(run: dict, band: dict | None = None) -> dict:
    """A run as the report shows it; ``band``: the baseline's accuracy over seeds, drawn
    on this run's accuracy chart (see ``accuracy_band``)."""
    view = dict(run)
    ranks = world(run.get("config") or {})
    if ranks is not None:  # only then: a one-process run's entry stays as it was
        view["world"] = ranks
    history = run["history"]
    if run["summary"].get("multilabel"):
        view["matrix"] = None
        view["label_matrices"] = _label_matrices(run["summary"])
    else:
        view["matrix"] = _matrix(run["summary"])
    view["curve_test"] = _curve(history, "test_accuracy")
    view["curve_train"] = _curve(history, "train_accuracy")
    view["per_class"] = _per_class_intervals(run["summary"])
    if history:
        _draw(view, "accuracy_chart", "accuracy chart", lambda: chart(
            [{"label": "test accuracy", "colour": COLOURS["test"],
              "points": [(h["epoch"], h["test_accuracy"]) for h in history]},
             {"label": "train accuracy (running)", "colour": COLOURS["train"], "dashed": True,
              "points": [(h["epoch"], h["train_accuracy"]) for h in history]}],
            x_label="epoch", y_label="accuracy", x_max=len(history), y_range=(0.0, 1.0),
            integer_x=True, bands=[band] if band else None))
        _draw(view, "loss_chart", "loss chart", lambda: chart(
            [{"label": "train loss", "colour": COLOURS["loss"],
              "points": [(h["epoch"], h["loss"]) for h in history]}],
            x_label="epoch", y_label="loss", x_max=len(history), integer_x=True))
        seconds = [h["seconds"] for h in history]
        view["epoch_seconds"] = [round(b - a, 3) for a, b in zip([0.0, *seconds], seconds,
                                                                  strict=False)]
    if run.get("pr_note"):   # why the run has no curve (a class the test split lacks)
        view.setdefault("chart_notes", []).append(run["pr_note"])
    if run.get("pr_curve"):
        pr = run["pr_curve"]
        _draw(view, "pr_chart", f"precision-recall curve of {pr.get('positive')}", lambda: chart(
            [{"label": f"precision-recall of {pr['positive']}", "colour": COLOURS["test"],
              "points": [(float(r), float(p)) for r, p in pr["points"]]}],
            x_label="recall", y_label="precision", x_max=1.0, y_range=(0.0, 1.0),
            point=tuple(pr["operating_point"])))
    return view


def _race_view(race: dict, runs: dict) -> dict:
    """The race with both runs' test accuracy against training seconds on one chart."""
    view = dict(race)
    series = []
    for rid, label, colour in ((race["run"], "pretrained", COLOURS["test"]),
                               (race["scratch_run"], "scratch", COLOURS["scratch"])):
        run = runs.get(rid)
        if run and run["history"]:
            series.append({"label": f"{label}: test accuracy", "colour": colour,
                           # From the first measured point: no run was measured at
                           # 0 s, and a pretrained one does not start at accuracy 0.
                           "points": [(h["seconds"], h["test_accuracy"])
                                      for h in run["history"]]})
    if series:
        _draw(view, "chart", "race chart", lambda: chart(
            series, x_label="training seconds", y_label="test accuracy", y_range=(0.0, 1.0),
            marks=[{"y": race["target_accuracy"], "label": "target"}]))
    return view


def _metric_rows(metrics: list[dict], baseline: dict | None, regressions: list[dict]) -> list:
    """Gate rows with the baseline value and delta, coloured by direction and verdict."""
    verdict_of = {r["name"]: r.get("verdict", "regressed") for r in regressions}
    base = (baseline or {}).get("metrics", {})
    rows = []
    for m in metrics:
        bound = bool(m.get("lower_bound"))
        row = dict(_reliability_view(_pr_view(m)), lower_bound=bound,
                   shown=format_metric(m["name"], m["value"], lower_bound=bound))
        entry = base.get(m["name"])
        if entry is not None:
            delta = float(m["value"]) - float(entry["value"])
            better = delta > 0 if m["higher_is_better"] else delta < 0
            base_bound = bool(entry.get("lower_bound"))
            # A bound on either side makes the delta no measured change: shown uncoloured.
            direction = ("bound" if base_bound or bound else
                         "better" if better else "worse" if delta else "same")
            mean, sd, seeds = seed_band(entry)
            shown = (format_metric(m["name"], entry["value"], lower_bound=base_bound)
                     if sd is None else
                     format_band(m["name"], mean, sd, lower_bound=base_bound))
            row = dict(row, baseline=float(entry["value"]), delta=delta, direction=direction,
                       baseline_lower_bound=base_bound, baseline_shown=shown,
                       delta_shown=format_metric(m["name"], delta, sign=True),
                       verdict=verdict_of.get(m["name"]))
            if sd is not None:
                row.update(baseline_seeds=seeds, baseline_sd=sd)
        rows.append(row)
    return rows


def _slice_views(record: dict, regressions: list[dict]) -> list[dict]:
    """Each sliced gate's table (``record["slices"]``, from ``slice=``/``where=``): a row
    per slice and figure with its shown value, the verdict the gate gave it, or the
    baseline's where that slice regressed (or was inconclusive), worst first."""
    from ..slices import FAILED, worst_first

    verdict_of = {r["name"]: r.get("verdict", "regressed") for r in regressions}
    out = []
    for table in record.get("slices") or []:
        rows = []
        for row in table.get("rows") or []:
            view = dict(row)
            against = verdict_of.get(row.get("metric") or "")
            if against and row["verdict"] != FAILED:
                view["verdict"] = against
            view["css"] = ("passed" if view["verdict"] == "passed" else "skipped"
                           if view["verdict"].startswith("not gated") else view["verdict"])
            view["value_shown"] = ("-" if row.get("value") is None else
                                   format_metric(row["metric"], row["value"]))
            rows.append(view)
        where = table.get("where")
        title = table["gate"] + (f" by {table['slice']}" if table.get("slice") else "") + (
            " where " + ", ".join(f"{k}={'|'.join(map(str, v)) if isinstance(v, list) else v}"
                                  for k, v in where.items()) if where else "")
        out.append(dict(table, title=title, rows=worst_first(rows)))
    return out


def _regression_view(r: dict) -> dict:
    """A baseline comparison row with its figures as the terminal's table prints them: a
    count whole (``3``), a bound marked (``>2.5300``), a baseline over several seeds as
    its mean ± standard deviation (``0.9520 ± 0.0060``, with ``seeds`` beside it)."""
    view = dict(r, **{f"{side}_shown": format_metric(
        r["name"], r[side], 4, lower_bound=bool(r.get(f"{side}_lower_bound")))
        for side in ("baseline", "current", "allowed")})
    seeds, sd = int(r.get("seeds") or 1), r.get("seed_sd")
    if seeds > 1 and sd is not None:
        view["baseline_shown"] = format_band(r["name"], r["baseline"], float(sd), 4,
                                             lower_bound=bool(r.get("baseline_lower_bound")))
    return view


def build_context(tests: list[dict[str, Any]], *, baseline_path: str | None,
                  baseline_found: bool, updated_baseline: bool,
                  session: dict[str, Any] | None = None,
                  baseline: dict[str, dict] | None = None,
                  environment: dict[str, str] | None = None,
                  shard: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's data.

    Args:
        tests: one dict per gate test: ``nodeid``, ``outcome``, ``duration`` and its
            ``record`` (metrics, runs, races as the assertions wrote them), plus
            ``regressions`` (list of dicts), ``verdict``, ``reason``, ``changes``
            (thumbnails of what changed), ``env``, ``baseline_note`` and
            ``baseline_seeds`` (the seeds of its baseline, when more than one).
        session: how the session ended: ``interrupted``, ``exitstatus``, ``not_run``
            (node ids), ``not_run_are_gates``, ``baseline_note`` (why an update wrote no
            baseline), ``replacing`` (an unreadable baseline being replaced) and
            ``inconclusive_fails`` (``--modelgate-inconclusive=fail``).
        baseline: the baseline's entries by test id, for the deltas.
        environment: library versions and platform of this run.
        shard: what ``python -m pytest_modelgate merge`` reads back of this session (see
            ``ModelGateSession.shard_section``); the HTML does not show it.
    """
    out_tests: list[dict[str, Any]] = []
    for t in tests:
        record = t.get("record") or {"metrics": [], "runs": {}, "races": []}
        regressions = t.get("regressions", [])
        verdict = t.get("verdict") or ("passed" if t["outcome"] == "passed" else "failed")
        entry = (baseline or {}).get(t["nodeid"])
        band = accuracy_band(entry)
        # The band belongs on the chart of the run the accuracy gate measured.
        banded = {m.get("run") for m in record["metrics"] if m["name"] == "accuracy"}
        out_tests.append({
            "nodeid": t["nodeid"],
            "anchor": "t" + str(len(out_tests)),
            "outcome": t["outcome"],
            "duration": round(float(t.get("duration", 0.0)), 3),
            "metrics": _metric_rows(record["metrics"], entry, regressions),
            "runs": [dict(_run_view(r, band if rid in banded else None), id=rid)
                     for rid, r in record["runs"].items()],
            "races": [_race_view(race, record["runs"]) for race in record["races"]],
            "slices": _slice_views(record, regressions),
            "regressions": [_regression_view(r) for r in regressions],
            "verdict": verdict,
            "reason": t.get("reason"),
            "changes": t.get("changes"),
            "env": t.get("env") or {},
            "baseline_note": t.get("baseline_note"),
            "baseline_seeds": int(t.get("baseline_seeds") or 1),
        })
    out_tests.sort(key=lambda t: (VERDICTS.index(t["verdict"]) if t["verdict"] in VERDICTS
                                  else 0))
    counts: dict[str, int] = {}
    verdicts: dict[str, int] = {}
    for t in out_tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        verdicts[t["verdict"]] = verdicts.get(t["verdict"], 0) + 1
    return {
        "title": "pytest-modelgate report",
        "version": __version__,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "verdicts": [{"verdict": v, "count": verdicts[v]} for v in VERDICTS if v in verdicts],
        "attention": [t for t in out_tests if t["verdict"] in ("error", "failed", "regressed",
                                                               "inconclusive")],
        "baseline": {"path": baseline_path, "found": baseline_found,
                     "updated": updated_baseline},
        "session": {"interrupted": False, "exitstatus": 0, "not_run": [],
                    "not_run_are_gates": True, "baseline_note": None, "replacing": None,
                    "significance": None, "inconclusive_fails": False, "shard_problems": [],
                    **(session or {})},
        "environment": environment or {},
        "tests": out_tests,
        "curve": {"width": CURVE_W, "height": CURVE_H},
        **({"shard": shard} if shard is not None else {}),
    }


# --- what changed against the baseline: thumbnails ------------------------------------------

THUMBS_PER_SIDE = 12  # per direction and gate test: a reviewer's minute, and a small report


def changed_samples(regressions: list, base_samples: dict, current_samples: dict,
                    images: dict) -> dict | None:
    """The test images the baseline got right and this run gets wrong (and the reverse),
    among the samples the flagged metrics depend on (a class's rows and predictions for a
    per-class metric, every sample otherwise). None when the test set changed or no images
    are at hand (predictions from plain arrays)."""
    import numpy as np

    from ..significance import unpack_labels, unpack_predictions

    labels = _changed_labels(regressions, base_samples, current_samples, images)
    if labels is not None:
        return labels
    pair = None
    subset = None
    for r in regressions:
        bkey, ckey = r.samples
        b, c = base_samples.get(bkey or ""), current_samples.get(ckey or "")
        if b is None or c is None or b["test_hash"] != c["test_hash"] or ckey not in images:
            continue
        if c.get("multilabel"):   # label matrices: _changed_labels
            continue
        if pair is None:
            pair = (b, c, images[ckey])
            y = unpack_labels(c)
            was, now = unpack_predictions(b), unpack_predictions(c)
        elif (b, c) != pair[:2]:
            continue
        cls = MetricName.parse(r.name).label
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
        return _thumbs(test_set, indices, lambda i: (classes[y[i]], classes[was[i]],
                                                     classes[now[i]]))

    return {"now_wrong": side(np.flatnonzero(subset & (was == y) & (now != y))),
            "now_right": side(np.flatnonzero(subset & (was != y) & (now == y)))}


def _thumbs(test_set: Any, indices: Any, caption: Any) -> dict:
    """One side of the changed images: the count, and the first few as thumbnails with
    ``caption(i)``'s true, old and new prediction."""
    shown = []
    for i in indices[:THUMBS_PER_SIDE]:
        true, was, now = caption(int(i))
        shown.append({"index": int(i), "src": thumbnail(test_set.images[i]), "true": true,
                      "was": was, "now": now, "source": test_set.describe(int(i))})
    return {"count": int(len(indices)), "shown": shown}


def _changed_labels(regressions: list, base_samples: dict, current_samples: dict,
                    images: dict) -> dict | None:
    """``changed_samples`` of a multilabel task: an image is right when the labels the
    flagged metrics depend on (one label's column for a per-label metric, every column
    otherwise) are all right; captions list the labels shown, predicted before and now."""
    import numpy as np

    from ..significance import unpack_labels, unpack_predictions

    pair, columns = None, set()
    for r in regressions:
        bkey, ckey = r.samples
        b, c = base_samples.get(bkey or ""), current_samples.get(ckey or "")
        if b is None or c is None or b["test_hash"] != c["test_hash"] or ckey not in images \
                or not c.get("multilabel") or not b.get("multilabel"):
            continue
        if pair is None:
            pair = (b, c, images[ckey])
        elif (b, c) != pair[:2]:
            continue
        label = MetricName.parse(r.name).label
        columns |= ({c["classes"].index(label)} if label in c["classes"]
                    else set(range(len(c["classes"]))))
    if pair is None:
        return None
    base, current, test_set = pair
    y, was, now = unpack_labels(current), unpack_predictions(base), unpack_predictions(current)
    on = sorted(columns)
    right_was, right_now = ((m[:, on] == y[:, on]).all(axis=1) for m in (was, now))
    names = current["classes"]

    def tags(row: Any) -> str:
        return ", ".join(names[j] for j in np.flatnonzero(row)) or "none"

    def side(indices: Any) -> dict:
        return _thumbs(test_set, indices, lambda i: (tags(y[i]), tags(was[i]), tags(now[i])))

    return {"now_wrong": side(np.flatnonzero(right_was & ~right_now)),
            "now_right": side(np.flatnonzero(~right_was & right_now))}
