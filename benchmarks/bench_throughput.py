"""Training throughput (issue 11): the engine against a hand-written loop, side by side.

Both train the same model from the same random init on the same images (scikit-learn's
digits, resized once on the host to the run's size and tiled to ``--images``), with the
same batch size, Adam, and precision (bf16 autocast and channels_last on CUDA, float32 on
CPU). The hand loop is what a careful user writes for speed: the uint8 images resident on
the device, the batch order moved there once per epoch, normalisation on the device, no
host read in the loop. The figure is the last epoch's images per second (the first pays
one-time costs); the engine's comes from its own per-epoch clock, which leaves out its
per-epoch evaluation. Target: engine / hand loop >= 0.95 on a GPU, within 1.05 on CPU.

    python benchmarks/bench_throughput.py                 # the GPU's figures when there is one
    python benchmarks/bench_throughput.py --device cpu    # smaller defaults on CPU

GPU defaults: ResNet-50, 2,048 images of 224 px, batch 128, 3 epochs (the issue's set-up).
CPU defaults: ResNet-18, 512 images of 64 px, batch 64, 3 epochs.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torchvision
from torch import nn

from pytest_modelgate.data import ImageSet, Splits, load_digits
from pytest_modelgate.frameworks import cpu_name
from pytest_modelgate.train import run_finetune

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LR, SEED = 1e-3, 0


def images_at(size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits as RGB uint8 at ``size`` px, tiled to ``n`` images, with their labels."""
    digits = load_digits()
    pool = np.concatenate([digits.train.images, digits.test.images])
    labels = np.concatenate([digits.train.labels, digits.test.labels])
    x = torch.from_numpy(pool).float()[:, None]
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    rgb = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1)
    take = np.arange(n) % len(pool)
    return np.ascontiguousarray(rgb.numpy()[take]), labels[take]


def build(arch: str) -> nn.Module:
    torch.manual_seed(SEED)
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 10)
    return model


def engine(arch: str, splits: Splits, size: int, batch: int, epochs: int,
           device: str) -> float:
    run = run_finetune(lambda: build(arch), splits, epochs=epochs, freeze="none", lr=LR,
                       batch_size=batch, weights=None, device=device, image_size=size,
                       mean=MEAN, std=STD)
    h = run.history
    last = h[-1].seconds - (h[-2].seconds if len(h) > 1 else 0.0)
    return len(splits.train) / last


def hand_loop(arch: str, images: np.ndarray, labels: np.ndarray, batch: int, epochs: int,
              device: str) -> float:
    model = build(arch).to(device)
    cuda = device.startswith("cuda")
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x_all = torch.from_numpy(images).to(device)           # uint8, resident
    y_all = torch.from_numpy(labels).to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(SEED)
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    seconds = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(labels), generator=g).to(device)
        sync()
        t0 = time.perf_counter()
        for idx in order.split(batch):
            x = (x_all[idx].permute(0, 3, 1, 2).float().div_(255) - mean) / std
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=dtype, enabled=cuda):
                loss = nn.functional.cross_entropy(model(x).float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        seconds = time.perf_counter() - t0
    return len(labels) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    arch = args.arch or ("resnet50" if gpu else "resnet18")
    size = args.size or (224 if gpu else 64)
    n = args.images or (2048 if gpu else 512)
    batch = args.batch or (128 if gpu else 64)
    images, labels = images_at(size, n + 256)
    names = tuple(str(d) for d in range(10))
    splits = Splits(train=ImageSet(images[:n], labels[:n], names, name="train"),
                    test=ImageSet(images[n:], labels[n:], names, name="test"))
    where = torch.cuda.get_device_name(args.device) if gpu else cpu_name()
    print(f"{arch}, {n} images of {size} px, batch {batch}, Adam, "
          f"{'bf16 autocast + channels_last' if gpu else 'float32'}, last of {args.epochs} "
          f"epochs; {where}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.python_version()}")
    ratios = []
    for r in range(args.rounds):   # alternated, so drift hits both sides
        ours = engine(arch, splits, size, batch, args.epochs, args.device)
        hand = hand_loop(arch, images[:n], labels[:n], batch, args.epochs, args.device)
        ratios.append(ours / hand)
        print(f"round {r + 1}: engine {ours:.0f} img/s, hand loop {hand:.0f} img/s, "
              f"engine/hand {ours / hand:.3f}")
    target = 0.95 if gpu else 1 / 1.05
    best = max(ratios)
    print(f"throughput: engine/hand loop {np.median(ratios):.3f} (median of {len(ratios)}; "
          f"best {best:.3f}); target >= {target:.3f} on {'GPU' if gpu else 'CPU'}")


if __name__ == "__main__":
    main()
