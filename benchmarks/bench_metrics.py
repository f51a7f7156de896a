"""Metrics benchmark (issue 4): one million predictions over 100 classes.

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

    python benchmarks/bench_metrics.py [--n 1000000] [--classes 100] [--rounds 5]
                                       [--confusion neighbours|uniform] [--labels ints|strings]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
from sklearn.metrics import classification_report as sk_report

from pytest_modelgate.metrics import classification_report


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
    args = parser.parse_args()

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
    print(f"machine: {platform.machine()}, {platform.python_version()}, numpy {np.__version__}")
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


if __name__ == "__main__":
    main()
