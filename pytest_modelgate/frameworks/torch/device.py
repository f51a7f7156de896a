"""Where a PyTorch run's tensors live and how they get there: the device (``auto``, xdist
workers spread over GPUs), its facts for the report, the CPU share of an xdist worker,
synchronised timing, autocast, and a split's uint8 pixels served to the device a batch at a
time (resident on the GPU when they fit, else through one pinned buffer)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ModelGateError, user_error_frames
from .. import cpu_name, xdist_gpu
from .zoo import Preprocess

if TYPE_CHECKING:
    import torch

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist.

    Under pytest-xdist with several GPUs, ``auto`` and ``cuda`` give each worker its own:
    ``cuda:{worker index modulo GPU count}`` (``cuda:N`` pins one).
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return _spread(torch.cuda.device_count())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelGateError(f"device={device!r} but no CUDA GPU is visible; use device='auto'")
    if device == "cuda":
        return _spread(torch.cuda.device_count())
    if device.startswith("cuda:"):
        index, count = device.partition(":")[2], torch.cuda.device_count()
        if not index.isdigit() or int(index) >= count:
            raise ModelGateError(f"device={device!r} but {count} CUDA GPU(s) are visible "
                                 f"(cuda:0 to cuda:{count - 1}); use device='cuda' or 'auto'")
    return device


def gpu_count() -> int:
    """CUDA GPUs torch sees; 0 where torch is not installed (no GPU test can run)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _spread(count: int) -> str:
    index = xdist_gpu(count)
    return "cuda" if index is None else f"cuda:{index}"


def device_facts(device: str) -> dict[str, Any]:
    """What the report and run record say of where a run ran: the device model, the dtype
    autocast used (None: full float32) and whether channels_last was on."""
    import torch

    if device.startswith("cuda"):
        return {"device_name": torch.cuda.get_device_name(device),
                "autocast_dtype": str(autocast_dtype(device)).replace("torch.", ""),
                "channels_last": True}
    return {"device_name": cpu_name() if device == "cpu" else device,
            "autocast_dtype": None, "channels_last": False}


def device_fingerprint(device: str) -> dict[str, str | bool]:
    """What decides where ``device`` runs, read without importing torch (cache keys)."""
    import os
    import platform

    fingerprint: dict[str, str | bool] = {"requested": device}
    if device == "auto" or device.startswith("cuda"):
        fingerprint["nvidia"] = os.path.exists("/dev/nvidiactl")
        fingerprint["visible"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if device in ("auto", "mps"):
        fingerprint["machine"] = f"{platform.system()}-{platform.machine()}"
    return fingerprint


def share_cores_with_xdist_workers() -> int | None:
    """Give this process its share of the CPU cores when pytest-xdist runs several.

    torch gives every process all the cores, so ``-n 2`` on 2 cores ran four busy threads on
    two cores: the example suite took 712 s against 70 s with one thread per worker. The
    share is cores // workers (at least 1). A user who set ``OMP_NUM_THREADS`` chose
    already. Returns the thread count set, or None when nothing changed.
    """
    import os

    import torch

    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not workers.isdigit() or int(workers) < 2 or "OMP_NUM_THREADS" in os.environ:
        return None
    share = core_share(int(workers))
    if torch.get_num_threads() <= share:
        return None
    torch.set_num_threads(share)
    return share


def core_share(processes: int) -> int:
    """The threads one of ``processes`` busy processes gets: this machine's cores (those
    this process may use) divided among them, at least 1."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // processes)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Clock:
    """Wall-clock timer that waits for queued GPU work before reading the time."""

    def __init__(self, device: str) -> None:
        import torch

        self._sync: Callable[[], None] = (
            (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda")
            else (lambda: None)
        )

    def now(self) -> float:
        self._sync()
        return time.perf_counter()


def to_input(images: np.ndarray, prep: Preprocess, device: str) -> torch.Tensor:
    """uint8 (N, H, W[, C]) pixels to a normalised float NCHW batch on ``device``."""
    import torch

    # A copy: dataset arrays are read-only and torch wants writable memory.
    x = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
    return normalise(x.to(device), prep, device)


def normalise(x: torch.Tensor, prep: Preprocess, device: str) -> torch.Tensor:
    """uint8 (N, H, W[, C]) pixels already on ``device`` to the model's float NCHW input:
    channels matched, resized and normalised (or the user's transform), channels_last on
    CUDA."""
    import torch
    import torch.nn.functional as F

    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).float().div_(255)
    if x.shape[1] == 1 and prep.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and prep.channels == 1:
        x = x.mean(dim=1, keepdim=True)
    if prep.transform is not None:
        x = prep.transform(x)   # the user's preprocessing replaces resize and normalise
    elif x.shape[-2:] != (prep.image_size, prep.image_size):
        x = F.interpolate(x, size=(prep.image_size, prep.image_size), mode="bilinear",
                          align_corners=False)
    if prep.transform is None:
        c = x.shape[1]
        mean = torch.tensor(prep.mean[:c], device=device).view(1, c, 1, 1)
        std = torch.tensor(prep.std[:c], device=device).view(1, c, 1, 1)
        x = (x - mean) / std
    if device.startswith("cuda"):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


# The share of the GPU's free memory one split's uint8 pixels may take to live there for
# the whole run. Above it, batches pass through one pinned staging buffer instead.
RESIDENT_SHARE = 0.25


def placement(nbytes: int, device: str, free_bytes: int | None) -> str:
    """Where a split's pixels live during a run: ``"resident"`` (copied to the GPU once),
    ``"staged"`` (a batch at a time through one reusable pinned buffer) or ``"host"`` (CPU
    and MPS: a batch at a time from host memory)."""
    if not device.startswith("cuda") or free_bytes is None:
        return "host"
    return "resident" if nbytes <= RESIDENT_SHARE * free_bytes else "staged"


class Pixels:
    """One split's uint8 pixels, served to the device a batch at a time by index.

    On CUDA the split goes to the GPU once when it fits (see ``placement``): a batch is then
    an index on the GPU, with no copy from the host and no wait. Otherwise the rows are
    gathered into one pinned buffer, reused for every batch (pinning is slow: never a fresh
    ``pin_memory()`` per batch), and copied asynchronously; the next batch waits only for
    that copy, not for the GPU's queue.
    """

    def __init__(self, images: np.ndarray, device: str, batch_size: int,
                 where: str | None = None) -> None:
        import torch

        self.images = images
        self.device = device
        if where is None:
            free = torch.cuda.mem_get_info(device)[0] if device.startswith("cuda") else None
            where = placement(images.nbytes, device, free)
        self.where = where
        self._resident = None
        self._buffer = None
        self._copied: Any = None
        if where == "resident":
            self._resident = torch.from_numpy(np.array(images, copy=True)).to(device)
        elif where == "staged":
            buffer = torch.empty((batch_size, *images.shape[1:]), dtype=torch.uint8)
            self._buffer = buffer.pin_memory() if device.startswith("cuda") else buffer

    def take(self, rows: Order) -> torch.Tensor:
        """The uint8 pixels of ``rows`` on the device."""
        import torch

        if self._resident is not None:
            return self._resident[rows.device]
        if self._buffer is None:
            return torch.from_numpy(np.take(self.images, rows.host.numpy(), axis=0)) \
                .to(self.device)
        if self._copied is not None:
            self._copied.synchronize()   # the last batch has left the buffer
        staged = self._buffer[:len(rows.host)]
        np.take(self.images, rows.host.numpy(), axis=0, out=staged.numpy())
        batch = staged.to(self.device, non_blocking=self.device.startswith("cuda"))
        if self.device.startswith("cuda"):
            self._copied = torch.cuda.Event()
            self._copied.record(torch.cuda.current_stream(self.device))
        return batch


@dataclass(frozen=True)
class Order:
    """The indices of one batch, on the host (to gather host pixels) and on the device (to
    index resident pixels, features and labels without a copy per step)."""

    host: torch.Tensor
    device: torch.Tensor


def autocast_dtype(device: str) -> Any:
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=autocast_dtype(device))
    return contextlib.nullcontext()


def batches(n: int, batch_size: int, device: str, generator: torch.Generator | None = None):
    """The batches of an epoch as ``Order``s: shuffled by ``generator`` (drawn on the host,
    so the order is the same on every device) or in order; the indices go to the device
    once per epoch."""
    import torch

    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    on_device = order.to(device)
    for start in range(0, n, batch_size):
        yield Order(order[start:start + batch_size], on_device[start:start + batch_size])
