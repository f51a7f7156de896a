"""Gate trust (issue 8): red builds on seed-only reruns, and real regressions caught.

The example's head-only gate (EfficientNet-Lite0, ImageNet weights, scikit-learn's digits
at 64 px, 10 head epochs, the assertions of ``test_head_only_digit_classifier``) is run
with seed 0 to make the baseline, then:

(a) retrained with seeds 1..N, nothing else changed: how many builds go red against the
    seed-0 baseline with the fixed tolerance alone (significance off, the old gate) and with
    significance on (0.05, Holm per gate test);
(b) real regressions, each retrained with seeds 1..M against the same baseline:
    - a weakened recipe (learning rate 1e-4 instead of 1e-3): every class loses a little,
      accuracy drops by several points over all 539 test images;
    - part of one class's training images removed (digit 8 keeps KEEP of them), so its
      recall drops by about 5 points on its 52 test images.
    The share caught (regressed) and, for the drops that are not, what the gate says
    (inconclusive, with the test samples it would need).

The backbone is frozen, so its features are the same in every run: they are computed once
per split (``engine._forward_all`` is memoised here) and every rerun trains only the head,
exactly as the engine does. Usage::

    python benchmarks/bench_gate_trust.py [N_SEEDS] [M_SEEDS]
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from pytest_modelgate import assertions as A
from pytest_modelgate.baseline import REGRESSED, Tolerance, baseline_entry, compare
from pytest_modelgate.data import Splits, from_arrays, load_digits, stratified_split
from pytest_modelgate.frameworks.torch import engine
from pytest_modelgate.train import run_finetune

RECIPE = dict(image_size=64, lr=1e-3, batch_size=32, epochs=10, freeze="backbone",
              device="cpu")
# Share of digit 8's training images kept in the class-removal regression.
KEEP = float(os.environ.get("KEEP", "0.3"))
WEAK_LR = float(os.environ.get("WEAK_LR", "2e-4"))
# Digit 8 keeps half its images (recall about 5 points lower), or 30% (about 10 points).
MNIST_KEEPS = tuple(float(k) for k in os.environ.get("MNIST_KEEPS", "0.5,0.3").split(","))

_features: dict = {}
_original = engine._forward_all
# FEATURES=DIR keeps the frozen backbone's features on disk between runs of the script.
_FEATURE_DIR = Path(os.environ["FEATURES"]) if os.environ.get("FEATURES") else None


def _memo_forward_all(model, pixels, prep, device, batch_size, *args, **kwargs):
    """The frozen backbone's outputs for a split, computed once per split (and model)."""
    import hashlib

    import torch

    images = np.ascontiguousarray(pixels.images)
    key = hashlib.sha256(images.tobytes() + repr((images.shape, prep, type(model).__name__,
                                                  sum(p.numel() for p in model.parameters()))
                                                 ).encode()).hexdigest()[:20]
    if key not in _features:
        path = _FEATURE_DIR / f"{key}.npy" if _FEATURE_DIR else None
        if path is not None and path.exists():
            _features[key] = torch.from_numpy(np.load(path))
        else:
            _features[key] = _original(model, pixels, prep, device, batch_size, *args,
                                       **kwargs)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, _features[key].numpy())
    return _features[key]


engine._forward_all = _memo_forward_all


def gate(run) -> tuple[dict, bool]:
    """The example's head-only gate test body: its record and whether a threshold failed.
    Every assertion runs (the test itself stops at the first failure), so the baseline
    comparison sees every metric."""
    failed = False
    with A.recording() as record:
        for check in (lambda: A.assert_accuracy_above(run, 0.90),
                      lambda: A.assert_precision_above(run, 0.90),
                      lambda: A.assert_recall_above(run, 0.80, label="8"),
                      lambda: A.assert_f1_above(run, 0.85, per_class=True),
                      lambda: A.assert_beats_majority(run, margin=0.5)):
            try:
                check()
            except AssertionError:
                failed = True
    return record, failed


def without_part_of_class(data: Splits, label: str, keep: float, seed: int = 0) -> Splits:
    train = data.train
    index = data.class_names.index(label)
    rows = np.flatnonzero(train.labels == index)
    rng = np.random.default_rng(seed)
    dropped = rng.choice(rows, size=len(rows) - int(round(keep * len(rows))), replace=False)
    mask = np.ones(len(train), dtype=bool)
    mask[dropped] = False
    return from_arrays(train.images[mask], train.labels[mask], data.test.images,
                       data.test.labels, class_names=data.class_names)


MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"


def load_mnist_test(n_train: int = 3000, seed: int = 0) -> Splits | None:
    """MNIST's 10,000 test digits (../shared/data), split into train and a large test set:
    about 700 test images per class, enough to show a 5-point recall drop of one class."""
    images_gz = MNIST / "t10k-images-idx3-ubyte.gz"
    labels_gz = MNIST / "t10k-labels-idx1-ubyte.gz"
    if not images_gz.exists():
        return None
    images = np.frombuffer(gzip.decompress(images_gz.read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress(labels_gz.read_bytes()), np.uint8, offset=8)
    images = images.reshape(-1, 28, 28)
    return stratified_split(images, labels.astype(np.int64),
                            class_names=[str(i) for i in range(10)],
                            test_fraction=1 - n_train / len(images), seed=seed)


def verdicts(baseline: dict, data: Splits, seeds: range, lr: float, watch: str) -> dict:
    out = Counter()
    needed: list[int] = []
    drops: list[float] = []
    for seed in seeds:
        run = run_finetune("efficientnet_lite0", data, seed=seed, **{**RECIPE, "lr": lr})
        record, failed = gate(run)
        old = compare(record["metrics"], baseline, Tolerance())
        new = compare(record["metrics"], baseline, Tolerance(), alpha=0.05,
                      samples=record["samples"])
        out["threshold failed"] += failed
        out["old gate red"] += bool(old)
        if any(r.verdict == REGRESSED for r in new):
            out["regressed"] += 1
            out["red (regressed or threshold)"] += 1
        elif new:
            out["red (regressed or threshold)"] += failed
            out["inconclusive"] += 1
            needed += [r.needed for r in new if r.needed and r.name == watch]
        else:
            out["red (regressed or threshold)"] += failed
            out["passed"] += 1
        values = {m["name"]: m["value"] for m in record["metrics"]}
        drops.append(baseline["metrics"][watch]["value"] - values[watch])
        out["accuracy drop sum"] += baseline["metrics"]["accuracy"]["value"] - run.accuracy
    out["runs"] = len(seeds)
    return {"counts": out, "needed": needed, "drop": float(np.mean(drops)), "watch": watch,
            "n": int(baseline["metrics"][watch]["n"])}


def show(title: str, result: dict) -> None:
    c = result["counts"]
    n = c["runs"]
    print(f"\n{title} ({n} reruns)")
    print(f"  old gate (tolerance 0.02, no significance): {c['old gate red']}/{n} red")
    print(f"  significance 0.05: regressed {c['regressed']}, inconclusive {c['inconclusive']}, "
          f"passed {c['passed']}; a threshold assertion failed in {c['threshold failed']}, "
          f"red builds (regressed or a threshold) {c['red (regressed or threshold)']}/{n}")
    print(f"  mean drop: accuracy {c['accuracy drop sum'] / n:+.4f}, "
          f"{result['watch']} {result['drop']:+.4f} (n={result['n']})")
    if result["needed"]:
        print(f"  where {result['watch']} was inconclusive, the gate asked for a median of "
              f"{int(np.median(result['needed']))} test samples (has {result['n']})")


def seed0_baseline(name: str, data: Splits) -> dict:
    """The gate's baseline entry from the seed-0 run, as --modelgate-update-baseline writes."""
    run = run_finetune("efficientnet_lite0", data, seed=0, **RECIPE)
    record, _ = gate(run)
    baseline = baseline_entry(record)
    print(f"\n{name}, {len(data.train)} train / {len(data.test)} test: baseline (seed 0) "
          f"accuracy {run.accuracy:.4f}, {len(baseline['metrics'])} metrics")
    return baseline


def main() -> None:
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    m_seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    t0 = time.perf_counter()
    data = load_digits(test_fraction=0.3, seed=0)
    baseline = seed0_baseline("digits", data)
    show("(a) seed-only reruns",
         verdicts(baseline, data, range(1, n_seeds + 1), RECIPE["lr"], "accuracy"))
    show(f"(b1) weakened recipe: lr {WEAK_LR:g} instead of {RECIPE['lr']:g}",
         verdicts(baseline, data, range(1, m_seeds + 1), WEAK_LR, "accuracy"))
    weak8 = without_part_of_class(data, "8", KEEP)
    show(f"(b2) digit 8 keeps {KEEP:.0%} of its training images",
         verdicts(baseline, weak8, range(1, m_seeds + 1), RECIPE["lr"], "recall[8]"))
    mnist = load_mnist_test()
    if mnist is None:
        print(f"\nMNIST scenarios skipped: {MNIST} is absent")
    else:
        baseline = seed0_baseline("MNIST test digits", mnist)
        show("(a') seed-only reruns",
             verdicts(baseline, mnist, range(1, n_seeds + 1), RECIPE["lr"], "accuracy"))
        for keep in MNIST_KEEPS:
            show(f"(b3) digit 8 keeps {keep:.0%} of its training images",
                 verdicts(baseline, without_part_of_class(mnist, "8", keep),
                          range(1, m_seeds + 1), RECIPE["lr"], "recall[8]"))
    print(f"\n{time.perf_counter() - t0:.0f}s in all")


if __name__ == "__main__":
    main()
