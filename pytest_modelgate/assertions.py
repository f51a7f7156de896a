"""Assertions on fine-tuning runs and datasets.

Each assertion computes its metric, records it into the current test's record (the plugin
turns records into the report and compares them with the baseline), then raises an
AssertionError whose message shows value, operator, threshold, n, interval and the classes
that pulled the figure down. Pure: no pytest, no framework imports.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import numpy as np

from .data import ImageSet
from .errors import ModelGateError
from .leakage import find_leaks
from .metrics import metric_spec, wilson_interval
from .run import FinetuneRun

_RECORD: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "modelgate_record", default=None
)


def new_record() -> dict:
    """An empty record: metrics in order, runs by id, pretrained-vs-scratch races."""
    return {"metrics": [], "runs": {}, "races": []}


@contextlib.contextmanager
def recording() -> Iterator[dict]:
    """Collect what assertions record inside the block into a fresh record dict."""
    record = new_record()
    token = _RECORD.set(record)
    try:
        yield record
    finally:
        _RECORD.reset(token)


def _run_id(run: FinetuneRun) -> str:
    rid = f"{run.model} ({'pretrained' if run.pretrained else 'scratch'}, freeze={run.freeze})"
    record = _RECORD.get()
    if record is not None and rid not in record["runs"]:
        record["runs"][rid] = run.to_dict()
    return rid


def _record_metric(name: str, value: float, threshold: float | None, passed: bool, *,
                   n: int, interval: tuple[float, float] | None = None,
                   run: FinetuneRun | None = None, detail: Any = None) -> None:
    record = _RECORD.get()
    if record is None:
        return
    spec = metric_spec(name)
    record["metrics"].append({
        "name": name,
        "value": float(value),
        "threshold": threshold,
        "op": ">=" if spec.higher_is_better else "<=",
        "higher_is_better": spec.higher_is_better,
        "n": int(n),
        "interval": list(interval) if interval else None,
        "passed": bool(passed),
        "run": _run_id(run) if run is not None else None,
        "detail": detail,
    })


def _check_run(run: Any) -> FinetuneRun:
    if not isinstance(run, FinetuneRun):
        raise ModelGateError(
            f"run must be the result of finetune(...), got {type(run).__name__}"
        )
    return run


def _check_threshold(threshold: float, argname: str = "threshold") -> None:
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ModelGateError(f"{argname} must be a number in [0, 1], got {threshold!r}")


def _per_class_table(summary: dict) -> str:
    rows = [f"    {'class':<12} {'precision':>9} {'recall':>7} {'n':>5}"]
    for row in summary["per_class"]:
        rows.append(f"    {row['label'][:12]:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} "
                    f"{row['support']:>5}")
    return "\n".join(rows)


def _lowest(summary: dict, key: str, k: int = 3) -> str:
    rows = sorted(summary["per_class"], key=lambda r: r[key])[:k]
    return ", ".join(f"{r['label']} {r[key]:.3f}" for r in rows)


def _class_index(run: FinetuneRun, label: str | int) -> int:
    names = run.class_names
    if str(label) in names:
        return names.index(str(label))
    raise ModelGateError(f"label={label!r} is not a class of this run; classes are {list(names)}")


def _secs(seconds: float) -> str:
    """Seconds with enough digits to tell short runs apart."""
    return f"{seconds:.1f}s" if seconds >= 10 else f"{seconds:.2f}s" if seconds >= 0.1 else \
        f"{seconds * 1000:.1f}ms"


def _fmt_interval(interval: tuple[float, float] | None) -> str:
    return f", 95% CI {interval[0]:.3f}-{interval[1]:.3f}" if interval else ""


def _per_class_gate(run: Any, threshold: float, label: str | int | None, kind: str) -> None:
    run = _check_run(run)
    _check_threshold(threshold)
    summary = run.summary()
    n = summary["n"]
    if label is None:
        value = float(np.mean([row[kind] for row in summary["per_class"]]))
        name, interval, what = f"{kind}[macro]", None, f"{kind} (macro over classes)"
    else:
        row = summary["per_class"][_class_index(run, label)]
        value = row[kind]
        # recall = tp / support, precision = tp / predicted: a proportion with a Wilson interval
        n = row["support"] if kind == "recall" else row["predicted"]
        interval = wilson_interval(row["tp"], n)
        name, what = f"{kind}[{row['label']}]", f"{kind}({row['label']})"
    passed = value >= threshold
    _record_metric(name, value, threshold, passed, n=n, interval=interval, run=run)
    if not passed:
        raise AssertionError(
            f"{what} = {value:.3f} < {threshold:.3f} required "
            f"[n={n}{_fmt_interval(interval)}]; lowest {kind}: {_lowest(summary, kind)}\n"
            f"  model {run.model}, freeze={run.freeze}, {len(run.history)} epochs; per class:\n"
            f"{_per_class_table(summary)}\n"
            "  Fix: train longer or with more data for the weak classes, or lower the "
            "threshold if it asks for more than this data can show."
        )


def assert_recall_above(run: FinetuneRun, threshold: float, *,
                        label: str | int | None = None) -> None:
    """Recall of one class (``label=``) or the macro average must be at least ``threshold``.

    Recall is the share of a class's test samples the model finds: the figure to gate when a
    miss is costly (a defect shipped, a tumour not flagged).

    Example:
        >>> assert_recall_above(run, 0.90, label="defect")  # doctest: +SKIP
    """
    __tracebackhide__ = True
    _per_class_gate(run, threshold, label, "recall")


def assert_precision_above(run: FinetuneRun, threshold: float, *,
                           label: str | int | None = None) -> None:
    """Precision of one class (``label=``) or the macro average must be at least ``threshold``.

    Precision is the share of a class's predictions that are right: the figure to gate when a
    false alarm is costly.

    Example:
        >>> assert_precision_above(run, 0.80)  # doctest: +SKIP
    """
    __tracebackhide__ = True
    _per_class_gate(run, threshold, label, "precision")


def assert_accuracy_above(run: FinetuneRun, threshold: float) -> None:
    """Test accuracy must be at least ``threshold``.

    Example:
        >>> assert_accuracy_above(run, 0.85)  # doctest: +SKIP
    """
    __tracebackhide__ = True
    run = _check_run(run)
    _check_threshold(threshold)
    summary = run.summary()
    n = summary["n"]
    value = summary["accuracy"]
    correct = int(round(value * n))
    interval = wilson_interval(correct, n)
    passed = value >= threshold
    _record_metric("accuracy", value, threshold, passed, n=n, interval=interval, run=run)
    if not passed:
        raise AssertionError(
            f"accuracy = {value:.3f} < {threshold:.3f} required "
            f"[n={n}{_fmt_interval(interval)}]; lowest recall: {_lowest(summary, 'recall')}\n"
            f"  model {run.model}, freeze={run.freeze}, {len(run.history)} epochs; per class:\n"
            f"{_per_class_table(summary)}"
        )


def assert_no_leakage(train: ImageSet, test: ImageSet, *, max_listed: int = 10) -> None:
    """No test image may also sit in train: same pixels (in any lossless file format) or a
    mirror-flipped copy. The failure lists the pairs.

    Example:
        >>> assert_no_leakage(data.train, data.test)  # doctest: +SKIP
    """
    __tracebackhide__ = True
    for arg, value in (("train", train), ("test", test)):
        if not isinstance(value, ImageSet):
            raise ModelGateError(
                f"{arg} must be an ImageSet (splits.{arg}), got {type(value).__name__}"
            )
    pairs = find_leaks(train, test)
    leaked_tests = {p.test_index for p in pairs}
    _record_metric("leaked_pairs", len(pairs), 0, not pairs, n=len(test),
                   detail=[[train.describe(p.train_index), test.describe(p.test_index), p.kind]
                           for p in pairs[:max_listed]])
    if pairs:
        lines = [f"    {test.describe(p.test_index)}  ==  {train.describe(p.train_index)}"
                 f"  ({p.kind})" for p in pairs[:max_listed]]
        more = f"\n    ... and {len(pairs) - max_listed} more" if len(pairs) > max_listed else ""
        raise AssertionError(
            f"{len(leaked_tests)} of {len(test)} test images also sit in train "
            f"({len(pairs)} pairs); test figures overstate the model:\n"
            + "\n".join(lines) + more
            + "\n  Fix: remove these images from one split (stratified_split() keeps exact "
              "duplicates on one side)."
        )


def assert_faster_than_scratch(run: FinetuneRun, *, target_accuracy: float,
                               min_speedup: float = 1.0, scratch_epochs: int | None = None
                               ) -> None:
    """The pretrained run must reach ``target_accuracy`` at least ``min_speedup`` times sooner
    than the same architecture trained from random init with the same budget.

    The scratch run trains every layer for the same number of epochs (``scratch_epochs`` to
    change it), stopping once it reaches the target. When it never does, the speedup is a
    lower bound ("> 4.2x") and the assertion can still pass.

    Example:
        >>> assert_faster_than_scratch(run, target_accuracy=0.85, min_speedup=2.0)  # doctest: +SKIP
    """
    __tracebackhide__ = True
    run = _check_run(run)
    _check_threshold(target_accuracy, "target_accuracy")
    if not min_speedup > 0:
        raise ModelGateError(f"min_speedup must be positive, got {min_speedup!r}")
    if run.scratch_runner is None:
        raise ModelGateError("this run cannot race from scratch: create it with finetune(...)")
    reached = run.time_to_accuracy(target_accuracy)
    best = max((h.test_accuracy for h in run.history), default=0.0)
    if reached is None:
        _record_metric("speedup", 0.0, min_speedup, False, n=len(run.y_true), run=run)
        raise AssertionError(
            f"the pretrained run never reached accuracy {target_accuracy:.3f} "
            f"(best {best:.3f} in {len(run.history)} epochs, {_secs(run.seconds)}), so it "
            "cannot be faster than scratch. Fix: more epochs, another freeze setting, or a "
            "lower target_accuracy"
        )
    scratch = run.scratch_runner(target_accuracy=target_accuracy, epochs=scratch_epochs)
    pre_seconds, pre_epoch = reached
    scratch_reached = scratch.time_to_accuracy(target_accuracy)
    if scratch_reached is None:
        scratch_seconds, scratch_epoch, bound = scratch.seconds, None, "> "
    else:
        (scratch_seconds, scratch_epoch), bound = scratch_reached, ""
    speedup = scratch_seconds / max(pre_seconds, 1e-9)
    passed = speedup >= min_speedup
    race = {
        "run": _run_id(run),
        "scratch_run": _run_id(scratch),
        "target_accuracy": target_accuracy,
        "pretrained_seconds": pre_seconds,
        "pretrained_epoch": pre_epoch,
        "scratch_seconds": scratch_seconds,
        "scratch_epoch": scratch_epoch,
        "scratch_best_accuracy": max((h.test_accuracy for h in scratch.history), default=0.0),
        "speedup": speedup,
        "lower_bound": bool(bound),
        "min_speedup": min_speedup,
    }
    record = _RECORD.get()
    if record is not None:
        record["races"].append(race)
    _record_metric("speedup", speedup, min_speedup, passed, n=len(run.y_true), run=run,
                   detail=race)
    scratch_text = (
        f"{_secs(scratch_seconds)} (epoch {scratch_epoch})" if scratch_epoch is not None
        else f"never in {len(scratch.history)} epochs, {_secs(scratch_seconds)} "
             f"(best {race['scratch_best_accuracy']:.3f})"
    )
    if not passed:
        raise AssertionError(
            f"speedup to accuracy {target_accuracy:.3f} = {bound}{speedup:.2f}x < "
            f"{min_speedup:.2f}x required: pretrained {_secs(pre_seconds)} (epoch {pre_epoch}), "
            f"scratch {scratch_text}\n"
            "  Fix: pretrained features pay off most with few labels and head-only training "
            "(freeze='backbone'); check the learning rate, or lower min_speedup."
        )
