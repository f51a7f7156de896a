"""Where PyTorch's ranks are started and joined (``train.ranks`` decides which): local rank
processes through PyTorch's own launcher (``torch.multiprocessing``), the world ``torchrun``
set up, or a Ray Train job. Each rank runs ``train.ranks.run_rank``; the engine does the
rank's share (``engine.train`` with a ``World``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ModelGateError, user_error_frames
from ...train.ranks import RankJob, RankResult

if TYPE_CHECKING:
    from ...data import Splits
    from ...train.config import TrainConfig
    from .zoo import LoadedModel

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def backend(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    from .device import resolve_device

    return "nccl" if resolve_device(device).startswith("cuda") else "gloo"


def share_from_lead(value: Any) -> Any:
    """Rank 0's ``value`` on every rank of the torchrun world (pickled over the process
    group); the group is set up on first use."""
    import torch.distributed as dist

    from ...train.ranks import torchrun_world

    world = torchrun_world()
    assert world is not None
    join_world()
    box = [value if world.lead else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def join_world() -> None:
    """Set up the torchrun world's default process group once per process (gloo: it also
    carries the objects ``share_from_lead`` sends; NCCL runs get their own group)."""
    raise NotImplementedError


def launch(loaded: LoadedModel, data: Splits, config: TrainConfig, *, place: str,
           progress: Callable[[str], None] | None,
           head_finder: Callable[[Any], str | None] | None,
           ray: str | None) -> RankResult | None:
    """Run ``config.workers`` ranks at ``place`` and return rank 0's result."""
    job = RankJob("torch", loaded, data, config,
                  head_finder(loaded.module) if head_finder is not None else None)
    if place == "spawn":
        return spawn(job, progress)
    if place == "torchrun":
        return in_world(job, progress)
    if place == "ray":
        from .on_ray import on_ray

        return on_ray(job, ray, progress)
    raise ModelGateError(f"no PyTorch launcher for place={place!r}")


def in_world(job: RankJob, progress: Callable[[str], None] | None) -> RankResult | None:
    raise NotImplementedError


def spawn(job: RankJob, progress: Callable[[str], None] | None) -> RankResult:
    raise NotImplementedError
