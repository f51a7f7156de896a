"""Metrics benchmark (issues 4 and 25): our metrics against scikit-learn's.

Single-label (issue 4): one million predictions over 100 classes.

Ours: confusion matrix, per-class report with 95% Wilson intervals, and 95% bootstrap
intervals (1,000 resamples) for macro F1, balanced accuracy and MCC, through
``pytest_modelgate.metrics.classification_report``. Reference: scikit-learn's
``classification_report`` alone, without any interval. Both run alternately in one process,
``--rounds`` times each; the script prints the median times and their ratio.

Target: ratio (ours / scikit-learn) at most 1.0.

Two error structures: ``neighbours`` (default), where a wrong prediction lands on one of five
similar classes, as a trained classifier's confusions concentrate (600 non-empty cells of
10,000); and ``uniform``, the worst case for count resampling, where errors spread over
every cell (all 10,000 cells non-empty, and the bootstrap draws each of them 1,000 times).

Multilabel (issue 25): 0/1 indicator matrices, ``--ml-n`` samples by ``--ml-labels`` labels
(about 20% of cells positive, 10% of predictions flipped), as a multilabel head thresholded
at 0.5 gives them. Each of ``precision_recall_fscore_support`` with ``average=None``,
``"micro"``, ``"macro"``, ``"samples"`` and ``multilabel_confusion_matrix`` is timed against
scikit-learn's function of the same name, alternately, ``--rounds`` times each (every call
repeated ``--ml-repeat`` times, so a round is long enough to time); the script prints each
median and ratio, and the ratio of the summed medians.

Target: every multilabel ratio (ours / scikit-learn) at most 1.0.

    python benchmarks/bench_metrics.py [--n 1000000] [--classes 100] [--rounds 5]
                                       [--confusion neighbours|uniform] [--labels ints|strings]
                                       [--case both|single|multilabel] [--ml-n 10000]
                                       [--ml-labels 20] [--ml-repeat 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import sklearn.metrics as skm
from sklearn.metrics import classification_report as sk_report

from pytest_modelgate import metrics as mg
from pytest_modelgate.metrics import classification_report

# The multilabel calls timed: a name, and the keyword arguments of the function of that name
# in both libraries.
MULTILABEL_CALLS = (
    ("precision_recall_fscore_support", {"average": None, "zero_division": 0}),
    ("precision_recall_fscore_support", {"average": "micro", "zero_division": 0}),
    ("precision_recall_fscore_support", {"average": "macro", "zero_division": 0}),
    ("precision_recall_fscore_support", {"average": "samples", "zero_division": 0}),
    ("multilabel_confusion_matrix", {}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--confusion", choices=["neighbours", "uniform"], default="neighbours")
    parser.add_argument("--labels", choices=["ints", "strings"], default="ints",
                        help="class indices, or the class names as strings (as predictions "
                             "exported from another system carry them)")
    parser.add_argument("--case", choices=["both", "single", "multilabel"], default="both")
    parser.add_argument("--ml-n", type=int, default=10_000)
    parser.add_argument("--ml-labels", type=int, default=20)
    parser.add_argument("--ml-repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_version()}, numpy {np.__version__}")
    if args.case != "multilabel":
        single_label(args)
    if args.case != "single":
        multilabel(args)


def single_label(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, args.classes, args.n)
    wrong = rng.random(args.n) < 0.3
    if args.confusion == "uniform":
        other = rng.integers(0, args.classes, args.n)
    else:
        other = (y_true + rng.integers(1, 6, args.n)) % args.classes
    y_pred = np.where(wrong, other, y_true)
    names = [f"class{i}" for i in range(args.classes)]
    if args.labels == "strings":
        y_true, y_pred = np.array(names)[y_true], np.array(names)[y_pred]

    ours, theirs = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        report = classification_report(y_true, y_pred, names, n_resamples=args.resamples)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        if args.labels == "strings":   # scikit-learn orders string labels itself
            sk_report(y_true, y_pred, output_dict=True, zero_division=0)
        else:
            sk_report(y_true, y_pred, target_names=names, output_dict=True, zero_division=0)
        theirs.append(time.perf_counter() - t0)

    o, s = statistics.median(ours), statistics.median(theirs)
    cells = int(np.count_nonzero(report["confusion_matrix"]))
    print(f"{args.n:,} predictions ({args.labels}), {args.classes} classes, {args.confusion} "
          f"confusions "
          f"({cells:,} non-empty cells), {args.rounds} alternating rounds")
    print(f"ours (cm + per-class + Wilson + {args.resamples} bootstrap resamples): "
          f"median {o:.3f}s  (all: {', '.join(f'{t:.3f}' for t in ours)})")
    print(f"scikit-learn classification_report (no intervals): median {s:.3f}s  "
          f"(all: {', '.join(f'{t:.3f}' for t in theirs)})")
    print(f"ratio ours/scikit-learn: {o / s:.2f} (target <= 1.0)")
    print(f"macro F1 {report['f1_macro']['value']:.4f} CI {report['f1_macro']['interval']}")



def multilabel(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    shape = (args.ml_n, args.ml_labels)
    y_true = (rng.random(shape) < 0.2).astype(np.int64)
    y_pred = np.where(rng.random(shape) < 0.1, 1 - y_true, y_true)
    print(f"multilabel: {args.ml_n:,} samples x {args.ml_labels} labels (int 0/1), "
          f"{args.rounds} alternating rounds of {args.ml_repeat} calls each")
    total_ours = total_theirs = 0.0
    for name, kwargs in MULTILABEL_CALLS:
        ours_fn, theirs_fn = getattr(mg, name), getattr(skm, name)
        np.testing.assert_allclose(   # the same figures, or the timing means nothing
            _figures(ours_fn(y_true, y_pred, **kwargs)),
            _figures(theirs_fn(y_true, y_pred, **kwargs)))
        ours, theirs = [], []
        for _ in range(args.rounds):
            for fn, times in ((ours_fn, ours), (theirs_fn, theirs)):
                t0 = time.perf_counter()
                for _ in range(args.ml_repeat):
                    fn(y_true, y_pred, **kwargs)
                times.append((time.perf_counter() - t0) / args.ml_repeat)
        o, s = statistics.median(ours), statistics.median(theirs)
        total_ours += o
        total_theirs += s
        label = name if not kwargs else f"{name}(average={kwargs['average']!r})"
        print(f"  {label}: ours {o * 1e3:.2f} ms, scikit-learn {s * 1e3:.2f} ms, "
              f"ratio {o / s:.2f}")
    print(f"multilabel ratio ours/scikit-learn (sum of medians): "
          f"{total_ours / total_theirs:.2f} (target <= 1.0)")



def _figures(result) -> np.ndarray:
    """A result as one float array: precision, recall and F (not the support, None when
    averaged) of a tuple, or the array itself."""
    return np.asarray(result[:3] if isinstance(result, tuple) else result, dtype=np.float64)


if __name__ == "__main__":
    main()
