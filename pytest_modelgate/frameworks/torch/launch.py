"""Where PyTorch's ranks are started and joined (``train.ranks`` decides which): local rank
processes through PyTorch's own launcher (``torch.multiprocessing``), the world ``torchrun``
set up, or a Ray Train job. Each rank runs ``train.ranks.run_rank``; the engine does the
rank's share (``engine.train`` with a ``World``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ModelGateError, user_error_frames
from ...train.ranks import RankJob, RankResult, World

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


def worst_status(status: int) -> int:
    """The highest exit status over the torchrun world's ranks (each rank's session ends
    with it, so the world has one verdict)."""
    import torch
    import torch.distributed as dist

    join_world()
    box = torch.tensor([status], dtype=torch.int64)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box.item())


def join_world() -> None:
    """Set up the torchrun world's default process group once per process: gloo for CPU
    tensors (the objects ``share_from_lead`` sends, the session's exit status, a CPU run)
    and, where CUDA is, NCCL for CUDA tensors (a GPU run's gradients)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo",
                                timeout=_timeout())


def _timeout() -> Any:
    from datetime import timedelta

    from ...train.ranks import COLLECTIVE_TIMEOUT_S

    return timedelta(seconds=COLLECTIVE_TIMEOUT_S)


def launch(loaded: LoadedModel, data: Splits, config: TrainConfig, *, place: str,
           progress: Callable[[str], None] | None,
           head_finder: Callable[[Any], str | None] | None,
           ray: str | None) -> RankResult | None:
    """Run ``config.workers`` ranks at ``place`` and return rank 0's result, its record
    saying where the ranks ran."""
    import dataclasses

    # The ranks train; none races, so the scratch factory (often a closure) stays here.
    job = RankJob("torch", dataclasses.replace(loaded, fresh=None), data, config,
                  head_finder(loaded.module) if head_finder is not None else None)
    if place == "spawn":
        result = spawn(job, progress)
    elif place == "torchrun":
        result = in_world(job, progress)
    elif place == "ray":
        from .on_ray import on_ray

        result = on_ray(job, ray, progress)
    else:
        raise ModelGateError(f"no PyTorch launcher for place={place!r}")
    if result is not None:
        result.trained.details["ranks"] = place
    return result


def in_world(job: RankJob, progress: Callable[[str], None] | None) -> RankResult | None:
    """This rank's share of a run over the torchrun world; rank 0 returns the result. A
    CUDA run talks over a NCCL group of the whole world, made once."""
    from ...train.ranks import run_rank, torchrun_world
    from .. import named

    world = torchrun_world()
    assert world is not None
    join_world()
    name = backend(job.config.device)
    return run_rank(named("torch"), job, World(world.rank, world.size, world.local_rank, name),
                    progress)


def _store(workers: int) -> Any:
    """The ranks' rendezvous: a ``TCPStore`` served by this process, which outlives every
    rank (a rank 0 that hosted it and exited first left the others' teardown without it:
    measured, ``terminate called without an active exception`` and SIGABRT in rank 1). On
    ``MASTER_PORT`` when the user set one, else on a port the system hands out.

    Raises:
        ModelGateError: ``MASTER_PORT`` names a port in use.
    """
    import os

    import torch.distributed as dist

    chosen = os.environ.get("MASTER_PORT", "")
    try:
        return dist.TCPStore("127.0.0.1", int(chosen) if chosen.isdigit() else 0, workers + 1,
                             is_master=True, timeout=_timeout(), wait_for_workers=False)
    except (RuntimeError, OSError) as exc:
        raise ModelGateError(
            f"MASTER_PORT={chosen} is in use ({exc}): the workers' ranks meet on it; unset "
            "MASTER_PORT (a free port is then picked) or choose a free one") from None


def _check_gpus(config: TrainConfig) -> None:
    """A CUDA run needs a GPU per rank."""
    from .device import gpu_count, resolve_device

    if resolve_device(config.device).startswith("cuda"):
        count = gpu_count()
        if config.workers > count:
            raise ModelGateError(
                f"workers={config.workers} but {count} CUDA GPU(s) are visible: a CUDA run "
                f"has one rank per GPU; use workers={count} or fewer, or device='cpu'")


def _threads(workers: int) -> int:
    """Each CPU rank's share of the cores (a user's OMP_NUM_THREADS decides instead)."""
    import os

    from .device import core_share

    xdist = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    return core_share(workers * (int(xdist) if xdist.isdigit() and int(xdist) > 1 else 1))


def spawn(job: RankJob, progress: Callable[[str], None] | None) -> RankResult:
    """``job`` on ``workers`` local rank processes started by ``torch.multiprocessing``
    (spawn); rank 0's result back through a queue, with its progress lines on the way.

    The ranks are watched: one that raises or dies ends the run within seconds, the others
    stopped (SIGTERM, then SIGKILL), with an error naming the rank; so does Ctrl-C.
    """
    import pickle

    import torch.multiprocessing as mp

    config = job.config
    _check_gpus(config)
    store = _store(config.workers)
    queue = mp.get_context("spawn").SimpleQueue()
    name = backend(config.device)
    try:
        context = mp.start_processes(
            _rank_main, args=(job, config.workers, name, store.port, queue,
                              _threads(config.workers)),
            nprocs=config.workers, join=False, start_method="spawn")
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ModelGateError(
            f"workers={config.workers} sends the model, the data and transform= to "
            f"{config.workers} rank processes, so they must pickle: {exc}. Define the model "
            "class, factory and transform at module level (not inside a function, not a "
            "lambda)") from None
    inbox = _Inbox(queue, progress)
    try:
        while not context.join(timeout=0.2, grace_period=5):
            inbox.read()
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
        inbox.read()
        raise ModelGateError(_rank_failure(exc, inbox, config.workers)) from None
    except BaseException:
        _stop(context)
        raise
    inbox.read()
    if inbox.result is None:
        raise ModelGateError(f"workers={config.workers}: rank 0 ended without a result")
    return inbox.result


class _Inbox:
    """What the ranks sent: progress lines (passed on), rank 0's result, user errors."""

    def __init__(self, queue: Any, progress: Callable[[str], None] | None) -> None:
        self.queue = queue
        self.progress = progress
        self.result: RankResult | None = None
        self.errors: dict[int, str] = {}

    def read(self) -> None:
        while not self.queue.empty():
            kind, rank, payload = self.queue.get()
            if kind == "progress" and self.progress is not None:
                self.progress(payload)
            elif kind == "result":
                self.result = payload
            elif kind == "error":
                self.errors[rank] = payload


def _rank_failure(exc: Exception, inbox: _Inbox, workers: int) -> str:
    """The message of a failed rank: its own ModelGateError as it is, else its traceback,
    or the signal that killed it."""
    rank = getattr(exc, "error_index", None)
    if rank in inbox.errors:
        return inbox.errors[rank]
    signal_name = getattr(exc, "signal_name", None)
    if signal_name:
        return (f"workers={workers}: rank {rank} was killed by {signal_name} (from outside, "
                f"or the out-of-memory killer: try fewer workers or a smaller batch_size); "
                f"the other ranks were stopped")
    return (f"workers={workers}: rank {rank} failed; the other ranks were stopped. "
            f"Its traceback:{str(exc).partition(':')[2] or exc}")


def _stop(context: Any) -> None:
    """Stop every rank still running (Ctrl-C, or an error here): SIGTERM, then SIGKILL."""
    for process in context.processes:
        if process.is_alive():
            process.terminate()
    for process in context.processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def _rank_main(rank: int, job: RankJob, size: int, name: str, port: int, queue: Any,
               threads: int) -> None:
    """One spawned rank: join the group, train its share, send rank 0's result."""
    import copy
    import dataclasses
    import os

    import torch
    import torch.distributed as dist

    from ...train.ranks import run_rank
    from .. import named

    _die_with_parent()
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)
    store = dist.TCPStore("127.0.0.1", port, size + 1, is_master=False, timeout=_timeout())
    dist.init_process_group(name, store=store, rank=rank, world_size=size, timeout=_timeout())
    # A tensor sent to a spawned process lives in shared memory: without a copy of its
    # own, every rank's optimizer and BatchNorm would write to the same weights.
    job = dataclasses.replace(job, loaded=dataclasses.replace(
        job.loaded, module=copy.deepcopy(job.loaded.module)))
    try:
        result = run_rank(named("torch"), job, World(rank, size, rank, name),
                          lambda line: queue.put(("progress", rank, line)))
        if result is not None:
            queue.put(("result", rank, result))
    except ModelGateError as exc:
        queue.put(("error", rank, str(exc)))
        raise
    finally:
        dist.destroy_process_group()
    _leave()


def _leave() -> None:
    """End a rank that finished: its result is in the queue's pipe, so skip the
    interpreter's teardown, where gloo's threads, still referenced by the wrapped model,
    were destroyed running ("terminate called without an active exception": SIGABRT in
    about one run in ten here, after the work was done)."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this rank when the process that spawned it dies (a
    SIGKILLed pytest leaves no rank behind)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
