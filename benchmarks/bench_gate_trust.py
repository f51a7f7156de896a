"""Gate trust (issues 8 and 23): red builds on seed-only reruns, and real regressions caught,
against a baseline of one seed (the gate before issue 23) and of K seeds
(``--modelgate-baseline-seeds=K``, default 5 here), side by side on the same reruns.

The example's head-only gate (EfficientNet-Lite0, ImageNet weights, scikit-learn's digits
at 64 px, 10 head epochs, the assertions of ``test_head_only_digit_classifier``) trained
with seeds 0..K-1 makes the baselines (seed 0 alone, and all K as the plugin records them),
then each scenario retrains it with seeds 100, 101, ... (never a baseline seed) and every
rerun is compared with both baselines, significance 0.05, Holm per gate test:

(a) nothing else changed: how many builds go red;
(b) real regressions:
    - b1: a weakened recipe (learning rate WEAK_LR = 2e-4 instead of 1e-3);
    - b2: digit 8 keeps KEEP = 30% of its training images (recall[8] on 52 test images);
    - b4: half the epochs (5 instead of 10), chosen before the seed-aware test was
      designed and never tuned on;
(a'), (b3): the same on MNIST's 10,000 test digits (../shared/data), about 700 test
    images per class; digit 8 keeps 50% (and 30%) of its training images;
(c) a run that loses k test images and gains none, on 150 test digits: the smallest k the
    gate calls regressed, against one seed and against K.

The backbone is frozen, so its features are the same in every run: they are computed once
per split (``engine._forward_all`` is memoised here; FEATURES=DIR keeps them on disk) and
every rerun trains only the head, exactly as the engine does. SKIP_MNIST=1 leaves out the
MNIST scenarios. Usage::

    python benchmarks/bench_gate_trust.py [N_SEEDS] [M_SEEDS] [K]
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


RERUN_SEEDS = 100  # reruns use seeds 100, 101, ...: never one of the baselines' seeds


def verdict_of(record: dict, baseline: dict) -> str:
    """regressed, inconclusive or passed against one baseline entry (a threshold that
    failed is counted apart: no baseline setting changes it)."""
    found = compare(record["metrics"], baseline, Tolerance(), alpha=0.05,
                    samples=record["samples"])
    if any(r.verdict == REGRESSED for r in found):
        return "regressed"
    return "inconclusive" if found else "passed"


def verdicts(baselines: dict[str, dict], data: Splits, n_runs: int, watch: str,
             **recipe) -> dict:
    """Retrain ``n_runs`` times and count each baseline's verdicts on the same reruns."""
    counts = {name: Counter() for name in baselines}
    drops = {name: [] for name in baselines}
    failed_runs = 0
    for seed in range(RERUN_SEEDS, RERUN_SEEDS + n_runs):
        run = run_finetune("efficientnet_lite0", data, seed=seed, **{**RECIPE, **recipe})
        record, failed = gate(run)
        failed_runs += failed
        value = {m["name"]: m["value"] for m in record["metrics"]}[watch]
        for name, baseline in baselines.items():
            counts[name][verdict_of(record, baseline)] += 1
            drops[name].append(baseline["metrics"][watch]["value"] - value)
    return {"counts": counts, "drop": {k: float(np.mean(v)) for k, v in drops.items()},
            "watch": watch, "runs": n_runs, "threshold failed": failed_runs,
            "n": int(next(iter(baselines.values()))["metrics"][watch]["n"])}


def show(title: str, result: dict) -> None:
    n = result["runs"]
    print(f"\n{title} ({n} reruns; a threshold assertion failed in "
          f"{result['threshold failed']})")
    for name, c in result["counts"].items():
        print(f"  {name:<14} regressed {c['regressed']:>3}/{n}, inconclusive "
              f"{c['inconclusive']:>3}, passed {c['passed']:>3}; mean drop of "
              f"{result['watch']} against it {result['drop'][name]:+.4f} (n={result['n']})")


def seeded_baselines(name: str, data: Splits, k: int) -> dict[str, dict]:
    """The gate's baseline entries as --modelgate-update-baseline writes them: seed 0 alone
    (--modelgate-baseline-seeds=1) and seeds 0..k-1 (=k, the records of seeds 1..k-1 as
    the replicas of seed 0's)."""
    records = []
    for seed in range(k):
        run = run_finetune("efficientnet_lite0", data, seed=seed, **RECIPE)
        records.append(gate(run)[0])
    one = baseline_entry(records[0])
    many = baseline_entry({**records[0], "replicas": records[1:]})
    acc = many["metrics"]["accuracy"]
    print(f"\n{name}, {len(data.train)} train / {len(data.test)} test: seed 0 accuracy "
          f"{one['metrics']['accuracy']['value']:.4f}; {k} seeds {acc['value']:.4f} "
          f"(sd {np.std(acc['seeds'], ddof=1):.4f}), {len(many['metrics'])} metrics")
    return {"1 seed": one, f"{k} seeds": many}


def lost_images(data: Splits, k_seeds: int, per_class: int = 15, tries: int = 20) -> None:
    """(c) On a stratified subset of ``per_class`` test digits per class (150), the seeds'
    own predictions make the baselines; a new run is seed 0's predictions with k test
    images it got right (ones every baseline seed got right) now wrong, and nothing
    gained. Per k, how often each baseline calls it regressed."""
    from pytest_modelgate.run import Predictions

    rng = np.random.default_rng(0)
    y = data.test.labels
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                                   for c in range(len(data.class_names))]))
    y = y[rows]
    preds = [np.asarray(run_finetune("efficientnet_lite0", data, seed=s, **RECIPE).y_pred)[rows]
             for s in range(k_seeds)]

    def record_of(y_pred):
        return gate(Predictions.from_arrays(y, y_pred, class_names=data.class_names))[0]

    records = [record_of(p) for p in preds]
    baselines = {"1 seed": baseline_entry(records[0]),
                 f"{k_seeds} seeds": baseline_entry({**records[0], "replicas": records[1:]})}
    stable = np.flatnonzero(np.all([p == y for p in preds], axis=0))
    print(f"\n(c) a run that loses k of {len(y)} test images and gains none ({len(stable)} "
          f"images every seed got right; {tries} random choices of the k per row)")
    first: dict[str, int | None] = {name: None for name in baselines}
    for k in range(1, 16):
        counts = {name: 0 for name in baselines}
        for _ in range(tries):
            lost = rng.choice(stable, size=k, replace=False)
            y_pred = preds[0].copy()
            y_pred[lost] = (y[lost] + 1 + rng.integers(0, len(data.class_names) - 1, size=k)
                            ) % len(data.class_names)
            record = record_of(y_pred)
            for name, baseline in baselines.items():
                counts[name] += verdict_of(record, baseline) == "regressed"
        print(f"  k={k:>2} ({k / len(y):.1%}): " + ", ".join(
            f"{name} regressed {c}/{tries}" for name, c in counts.items()))
        for name, c in counts.items():
            if first[name] is None and c == tries:
                first[name] = k
        if all(v is not None for v in first.values()):
            break
    for name, k in first.items():
        print(f"  {name}: regressed every time from k = {k}")


def main() -> None:
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    m_seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    t0 = time.perf_counter()
    data = load_digits(test_fraction=0.3, seed=0)
    t_base = time.perf_counter()
    baselines = seeded_baselines("digits", data, k)
    print(f"  the {k} baseline runs took {time.perf_counter() - t_base:.1f}s (features cached "
          "after the first)")
    show("(a) seed-only reruns", verdicts(baselines, data, n_seeds, "accuracy"))
    show(f"(b1) weakened recipe: lr {WEAK_LR:g} instead of {RECIPE['lr']:g}",
         verdicts(baselines, data, m_seeds, "accuracy", lr=WEAK_LR))
    show(f"(b2) digit 8 keeps {KEEP:.0%} of its training images",
         verdicts(baselines, without_part_of_class(data, "8", KEEP), m_seeds, "recall[8]"))
    show(f"(b4, untuned) half the epochs: {RECIPE['epochs'] // 2} instead of "
         f"{RECIPE['epochs']}",
         verdicts(baselines, data, m_seeds, "accuracy", epochs=RECIPE["epochs"] // 2))
    lost_images(data, k)
    mnist = None if os.environ.get("SKIP_MNIST") else load_mnist_test()
    if mnist is None:
        why = "SKIP_MNIST is set" if os.environ.get("SKIP_MNIST") else f"{MNIST} is absent"
        print(f"\nMNIST scenarios skipped: {why}")
    else:
        baselines = seeded_baselines("MNIST test digits", mnist, k)
        show("(a') seed-only reruns", verdicts(baselines, mnist, n_seeds, "accuracy"))
        for keep in MNIST_KEEPS:
            show(f"(b3) digit 8 keeps {keep:.0%} of its training images",
                 verdicts(baselines, without_part_of_class(mnist, "8", keep), m_seeds,
                          "recall[8]"))
    print(f"\n{time.perf_counter() - t0:.0f}s in all")


if __name__ == "__main__":
    main()
