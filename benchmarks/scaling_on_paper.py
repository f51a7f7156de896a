"""Scaling a ResNet-50 fine-tune from 1 to 8 GPUs, on paper (issue 21).

No GPU is needed: this computes, from the constants below, the data-parallel efficiency
E(N, b) = t_compute / (t_compute + t_comm_exposed) of N ranks with b images per rank, for
ring all-reduce over NVLink and over PCIe, with and without overlapping the all-reduce with
the backward pass (PyTorch DDP's gradient buckets). Every constant is a figure cited in
BENCHMARKS.md or an assumption said there; change one and rerun to see what it moves.

    python benchmarks/scaling_on_paper.py [--images-per-second 3000]

Prints Markdown tables (pasted into BENCHMARKS.md) and the smallest per-GPU batch that keeps
8 GPUs at 90% or better.
"""

from __future__ import annotations

import argparse
import math

# --- the model ----------------------------------------------------------------------------
PARAMS = 25.6e6            # ResNet-50 parameters (torchvision: 25,557,032)
FORWARD_GFLOPS = 4.1       # per 224 px image (torchvision: 4.09)
TRAIN_FLOPS_FACTOR = 3     # forward + backward (about twice the forward)
BACKWARD_SHARE = 2 / 3     # of a step's compute: where the all-reduce can hide

# --- the GPU (H100 SXM) -------------------------------------------------------------------
IMAGES_PER_SECOND = 3000   # assumed per H100, bf16 autocast, channels_last, data on device
FAST_IMAGES_PER_SECOND = 7000  # MLPerf-class (DALI, fused kernels): the sensitivity case
BF16_DENSE_TFLOPS = 989    # H100 SXM datasheet, dense bf16 tensor cores

# --- the all-reduce -----------------------------------------------------------------------
BUCKET_BYTES = 25 * 2**20  # DDP's bucket_cap_mb=25 default
LATENCY_S = 30e-6          # assumed fixed cost of one NCCL all-reduce call on 8 GPUs
# Achieved ring all-reduce bus bandwidth (nccl-tests "busbw", comparable with one direction
# of the link): what a rank moves per second, each way.
BUS_BANDWIDTH = {
    "NVLink": 250e9,       # NVLink 4: 450 GB/s each way line rate, ~370 GB/s ring busbw at
                           # large sizes; 25 MB buckets sit below that (assumed 250)
    "PCIe": 30e9,          # PCIe Gen5 x16: 64 GB/s each way line rate; 8 GPUs through the
                           # host reach ~28-35 GB/s busbw (assumed 30)
}

GPUS = (1, 2, 4, 8)
PER_GPU_BATCHES = (16, 32, 64, 128)


def gradient_bytes(bytes_per_value: int = 4) -> float:
    """Bytes all-reduced per step: every parameter's gradient once (fp32 under autocast:
    parameters and their gradients stay fp32; bf16 only with a compression hook)."""
    return PARAMS * bytes_per_value


def compute_seconds(batch: int, images_per_second: float) -> float:
    """One rank's forward, backward and optimizer step on ``batch`` images."""
    return batch / images_per_second


def allreduce_seconds(gpus: int, nbytes: float, bus_bandwidth: float) -> float:
    """Ring all-reduce of ``nbytes`` in DDP's buckets: each rank sends (and receives)
    2(N-1)/N of the bytes, plus a fixed cost per bucket. Zero on one GPU."""
    if gpus == 1:
        return 0.0
    buckets = math.ceil(nbytes / BUCKET_BYTES)
    return buckets * LATENCY_S + 2 * (gpus - 1) / gpus * nbytes / bus_bandwidth


def exposed_seconds(comm: float, backward: float, nbytes: float, overlap: bool) -> float:
    """The all-reduce time the step waits for. Without overlap: all of it, after the
    backward. With overlap: buckets fill evenly during the backward and are reduced one
    after another as they fill; what runs past the backward's end is exposed (at least the
    last bucket, the first layers' gradients, which are ready only at the end)."""
    if comm == 0.0 or not overlap:
        return comm
    buckets = math.ceil(nbytes / BUCKET_BYTES)
    per_bucket = comm / buckets
    finish = 0.0
    for i in range(buckets):
        ready = backward * (i + 1) / buckets
        finish = max(finish, ready) + per_bucket
    return finish - backward


def efficiency(gpus: int, batch: int, link: str, *, overlap: bool,
               images_per_second: float = IMAGES_PER_SECOND,
               bytes_per_value: int = 4) -> tuple[float, float]:
    """E(N, b) and the all-reduce's seconds per step."""
    compute = compute_seconds(batch, images_per_second)
    nbytes = gradient_bytes(bytes_per_value)
    comm = allreduce_seconds(gpus, nbytes, BUS_BANDWIDTH[link])
    exposed = exposed_seconds(comm, BACKWARD_SHARE * compute, nbytes, overlap)
    return compute / (compute + exposed), comm


def smallest_batch(link: str, *, overlap: bool, gpus: int = 8, target: float = 0.90,
                   images_per_second: float = IMAGES_PER_SECOND,
                   bytes_per_value: int = 4) -> int:
    """The smallest per-GPU batch (a power of two) with E >= target."""
    batch = 1
    while efficiency(gpus, batch, link, overlap=overlap, images_per_second=images_per_second,
                     bytes_per_value=bytes_per_value)[0] < target:
        batch *= 2
    return batch


def both(gpus: int, batch: int, link: str, images_per_second: float) -> str:
    """E without and with overlap, as a table cell."""
    values = (efficiency(gpus, batch, link, overlap=overlap,
                         images_per_second=images_per_second)[0]
              for overlap in (False, True))
    return " / ".join(f"{value:.0%}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-second", type=float, default=IMAGES_PER_SECOND,
                        help="Training images per second of one H100")
    ips = parser.parse_args().images_per_second

    nbytes = gradient_bytes()
    print(f"gradients per step: {nbytes / 1e6:.1f} MB fp32, {gradient_bytes(2) / 1e6:.1f} MB "
          f"bf16, in {math.ceil(nbytes / BUCKET_BYTES)} buckets of 25 MiB (fp32)")
    flops = FORWARD_GFLOPS * TRAIN_FLOPS_FACTOR
    print(f"training compute: {flops:.1f} GFLOP/image; {ips:.0f} images/s per H100 is "
          f"{flops * ips / 1e3:.1f} TFLOP/s, {flops * ips / 1e3 / BF16_DENSE_TFLOPS:.1%} "
          f"of the dense bf16 peak")
    for gpus in GPUS[1:]:
        share = 2 * (gpus - 1) / gpus
        print(f"ring traffic per GPU, N={gpus}: {share:.2f} x {nbytes / 1e6:.1f} MB = "
              f"{share * nbytes / 1e6:.1f} MB each way")
    print()
    print(f"E(N, b) at {ips:.0f} images/s per GPU, fp32 gradients "
          "(no overlap / DDP overlap)")
    print()
    print("| N | b per GPU | global batch | compute ms | NVLink comm ms | E NVLink "
          "| PCIe comm ms | E PCIe |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for gpus in GPUS:
        for batch in PER_GPU_BATCHES:
            cells = []
            for link in BUS_BANDWIDTH:
                comm = allreduce_seconds(gpus, nbytes, BUS_BANDWIDTH[link])
                cells += [f"{comm * 1e3:.2f}", both(gpus, batch, link, ips)]
            print(f"| {gpus} | {batch} | {gpus * batch} | "
                  f"{compute_seconds(batch, ips) * 1e3:.1f} | {' | '.join(cells)} |")
    print()
    print("The plugin's default batch_size=32 (global) split over the ranks, "
          "no overlap / DDP overlap:")
    print()
    print("| N | b per GPU | E NVLink | E PCIe |")
    print("| --- | --- | --- | --- |")
    for gpus in GPUS[1:]:
        batch = 32 // gpus
        cells = [both(gpus, batch, link, ips) for link in BUS_BANDWIDTH]
        print(f"| {gpus} | {batch} | {' | '.join(cells)} |")
    print()
    print("Smallest per-GPU batch keeping 8 GPUs at >= 90% (global batch in brackets):")
    print()
    print("| case | NVLink, no overlap | NVLink, overlap | PCIe, no overlap | PCIe, overlap |")
    print("| --- | --- | --- | --- | --- |")
    cases = [(f"{ips:.0f} img/s, fp32 gradients", ips, 4),
             (f"{ips:.0f} img/s, bf16 gradients (compression hook)", ips, 2),
             (f"{FAST_IMAGES_PER_SECOND} img/s (MLPerf-class), fp32 gradients",
              FAST_IMAGES_PER_SECOND, 4)]
    for label, speed, width in cases:
        cells = []
        for link in BUS_BANDWIDTH:
            for overlap in (False, True):
                b = smallest_batch(link, overlap=overlap, images_per_second=speed,
                                   bytes_per_value=width)
                cells.append(f"{b} ({8 * b})")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
