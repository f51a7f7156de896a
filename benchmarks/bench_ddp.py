"""Data-parallel fine-tuning on this machine's CPU cores (issue 21): 2 ranks x 1 thread
(``workers=2``, DistributedDataParallel over gloo) against 1 process x 2 threads, the same
global batch, the same model, data, epochs and seed.

The model is the example suite's: ImageNet-pretrained EfficientNet-Lite0 on scikit-learn's
digits at 64 px, every layer trained (``freeze="none"``). Printed per side: training images
per second (the run's own clock: epochs only, warm-up and evaluation off it), wall seconds
around the whole call (so the fixed cost of starting the ranks shows as wall minus train),
test accuracy; then the throughput ratio (target at least 0.85) and the accuracy gap (target
within 1 point). Cache off. Takes a few minutes on 2 cores.

    python benchmarks/bench_ddp.py [--epochs 3] [--image-size 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def run(workers: int, args: argparse.Namespace):
    import torch

    from pytest_modelgate.data import load_digits
    from pytest_modelgate.train import run_finetune

    data = load_digits(test_fraction=0.3, seed=0)
    # One process gets every core; each rank gets its share (the launcher's rule).
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    result = run_finetune(args.model, data, epochs=args.epochs, freeze=args.freeze,
                          image_size=args.image_size, batch_size=args.batch_size, lr=1e-3,
                          seed=args.seed, device="cpu", workers=workers)
    wall = time.perf_counter() - start
    images = len(data.train.images) * len(result.history)
    accuracy = float((result.y_pred == result.y_true).mean())
    return images / result.seconds, wall, result.seconds, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--freeze", default="none")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{platform.node()} {os.cpu_count()} cores, {args.model} at {args.image_size} px, "
          f"freeze={args.freeze}, {args.epochs} epochs, global batch {args.batch_size}")
    rows = {}
    for workers in (1, 2):
        rows[workers] = run(workers, args)
        ips, wall, train, acc = rows[workers]
        print(f"workers={workers}: {ips:7.1f} train images/s, train {train:6.1f} s, "
              f"wall {wall:6.1f} s (fixed cost {wall - train:5.1f} s), test acc {acc:.4f}")
    print(f"throughput ratio 2 ranks x 1 thread / 1 process x 2 threads: "
          f"{rows[2][0] / rows[1][0]:.2f} (target >= 0.85)")
    print(f"accuracy gap: {100 * (rows[2][3] - rows[1][3]):+.2f} points (target within 1)")


if __name__ == "__main__":
    main()
