"""One rank's share of a data-parallel run (``torch.distributed``): its rows of each global
batch, its chunk of an evaluation pass and the gathered outputs, the model wrapped in
``DistributedDataParallel``, and the few numbers every rank must agree on. With a world of
one rank every function is the identity, so the one-process path is unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import ModelGateError, user_error_frames
from ...train.ranks import World
from .device import Order

if TYPE_CHECKING:
    import torch
    from torch import nn

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

ONE_RANK = World()  # the one-process run


def shard(rows: Order, world: World) -> Order:
    """This rank's rows of a global batch: every ``size``-th from its rank on, so the ranks'
    rows together are the batch (the global batch of the one-process run)."""
    if world.size == 1:
        return rows
    return Order(rows.host[world.rank::world.size], rows.device[world.rank::world.size])


def chunk(n: int, world: World) -> tuple[int, int]:
    """This rank's contiguous rows [start, end) of an evaluation pass over ``n`` rows."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (world.rank < extra)


def gather_rows(out: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """Every rank's chunk of outputs (``chunk``), in row order, on every rank."""
    import torch
    import torch.distributed as dist

    if world.size == 1:
        return out
    longest = -(-n // world.size)
    padded = torch.zeros((longest, *out.shape[1:]), dtype=out.dtype, device=out.device)
    padded[:len(out)] = out
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    spans = [chunk(n, World(r, world.size)) for r in range(world.size)]
    return torch.cat([part[:end - start] for part, (start, end) in zip(parts, spans,
                                                                          strict=True)])


def check_rows(n: int, split: str, world: World) -> None:
    """Every rank needs at least one row of each split to evaluate."""
    if n < world.size:
        raise ModelGateError(f"the {split} split has {n} images, fewer than workers="
                             f"{world.size}: every rank needs one; use fewer workers")


def all_sum(values: list[torch.Tensor], world: World) -> list[torch.Tensor]:
    """The sums over the ranks of scalar tensors on the device (one collective)."""
    import torch
    import torch.distributed as dist

    if world.size == 1:
        return values
    stacked = torch.stack([v.double() for v in values])
    dist.all_reduce(stacked)
    return [s.to(v.dtype) for s, v in zip(stacked, values, strict=True)]


def lead_says(value: float, world: World, device: str) -> float:
    """Rank 0's ``value`` on every rank: the decisions the ranks must share (the race's
    budget, an epoch's seconds), read on rank 0's clock."""
    import torch
    import torch.distributed as dist

    if world.size == 1:
        return value
    box = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(box, src=0)
    return float(box.item())


def sync_buffers(model: nn.Module, world: World) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank: in training each
    rank's last forward updated its own from its shard."""
    import torch.distributed as dist

    if world.size == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def barrier(world: World, device: str) -> None:
    """Wait for every rank (an epoch's clock is read after it: the slowest rank's time)."""
    import torch.distributed as dist

    if world.size == 1:
        return
    if device.startswith("cuda"):
        dist.barrier(device_ids=[int(device.partition(":")[2] or 0)])
    else:
        dist.barrier()


def wrap(model: nn.Module, world: World, device: str) -> Any:
    """``model`` in ``DistributedDataParallel`` (rank 0's weights broadcast to all), or as
    it is for one rank."""
    from torch.nn.parallel import DistributedDataParallel

    if world.size == 1:
        return model
    ids = [int(device.partition(":")[2] or 0)] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def sync_batchnorm(model: nn.Module, world: World, device: str) -> nn.Module:
    """BatchNorm layers as ``SyncBatchNorm``: statistics over the global batch.

    Raises:
        ModelGateError: on CPU, where PyTorch's SyncBatchNorm does not run.
    """
    from torch import nn

    if world.size == 1:
        return model
    if not device.startswith("cuda"):
        raise ModelGateError("sync_batchnorm=True needs CUDA GPUs (PyTorch's SyncBatchNorm "
                             f"does not run on {device}); leave it False on CPU")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
