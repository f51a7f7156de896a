"""The fixed cost of running a fine-tune as a Ray Train job (``--modelgate-ray``, issue 21).

The same PyTorch fine-tune (a small CNN on three classes of scikit-learn's digit scans,
resized to ``--image-size``, the whole network trained on the CPU, one worker) is timed
in this process and as a Ray Train job on a local Ray instance of this machine's cores:
the instance's start (once per session), the first job (cold: the controller and the worker
import Ray Train and torch), later jobs on the warm instance (the per-run cost), and the
shutdown. Each figure is wall-clock seconds around ``run_finetune``; the runs' accuracies
are printed to show they train the same model.

    python benchmarks/bench_ray.py [--epochs 3] [--image-size 32] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def digits(image_size: int):
    from PIL import Image
    from sklearn.datasets import load_digits

    from pytest_modelgate.data import stratified_split

    bunch = load_digits()
    keep = np.isin(bunch.target, [0, 1, 7])
    scans = np.round(bunch.images[keep] * (255 / 16)).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(s).resize((image_size, image_size)))
                       for s in scans])
    labels = np.array([{0: 0, 1: 1, 7: 2}[t] for t in bunch.target[keep]])
    return stratified_split(images, labels, class_names=["zero", "one", "seven"], seed=0)


def small_cnn():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))


def timed(run):
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="jobs on the warm instance")
    args = parser.parse_args()

    import ray

    from pytest_modelgate.frameworks.torch.on_ray import LOCAL_OBJECT_STORE_BYTES
    from pytest_modelgate.train import run_finetune

    data = digits(args.image_size)
    kwargs = dict(epochs=args.epochs, freeze="none", lr=1e-2, batch_size=64, device="cpu",
                  image_size=args.image_size, mean=(0.5,), std=(0.5,))
    cores = os.cpu_count() or 1
    print(f"{platform.processor() or platform.machine()}, {cores} cores; ray "
          f"{ray.__version__}; {len(data.train)} train / {len(data.test)} test images at "
          f"{args.image_size} px, {args.epochs} epochs, full fine-tune, CPU, one worker")

    run_finetune(small_cnn, data, **{**kwargs, "epochs": 1})  # torch's own first-use costs
    here_s, here = timed(lambda: run_finetune(small_cnn, data, **kwargs))
    print(f"in this process:             {here_s:6.2f} s  (accuracy {here.accuracy:.3f}, "
          f"{here.seconds:.2f} s on the clock)")

    init_s, _ = timed(lambda: ray.init(address="local", num_cpus=cores,
                                       include_dashboard=False,
                                       object_store_memory=LOCAL_OBJECT_STORE_BYTES))
    print(f"ray.init (local, once):      {init_s:6.2f} s")
    try:
        cold_s, cold = timed(lambda: run_finetune(small_cnn, data, ray="auto", **kwargs))
        print(f"first Ray job (cold):        {cold_s:6.2f} s  (accuracy {cold.accuracy:.3f}, "
              f"{cold.seconds:.2f} s on the clock)  +{cold_s - here_s:.2f} s")
        warm = [timed(lambda: run_finetune(small_cnn, data, ray="auto", **kwargs))[0]
                for _ in range(args.repeat)]
        warm_s = float(np.median(warm))
        print(f"later Ray jobs (median of {len(warm)}): {warm_s:6.2f} s  "
              f"+{warm_s - here_s:.2f} s over this process")
    finally:
        down_s, _ = timed(ray.shutdown)
    print(f"ray.shutdown:                {down_s:6.2f} s")
    print(f"a session with n Ray runs pays about {init_s + down_s + cold_s - here_s:.1f} s "
          f"+ (n - 1) x {warm_s - here_s:.1f} s over training them here")


if __name__ == "__main__":
    main()
