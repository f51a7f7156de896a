"""Engine benchmarks (issue 3), measured side by side in one process.

1. Overhead: the same full fine-tune (EfficientNet-Lite0, scikit-learn digits at 64 px,
   batch 32, 2 epochs, Adam 1e-3, seed 0) through ``run_finetune`` and through a minimal
   hand-written PyTorch loop, alternated. The hand loop produces what the engine reports:
   test accuracy after every epoch and one evaluation pass over the train split at the end
   ("same outputs"); a bare loop that only predicts the test split once is shown too.
   Target: engine / hand loop (same outputs) <= 1.05.
2. Head-only: 10 epochs of head-only training through the engine (backbone features
   computed once) against a straightforward loop that runs the frozen backbone every epoch.
   Target: >= 5x faster, test accuracy within 1 point.

    python benchmarks/bench_engine.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from pytest_modelgate.data import load_digits
from pytest_modelgate.frameworks.torch.device import to_input
from pytest_modelgate.frameworks.torch.zoo import load_model
from pytest_modelgate.train import run_finetune

SIZE, BATCH, LR, SEED = 64, 32, 1e-3, 0


def hand_model(num_classes: int):
    loaded = load_model("efficientnet_lite0", image_size=SIZE)  # same weights, same BN fix
    model = loaded.module
    model._fc = nn.Linear(model._fc.in_features, num_classes)
    return model, loaded.preprocess


def predict(model, images, prep) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), BATCH * 2):
            out.append(model(to_input(images[i:i + BATCH * 2], prep, "cpu")).argmax(1))
    return torch.cat(out).numpy()


def train_epoch(model, opt, data, prep, y, g, frozen_backbone: bool) -> None:
    # A frozen backbone stays in eval mode: its BatchNorm statistics stay fixed.
    model.eval() if frozen_backbone else model.train()
    for idx in torch.randperm(len(y), generator=g).split(BATCH):
        idx = idx.numpy()
        loss = nn.functional.cross_entropy(
            model(to_input(data.train.images[idx], prep, "cpu")), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def hand_loop(data, epochs: int, *, head_only: bool, same_outputs: bool = False) -> float:
    torch.manual_seed(SEED)
    model, prep = hand_model(len(data.class_names))
    if head_only:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model._fc.parameters():
            p.requires_grad_(True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    y = torch.as_tensor(np.array(data.train.labels))
    g = torch.Generator().manual_seed(SEED)
    test_pred = None
    for _ in range(epochs):
        train_epoch(model, opt, data, prep, y, g, frozen_backbone=head_only)
        if same_outputs:   # the engine reports test accuracy after every epoch
            test_pred = predict(model, data.test.images, prep)
    if same_outputs:       # ... and evaluates the train split once at the end
        predict(model, data.train.images, prep)
    else:
        test_pred = predict(model, data.test.images, prep)
    return float(np.mean(test_pred == data.test.labels))


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    data = load_digits()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; digits {len(data.train)} train / {len(data.test)} test")

    engine, same, bare = [], [], []
    for _ in range(args.rounds):
        t, run = timed(lambda: run_finetune("efficientnet_lite0", data, epochs=args.epochs,
                                            freeze="none", image_size=SIZE, lr=LR,
                                            batch_size=BATCH, seed=SEED, device="cpu"))
        engine.append(t)
        t, acc_same = timed(lambda: hand_loop(data, args.epochs, head_only=False,
                                              same_outputs=True))
        same.append(t)
        t, acc_bare = timed(lambda: hand_loop(data, args.epochs, head_only=False))
        bare.append(t)
    e, s, b = (statistics.median(x) for x in (engine, same, bare))
    print(f"[1] full fine-tune, {args.epochs} epochs, {args.rounds} alternating rounds (medians)")
    print(f"    engine {e:.1f}s (test acc {run.accuracy:.3f}); hand loop, same outputs "
          f"{s:.1f}s (test acc {acc_same:.3f}); bare hand loop {b:.1f}s")
    print(f"    ratio engine / hand loop (same outputs): {e / s:.3f} (target <= 1.05); "
          f"engine / bare loop: {e / b:.3f}")

    t_engine, run = timed(lambda: run_finetune("efficientnet_lite0", data, epochs=10,
                                               freeze="backbone", image_size=SIZE, lr=LR,
                                               batch_size=BATCH, seed=SEED, device="cpu"))
    t_hand, acc = timed(lambda: hand_loop(data, 10, head_only=True))
    print("[2] head-only, 10 epochs")
    print(f"    engine {t_engine:.1f}s (test acc {run.accuracy:.3f}); frozen backbone every "
          f"epoch {t_hand:.1f}s (test acc {acc:.3f})")
    print(f"    speedup {t_hand / t_engine:.1f}x (target >= 5x); accuracy difference "
          f"{abs(run.accuracy - acc) * 100:.1f} points (target <= 1)")


if __name__ == "__main__":
    main()
