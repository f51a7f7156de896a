"""PyTorch ranks as a Ray Train job (``--modelgate-ray``): this process is the driver.

Each Ray Train worker is one rank: Ray Train sets up the process group (gloo between CPU
workers, NCCL between GPUs) and the worker runs ``train.ranks.run_rank``. Rank 0 sends its
progress lines and its ``RankResult`` back through a Ray queue; the driver forwards the
lines as they come and returns the result, so the run record is the one every other place
makes. ``--modelgate-ray=local`` starts a Ray instance for the session
(``shutdown_local_ray`` ends it when the session does); any other address joins a cluster
that is already running, and is left running.

Ray is imported only here, when a run goes to Ray.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import AdapterUnavailableError, ModelGateError, user_error_frames
from ...options import OPTION_RAY
from ...train.ranks import COLLECTIVE_TIMEOUT_S, RankJob, RankResult, World, run_rank

if TYPE_CHECKING:
    from types import ModuleType

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

RAY_EXTRA = "pip install 'pytest-modelgate[ray]'"
# A session's own Ray instance holds little in its object store (one job, one result at a
# time): a small store leaves the machine's shared memory to the workers.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 ** 2
# Seconds to wait for a cluster's head to accept a TCP connection before saying it is not
# there (ray.init itself retries for about a minute).
CONNECT_TIMEOUT_S = 5.0
# Seconds between two looks at rank 0's queue while the job runs.
POLL_S = 0.5


class _LocalRay:
    """Whether this process started the Ray instance it uses (``--modelgate-ray=local``)."""

    started = False


def import_ray(address: str) -> ModuleType:
    """Ray with Ray Train, or a ModelGateError that says how to install it."""
    try:
        import ray
        import ray.train.torch  # noqa: F401
        import ray.util.queue  # noqa: F401
    except ImportError as exc:
        raise AdapterUnavailableError(
            f"{OPTION_RAY}={address} runs fine-tunes as Ray Train jobs, and Ray Train is not "
            f"installed ({exc}): {RAY_EXTRA}, or leave {OPTION_RAY} out to train in this "
            f"process") from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port)


def check_reachable(address: str) -> None:
    """Fail within seconds when nothing listens at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``), where ``ray.init`` would retry for a minute."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ModelGateError(
            f"{OPTION_RAY}={address}: no Ray cluster answers at {host}:{port} ({exc}); start "
            f"its head there (`ray start --head --port={port}`) or fix the address: HOST:PORT "
            f"is the head's GCS port (6379 by default), ray://HOST:PORT its Ray Client port "
            f"(10001), local starts one here for the session") from None


def connect(ray: ModuleType, address: str) -> None:
    """Join the cluster at ``address`` once per process; ``local`` starts one here for the
    session. A process already connected (``ray.is_initialized()``) keeps its cluster."""
    if ray.is_initialized():
        return
    if address == "local":
        # The workers unpickle the user's model factory by reference: they import the test
        # modules and conftests from the driver's sys.path (pytest puts test folders there,
        # and Ray passes on only the working directory).
        path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
        _LocalRay.started = True
        return
    if address != "auto":
        check_reachable(address)
    elif os.environ.get("RAY_ADDRESS"):
        check_reachable(os.environ["RAY_ADDRESS"])  # what ``auto`` reads first
    try:
        ray.init(address=address)
    except ConnectionError as exc:
        if address == "auto":
            raise ModelGateError(
                f"{OPTION_RAY}=auto: no Ray cluster runs on this machine ({exc}); start one "
                f"(`ray start --head`), give the head's address (HOST:PORT or "
                f"ray://HOST:PORT), or use {OPTION_RAY}=local to start one for the "
                f"session") from None
        raise ModelGateError(f"{OPTION_RAY}={address}: could not join the Ray cluster there "
                             f"({exc}); check the address and that the cluster runs the "
                             f"same Ray and Python versions as this machine") from None


def shutdown_local_ray() -> None:
    """End the Ray instance ``--modelgate-ray=local`` started in this process, if any (a
    cluster this process only joined keeps running)."""
    if not _LocalRay.started:
        return
    import ray

    ray.shutdown()
    _LocalRay.started = False


def placement(ray: ModuleType, job: RankJob, address: str) -> bool:
    """Whether the job's workers take GPUs (device ``cuda``, or ``auto`` on a cluster that
    has GPUs), after checking the cluster has enough for ``workers`` of them: Ray Train
    would wait for missing resources forever."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    device, workers = job.config.device, job.config.workers
    use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    have, kind = (gpus, "GPU") if use_gpu else (cpus, "CPU")
    if workers > have:
        fix = "device='cpu', " if use_gpu and device == "auto" else ""
        raise ModelGateError(
            f"workers={workers} on the Ray cluster at {OPTION_RAY}={address}: each worker "
            f"takes one {kind}, and the cluster has {have:g} {kind}s ({cpus:g} CPUs, {gpus:g} "
            f"GPUs in all), so Ray would wait for them forever; use workers={int(have) or 1} "
            f"or fewer, {fix}or add nodes to the cluster")
    return use_gpu


def ray_job(job: RankJob, use_gpu: bool) -> RankJob:
    """The job as Ray's workers run it: each sees its own GPU (``cuda``, not the driver's
    ``cuda:N``), and a worker without one trains on the CPU it was given."""
    device = job.config.device
    device = ("cuda" if device.startswith("cuda") else device) if use_gpu else "cpu"
    if device == job.config.device:
        return job
    return dataclasses.replace(job, config=dataclasses.replace(job.config, device=device))


def _worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: its rank of the job in the process group Ray Train
    set up; rank 0 sends its progress lines and its result to the driver."""
    import ray.train
    import torch.distributed as dist

    from .. import named

    context = ray.train.get_context()
    queue = config["queue"]
    world = World(rank=context.get_world_rank(), size=context.get_world_size(),
                  local_rank=context.get_local_rank(),
                  backend=dist.get_backend() if dist.is_initialized() else "")
    job: RankJob = config["job"]
    result = run_rank(named(job.framework), job, world,
                      lambda line: queue.put(("progress", line)))
    if world.lead:
        queue.put(("result", result))


def _failure(exc: BaseException, address: str, workers: int) -> ModelGateError:
    """A failed Ray Train job as a ModelGateError naming the first failed rank: a rank's
    own ModelGateError (about the user's input) keeps its class and message; any other
    error comes with the worker's traceback, as Ray Train reports it."""
    failures = getattr(exc, "worker_failures", None) or {}
    if not failures:
        return ModelGateError(f"the Ray Train job at {OPTION_RAY}={address} failed: {exc}")
    rank = min(failures)
    error = failures[rank]
    if isinstance(error, ModelGateError):
        return type(error)(f"rank {rank} of {workers} on Ray: "
                           f"{error.args[0] if error.args else error}")
    return ModelGateError(
        f"rank {rank} of {workers} failed in the Ray Train job at {OPTION_RAY}={address} "
        f"({len(failures)} of {workers} failed): {type(error).__name__}: {error}\n{exc}")


def _drain(queue: Any, progress: Callable[[str], None] | None, block: bool
           ) -> tuple[RankResult | None, bool]:
    """The queue's next message (waiting up to ``POLL_S`` when ``block``): progress lines
    go to ``progress``; returns rank 0's result if it came, and whether anything did."""
    from ray.util.queue import Empty

    try:
        kind, value = queue.get(block=block, timeout=POLL_S if block else None)
    except Empty:
        return None, False
    if kind == "progress":
        if progress is not None:
            progress(value)
        return None, True
    return value, True


def _run(trainer: Any, queue: Any, progress: Callable[[str], None] | None, address: str,
         workers: int) -> RankResult:
    """``trainer.fit()`` in a thread (Ray Train would otherwise take over this process's
    Ctrl-C handler), forwarding rank 0's progress lines here as they come."""
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - handed to the driver's thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="modelgate-ray-fit", daemon=True)
    thread.start()
    result: RankResult | None = None
    while thread.is_alive():
        got, _ = _drain(queue, progress, block=True)
        result = got or result
    thread.join()
    more = True
    while more:  # what rank 0 sent just before the job ended
        got, more = _drain(queue, progress, block=False)
        result = got or result
    if "error" in outcome:
        raise _failure(outcome["error"], address, workers) from None
    if result is None:
        raise ModelGateError(f"the Ray Train job at {OPTION_RAY}={address} ended without "
                             f"rank 0's result")
    return result


def on_ray(job: RankJob, address: str, progress: Callable[[str], None] | None
           ) -> RankResult:
    """Run ``job`` as a Ray Train job of ``job.config.workers`` workers on the cluster at
    ``address`` (``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT``); returns rank
    0's result, its details saying the ranks ran on Ray.

    Raises:
        ModelGateError: Ray Train is not installed, no cluster answers at ``address``, the
            cluster has fewer CPUs (GPUs) than ``workers``, or a rank failed.
    """
    ray = import_ray(address)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    connect(ray, address)
    use_gpu = placement(ray, job, address)
    # The queue's actor takes no CPU: the workers may need every one of them.
    queue = Queue(actor_options={"num_cpus": 0})
    try:
        with tempfile.TemporaryDirectory(prefix="modelgate-ray-") as storage:
            trainer = TorchTrainer(
                _worker,
                train_loop_config={"job": ray_job(job, use_gpu), "queue": queue},
                scaling_config=ScalingConfig(num_workers=job.config.workers,
                                             use_gpu=use_gpu),
                torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo",
                                         timeout_s=int(COLLECTIVE_TIMEOUT_S)),
                run_config=RunConfig(storage_path=storage,
                                     name=f"modelgate-{uuid.uuid4().hex[:8]}"))
            result = _run(trainer, queue, progress, address, job.config.workers)
    finally:
        queue.shutdown()
    result.trained.details["ranks"] = "ray"
    return result
