"""The fine-tuning loop: device, AMP, freezing, seeded order, synchronised timing.

Head-only runs (``freeze="backbone"``) compute the frozen backbone's features once and train
the head on them, so ten epochs cost about one forward pass over the data.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...data import Splits
from ...errors import ModelGateError, user_error_frames
from ...run import EpochStats, FinetuneRun
from ...train.config import BUDGET_NOTE, TrainConfig, budget_note, out_of_budget, over_budget
from .. import cpu_name, xdist_gpu
from .heads import get_submodule, replace_head, set_submodule, verify_width
from .zoo import LoadedModel, Preprocess

if TYPE_CHECKING:
    import torch
    from torch import nn


# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


log = logging.getLogger("pytest_modelgate")

def backbone_blocks(model: nn.Module, head_path: str) -> list[tuple[str, nn.Module]]:
    """The backbone as an ordered list of blocks, for ``freeze=N``: the model's top-level
    children with parameters, a Sequential or ModuleList among them opened one level (the
    residual stages of a ResNet become its residual blocks), without the head."""
    from torch import nn

    head_root = head_path.split(".")[0]
    blocks: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name == head_root:  # the head, or the block that holds it (classifier = Dropout, Linear)
            continue
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            blocks.extend((f"{name}.{n}", c) for n, c in child.named_children())
        else:
            blocks.append((name, child))
    return [(n, b) for n, b in blocks if any(True for _ in b.parameters())]


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


def _spread(count: int) -> str:
    index = xdist_gpu(count)
    return "cuda" if index is None else f"cuda:{index}"


def device_facts(device: str) -> dict[str, Any]:
    """What the report and run record say of where a run ran: the device model, the dtype
    autocast used (None: full float32) and whether channels_last was on."""
    import torch

    if device.startswith("cuda"):
        return {"device_name": torch.cuda.get_device_name(device),
                "autocast_dtype": str(_autocast_dtype(device)).replace("torch.", ""),
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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // int(workers))
    if torch.get_num_threads() <= share:
        return None
    torch.set_num_threads(share)
    return share


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Clock:
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


def _autocast_dtype(device: str) -> Any:
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=_autocast_dtype(device))
    return contextlib.nullcontext()


def _batches(n: int, batch_size: int, device: str, generator: torch.Generator | None = None):
    """The batches of an epoch as ``Order``s: shuffled by ``generator`` (drawn on the host,
    so the order is the same on every device) or in order; the indices go to the device
    once per epoch."""
    import torch

    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    on_device = order.to(device)
    for start in range(0, n, batch_size):
        yield Order(order[start:start + batch_size], on_device[start:start + batch_size])


def _forward_all(model: nn.Module, pixels: Pixels, prep: Preprocess, device: str,
                 batch_size: int) -> torch.Tensor:
    """Model outputs for a whole split, in order, without gradients, in eval mode."""
    import torch

    model.eval()
    outs = []
    with torch.no_grad(), _autocast(device):
        for rows in _batches(len(pixels.images), batch_size * 2, device):
            outs.append(model(normalise(pixels.take(rows), prep, device)).float())
    return torch.cat(outs)


def _check_loss(loss: torch.Tensor, epoch: int, lr: float) -> None:
    import torch

    if not torch.isfinite(loss):
        raise ModelGateError(
            f"training loss became {loss.item()} in epoch {epoch}; lower the learning rate "
            f"(lr={lr:g}) or check the data for broken images"
        )


def _warm_step(forward: nn.Module, owner: nn.Module, optimizer: Any, criterion: Any,
               inputs: torch.Tensor, targets: torch.Tensor, device: str) -> None:
    """Forward, backward and an optimizer step on one batch, then everything it changed
    (``owner``'s weights and buffers, the optimizer's state, the gradients, and the random
    generators its dropout drew from) put back: the run after it is the run without it."""
    import copy

    import torch

    weights = {k: v.detach().clone() for k, v in owner.state_dict().items()}
    state = copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.startswith("cuda") else None
    forward.train()
    with _autocast(device):
        loss = criterion(forward(inputs).float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    owner.load_state_dict(weights)
    optimizer.load_state_dict(state)
    optimizer.zero_grad(set_to_none=True)
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)


def train(loaded: LoadedModel, splits: Splits, config: TrainConfig,
          head_state: dict[str, np.ndarray] | None = None,
          progress: Callable[[str], None] | None = None,
          head_finder: Callable[[Any], str | None] | None = None) -> FinetuneRun:
    """Fine-tune ``loaded`` on ``splits`` and return predictions, history and timing.

    ``head_state``, when given, receives the trained head's weights as numpy arrays;
    ``head_finder`` is the ``pytest_modelgate_find_head`` hook, asked after ``head=``.
    """
    import torch
    from torch import nn

    device = resolve_device(config.device)
    share_cores_with_xdist_workers()
    seed_everything(config.seed)
    model = loaded.module
    prep = loaded.preprocess
    num_classes = len(splits.class_names)
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)   # an xdist worker's own GPU, for every library's default
    model.to(device)
    if device.startswith("cuda"):
        model.to(memory_format=torch.channels_last)
    sample = to_input(splits.test.images[:2], prep, device)
    info = replace_head(model, num_classes, config.head, sample, hook=head_finder)
    verify_width(model, sample, num_classes, info)
    head = get_submodule(model, info.path)
    generator = torch.Generator().manual_seed(config.seed)
    clock = _Clock(device)
    criterion = nn.CrossEntropyLoss()
    y_train = torch.as_tensor(np.array(splits.train.labels), device=device)
    y_test = splits.test.labels
    # The test split first: it is smaller, and it is read every epoch.
    test_pixels = Pixels(splits.test.images, device, config.batch_size * 2)
    train_pixels = Pixels(splits.train.images, device, config.batch_size * 2)
    history: list[EpochStats] = []
    notes: list[str] = []

    head_only = config.freeze == "backbone" and isinstance(head, nn.Linear)
    warm = 0.0
    if head_only:
        # The first forward pass pays one-time costs (kernel selection, allocator, on CUDA
        # the context): pay them on one real batch before the clock starts.
        t0 = clock.now()
        first = Pixels(splits.train.images[:config.batch_size * 2], device,
                       config.batch_size * 2, where=train_pixels.where)
        _forward_all(model, first, prep, device, config.batch_size)
        warm = clock.now() - t0
    start = clock.now()
    if head_only:
        # Frozen backbone in eval mode: its output never changes, so compute it once. (A
        # Linear head makes the model output; a convolutional head may be followed by more
        # layers, so it takes the general path below.)
        for p in model.parameters():
            p.requires_grad_(False)
        set_submodule(model, info.path, nn.Identity())
        train_features = _forward_all(model, train_pixels, prep, device, config.batch_size)
        setup_seconds = clock.now() - start
        eval_start = clock.now()
        test_features = _forward_all(model, test_pixels, prep, device, config.batch_size)
        eval_seconds = clock.now() - eval_start
        set_submodule(model, info.path, head)
        for p in head.parameters():
            p.requires_grad_(True)
        param_groups = [{"params": list(head.parameters()), "lr": config.lr}]
        notes.append("head-only: backbone features computed once; no augmentation")

        def step_inputs(rows: Order) -> torch.Tensor:
            return train_features[rows.device]

        forward_train: nn.Module = head

        def predict_test() -> torch.Tensor:
            head.eval()
            with torch.no_grad():
                return head(test_features)

        def predict_train() -> torch.Tensor:
            head.eval()
            with torch.no_grad():
                return head(train_features)
    else:
        setup_seconds = 0.0
        eval_seconds = 0.0
        head_params = list(head.parameters())
        if config.freeze == "none":
            body_params = [p for p in model.parameters()
                           if all(p is not q for q in head_params)]
        elif config.freeze == "backbone":
            body_params = []
            notes.append(f"head-only: the {type(head).__name__} head is not the last layer, "
                         "so the frozen backbone runs every step")
        else:
            assert isinstance(config.freeze, int)
            blocks = backbone_blocks(model, info.path)
            if config.freeze > len(blocks):
                raise ModelGateError(
                    f"freeze={config.freeze} asks to train the last {config.freeze} blocks, "
                    f"but {loaded.name} has {len(blocks)}: "
                    f"{', '.join(n for n, _ in blocks)}"
                )
            chosen = blocks[-config.freeze:]
            body_params = [p for _, block in chosen for p in block.parameters()]
            notes.append(f"trains the head and the last {config.freeze} blocks: "
                         f"{', '.join(n for n, _ in chosen)}")
        for p in model.parameters():
            p.requires_grad_(False)
        for p in (*head_params, *body_params):
            p.requires_grad_(True)
        param_groups = [{"params": head_params, "lr": config.lr}]
        if body_params:
            param_groups.append({"params": body_params, "lr": config.backbone_lr or config.lr})

        def step_inputs(rows: Order) -> torch.Tensor:
            return normalise(train_pixels.take(rows), prep, device)

        class _PartlyFrozen(nn.Module):
            """Train mode for the model, eval mode (fixed BatchNorm statistics) for modules
            whose parameters are all frozen."""

            def __init__(self) -> None:
                super().__init__()
                self.inner = model

            def train(self, mode: bool = True):
                model.train(mode)
                if mode and config.freeze != "none":
                    for m in model.modules():
                        own = list(m.parameters(recurse=False))
                        if own and not any(p.requires_grad for p in own):
                            m.eval()
                return self

            def forward(self, x):
                return model(x)

        forward_train = _PartlyFrozen()

        def predict_test() -> torch.Tensor:
            return _forward_all(model, test_pixels, prep, device, config.batch_size)

        def predict_train() -> torch.Tensor:
            return _forward_all(model, train_pixels, prep, device, config.batch_size)

    optimizer = torch.optim.Adam(param_groups, lr=config.lr)
    train_seconds = clock.now() - start - eval_seconds
    if config.compile:
        forward_train = torch.compile(forward_train)  # type: ignore[assignment]
    # One training step on one real batch, off the clock, then undone (weights, buffers
    # and optimizer state as they were): both sides of a race are timed warm, whichever
    # runs first in the process. Compiled, a step of each batch shape the epochs will use
    # (full, and the last one's remainder), so no compilation happens on the clock.
    t0 = clock.now()
    n_train = len(splits.train)
    shapes = {min(config.batch_size, n_train)}
    if config.compile and n_train % config.batch_size:
        shapes.add(n_train % config.batch_size)
    for size in sorted(shapes, reverse=True):
        rows = next(_batches(size, size, device))
        _warm_step(forward_train, model if not head_only else head, optimizer, criterion,
                   step_inputs(rows), y_train[rows.device], device)
    warm += clock.now() - t0
    steps = "one step" if len(shapes) == 1 else f"{len(shapes)} steps"
    notes.append(f"{'torch.compile and ' if config.compile else ''}warm-up ({steps}, then "
                 f"undone): {warm:.1f}s, not timed")
    logits = None
    for epoch in range(1, config.epochs + 1):
        t0 = clock.now()
        forward_train.train()
        # Loss and correct counts are summed on the device and read once per epoch: a read
        # per step (loss.item()) makes the host wait for the GPU at every step.
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        cut = False
        for rows in _batches(n_train, config.batch_size, device, generator):
            inputs = step_inputs(rows)
            targets = y_train[rows.device]
            with _autocast(device):
                out = forward_train(inputs)
                loss = criterion(out.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(targets)
            correct += (out.detach().argmax(1) == targets).sum()
            seen += len(targets)
            # A race's scratch run stops as soon as its training time passes the budget,
            # mid-epoch too: the verdict is decided then (the host's clock, read without
            # waiting for the GPU, runs behind it, so the cut is never early).
            if seen < n_train and over_budget(config, train_seconds + time.perf_counter() - t0):
                cut = True
                break
        train_seconds += clock.now() - t0
        _check_loss(total_loss, epoch, config.lr)  # a NaN step makes the epoch's sum NaN
        logits = predict_test()
        pred = logits.argmax(1).cpu().numpy()
        test_acc = float(np.mean(pred == y_test))
        stats = EpochStats(epoch, float(total_loss) / seen, int(correct) / seen, test_acc,
                           train_seconds)
        history.append(stats)
        line = (f"modelgate: {loaded.name} epoch {epoch}/{config.epochs}: loss {stats.loss:.4f},"
                f" train acc {stats.train_accuracy:.3f}, test acc {test_acc:.3f}, "
                f"{train_seconds:.1f}s")
        log.info(line)
        if progress is not None:
            progress(line)
        if config.stop_at_accuracy is not None and test_acc >= config.stop_at_accuracy:
            notes.append(f"stopped after epoch {epoch}: reached {config.stop_at_accuracy:.3f}")
            break
        if cut:
            notes.append(budget_note(config, train_seconds,
                                     f"in epoch {epoch}, after {seen} of {n_train} images"))
            break
        if out_of_budget(config, train_seconds, epoch, notes):
            break

    assert logits is not None
    probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
    # One evaluation pass over the train split (no augmentation) for overfitting checks;
    # a race run cut at its budget serves only the race and skips it.
    raced = any(n.startswith(BUDGET_NOTE) for n in notes)
    train_pred = None if raced else predict_train().argmax(1).cpu().numpy()
    config_dict: dict[str, Any] = asdict(config)
    config_dict.update(image_size=prep.image_size, device=device, head_path=info.path,
                       head_found_by=info.found_by, framework="torch",
                       pixels=train_pixels.where, **device_facts(device))
    if head_state is not None:
        head_state.update({k: v.detach().float().cpu().numpy()
                           for k, v in head.state_dict().items()})
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return FinetuneRun(
        model=loaded.name,
        class_names=splits.class_names,
        y_true=y_test.copy(),
        y_pred=probabilities.argmax(1),
        probabilities=probabilities,
        history=tuple(history),
        seconds=train_seconds,
        setup_seconds=setup_seconds,
        device=device,
        freeze=config.freeze,
        pretrained=loaded.pretrained,
        config=config_dict,
        notes=tuple(notes),
        train_y_true=None if train_pred is None else np.array(splits.train.labels),
        train_y_pred=train_pred,
    )
