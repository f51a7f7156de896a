"""The PyTorch fine-tuning loop, in the Keras engine's shape: a plan per training mode
(``_head_only``, ``_every_step``), a warm-up off the clock (``_warm_up``), one epoch of steps
(``_epoch``) and the epochs (``_fit``), each reporting to the framework-neutral ``EpochLog``
that keeps the history, checks the loss and stops a race.

Head-only runs (``freeze="backbone"``) compute the frozen backbone's features once and train
the head on them, so ten epochs cost about one forward pass over the data. Where tensors
live and how they get there is ``device``'s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ...data import Splits
from ...errors import ModelGateError, user_error_frames
from ...train.config import TrainConfig
from ...train.ranks import World
from ...train.record import EpochLog, Trained, label_accuracy
from .. import HeadInfo
from . import ddp
from .device import (
    Clock,
    Order,
    Pixels,
    autocast,
    batches,
    device_facts,
    normalise,
    resolve_device,
    seed_everything,
    share_cores_with_xdist_workers,
    to_input,
)
from .heads import get_submodule, replace_head, set_submodule, verify_width
from .zoo import LoadedModel, Preprocess

if TYPE_CHECKING:
    import torch
    from torch import nn


# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


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


def _forward_all(model: nn.Module, pixels: Pixels, prep: Preprocess, device: str,
                 batch_size: int, world: World = ddp.ONE_RANK) -> torch.Tensor:
    """Model outputs for a whole split, in order, without gradients, in eval mode; in a
    world of several ranks each computes its chunk and every rank gets them all."""
    import torch

    model.eval()
    ddp.sync_buffers(model, world)   # rank 0's BatchNorm statistics: one model evaluates
    n = len(pixels.images)
    start, end = ddp.chunk(n, world)
    outs = []
    with torch.no_grad(), autocast(device):
        for rows in batches(end - start, batch_size * 2, device):
            rows = Order(rows.host + start, rows.device + start)
            outs.append(model(normalise(pixels.take(rows), prep, device)).float())
    return ddp.gather_rows(torch.cat(outs), n, world)


def _warm_step(forward: nn.Module, owner: nn.Module, optimizer: Any, criterion: Any,
               inputs: torch.Tensor, targets: torch.Tensor, device: str,
               train_mode: Callable[[], Any] | None = None) -> None:
    """Forward, backward and an optimizer step on one batch, then everything it changed
    (``owner``'s weights and buffers, the optimizer's state, the gradients, and the random
    generators its dropout drew from) put back: the run after it is the run without it.
    ``train_mode`` puts the model in training mode (default ``forward.train()``)."""
    import copy

    import torch

    weights = {k: v.detach().clone() for k, v in owner.state_dict().items()}
    state = copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.startswith("cuda") else None
    (train_mode or forward.train)()
    with autocast(device):
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


@dataclass
class _Run:
    """One run's fixed parts: the model with its new head, where it runs, the splits'
    pixels and the train labels on the device (class indices, or a multilabel run's
    (n, classes) 0/1 matrix as floats, binary cross-entropy's targets)."""

    config: TrainConfig
    world: World
    name: str
    model: nn.Module
    head: nn.Module
    head_path: str
    prep: Preprocess
    device: str
    clock: Clock
    train_pixels: Pixels
    test_pixels: Pixels
    y_train: torch.Tensor
    y_test: np.ndarray

    @property
    def multilabel(self) -> bool:
        return self.y_test.ndim == 2

    @property
    def label_cells(self) -> int:
        """Labels per image the accuracy counts: one, or each class of a multilabel run."""
        return self.y_test.shape[1] if self.multilabel else 1


@dataclass
class _Plan:
    """What the epochs train and on what: the module a step calls, the one whose weights
    the warm-up puts back, how training mode is set, the optimizer's parameter groups, a
    batch's inputs, the test and train outputs, the clock's seconds before the first epoch
    (``eval_seconds`` of them spent on the test split, which is not training) and notes."""

    forward: nn.Module
    owner: nn.Module
    train_mode: Callable[[], Any]
    param_groups: list[dict[str, Any]]
    inputs: Callable[[Order], torch.Tensor]
    predict_test: Callable[[], torch.Tensor]
    predict_train: Callable[[], torch.Tensor]
    setup_seconds: float = 0.0
    eval_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _rows(features: torch.Tensor, rows: Order) -> torch.Tensor:
    return features[rows.device]


def _pixel_inputs(pixels: Pixels, prep: Preprocess, device: str, rows: Order) -> torch.Tensor:
    return normalise(pixels.take(rows), prep, device)


def _head_outputs(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    import torch

    head.eval()
    with torch.no_grad():
        return head(features)


def _frozen_in_eval(model: nn.Module) -> None:
    """Train mode for the model, eval mode (fixed BatchNorm statistics) for modules whose
    parameters are all frozen."""
    model.train()
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            m.eval()


def _warm_forward(run: _Run) -> float:
    """The first forward pass pays one-time costs (kernel selection, allocator, on CUDA the
    context): pay them on one real batch before the clock starts. Returns its seconds."""
    size = run.config.batch_size * 2
    t0 = run.clock.now()
    first = Pixels(run.train_pixels.images[:size], run.device, size,
                   where=run.train_pixels.where)
    _forward_all(run.model, first, run.prep, run.device, run.config.batch_size)
    return run.clock.now() - t0


def _head_only(run: _Run) -> _Plan:
    """Frozen backbone in eval mode: its output never changes, so compute it once and
    train the head on it. (A Linear head makes the model output; a convolutional head may
    be followed by more layers, so it takes ``_every_step``.)"""
    from torch import nn

    start = run.clock.now()
    model, head, batch = run.model, run.head, run.config.batch_size
    for p in model.parameters():
        p.requires_grad_(False)
    set_submodule(model, run.head_path, nn.Identity())
    train_features = _forward_all(model, run.train_pixels, run.prep, run.device, batch,
                                  run.world)
    ddp.barrier(run.world, run.device)
    setup_seconds = run.clock.now() - start
    eval_start = run.clock.now()
    test_features = _forward_all(model, run.test_pixels, run.prep, run.device, batch,
                                 run.world)
    eval_seconds = run.clock.now() - eval_start
    set_submodule(model, run.head_path, head)
    for p in head.parameters():
        p.requires_grad_(True)
    return _Plan(head, head, head.train, [{"params": list(head.parameters()),
                                           "lr": run.config.lr}],
                 partial(_rows, train_features), partial(_head_outputs, head, test_features),
                 partial(_head_outputs, head, train_features), setup_seconds, eval_seconds,
                 ["head-only: backbone features computed once; no augmentation"]
                 + ([f"head-only over {run.world.size} ranks: the feature pass is sharded, "
                     "the head trained once on rank 0"] if run.world.size > 1 else []))


def _every_step(run: _Run) -> _Plan:
    """Every layer (``freeze="none"``), the head and the last N backbone blocks, or a head
    that is not the model's last layer, trained on normalised batches of pixels; frozen
    modules stay in eval mode."""
    config, model, head = run.config, run.model, run.head
    notes = []
    head_params = list(head.parameters())
    if config.freeze == "none":
        body_params = [p for p in model.parameters() if all(p is not q for q in head_params)]
    elif config.freeze == "backbone":
        body_params = []
        notes.append(f"head-only: the {type(head).__name__} head is not the last layer, "
                     "so the frozen backbone runs every step")
    else:
        assert isinstance(config.freeze, int)
        blocks = backbone_blocks(model, run.head_path)
        if config.freeze > len(blocks):
            raise ModelGateError(
                f"freeze={config.freeze} asks to train the last {config.freeze} blocks, "
                f"but {run.name} has {len(blocks)}: {', '.join(n for n, _ in blocks)}"
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
    return _Plan(model, model,
                 model.train if config.freeze == "none" else partial(_frozen_in_eval, model),
                 param_groups, partial(_pixel_inputs, run.train_pixels, run.prep, run.device),
                 partial(_forward_all, model, run.test_pixels, run.prep, run.device,
                         config.batch_size, run.world),
                 partial(_forward_all, model, run.train_pixels, run.prep, run.device,
                         config.batch_size, run.world), notes=notes)


def _warm_up(run: _Run, plan: _Plan, forward: nn.Module, optimizer: Any,
             criterion: Any) -> int:
    """One training step on one real batch, off the clock, then undone (weights, buffers
    and optimizer state as they were): both sides of a race are timed warm, whichever runs
    first in the process. Compiled, a step of each batch shape the epochs will use (full,
    and the last one's remainder), so no compilation happens on the clock. Returns the
    number of steps."""
    config = run.config
    n_train = len(run.train_pixels.images)
    shapes = {min(config.batch_size, n_train)}
    if config.compile and n_train % config.batch_size:
        shapes.add(n_train % config.batch_size)
    for size in sorted(shapes, reverse=True):
        rows = ddp.shard(next(batches(size, size, run.device)), run.world)
        _warm_step(forward, plan.owner, optimizer, criterion, plan.inputs(rows),
                   run.y_train[rows.device], run.device, plan.train_mode)
    return len(shapes)


def _epoch(run: _Run, plan: _Plan, forward: nn.Module, optimizer: Any, criterion: Any,
           generator: torch.Generator, log: EpochLog, started: float
           ) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """One epoch of steps in the generator's order. Loss and correct counts are summed on
    the device and read once per epoch by the caller: a read per step (``loss.item()``)
    makes the host wait for the GPU at every step. Returns (loss sum, correct, images seen,
    whether the race's budget cut the epoch short)."""
    import torch

    device, world = run.device, run.world
    n_train = len(run.y_train)
    plan.train_mode()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for batch in batches(n_train, run.config.batch_size, device, generator):
        rows = ddp.shard(batch, world)   # this rank's share of the global batch
        inputs = plan.inputs(rows)
        targets = run.y_train[rows.device]
        with autocast(device):
            out = forward(inputs)
            loss = criterion(out.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(targets)
        correct += _hits(out.detach(), targets)
        seen += len(batch.host)
        # A race's scratch run stops as soon as its training time passes the budget,
        # mid-epoch too: the verdict is decided then (the host's clock, read without
        # waiting for the GPU, runs behind it, so the cut is never early). Ranks stop
        # together, at rank 0's clock.
        if seen < n_train and log.config.stop_after_seconds is not None and ddp.lead_says(
                float(log.passes_budget(time.perf_counter() - started)), world, device):
            return (*ddp.all_sum([total_loss, correct], world), seen, True)
    return (*ddp.all_sum([total_loss, correct], world), seen, False)


def _hits(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Right answers in a batch, on the device: arg-max hits, or for a multilabel run the
    image-class cells whose sigmoid is on the right side of 0.5 (``label_accuracy``)."""
    if targets.ndim == 2:
        return ((out >= 0) == (targets > 0.5)).sum()
    return (out.argmax(1) == targets).sum()


class _TestAccuracy:
    """Test accuracy after an epoch; keeps the last outputs (the run's final predictions)."""

    def __init__(self, predict: Callable[[], torch.Tensor], y_test: np.ndarray) -> None:
        self.predict = predict
        self.y_test = y_test
        self.logits: torch.Tensor | None = None

    def __call__(self) -> float:
        self.logits = self.predict()
        return label_accuracy(self.logits.float().cpu().numpy(), self.y_test)


def _fit(run: _Run, plan: _Plan, forward: nn.Module, optimizer: Any, criterion: Any,
         log: EpochLog) -> torch.Tensor:
    """The epochs, each handed to ``log``; returns the test outputs after the last one."""
    import torch

    generator = torch.Generator().manual_seed(run.config.seed)
    accuracy = _TestAccuracy(plan.predict_test, run.y_test)
    n_train = len(run.y_train)
    for epoch in range(1, run.config.epochs + 1):
        t0 = run.clock.now()
        total_loss, correct, seen, cut = _epoch(run, plan, forward, optimizer, criterion,
                                                generator, log, t0)
        ddp.barrier(run.world, run.device)   # the epoch ends when its slowest rank's does
        seconds = ddp.lead_says(run.clock.now() - t0, run.world, run.device)
        if log.end_epoch(epoch, loss=float(total_loss) / seen,
                         train_accuracy=int(correct) / (seen * run.label_cells),
                         seconds=seconds,
                         evaluate=accuracy, cut=(seen, n_train) if cut else None):
            break
    assert accuracy.logits is not None
    return accuracy.logits


def _prepare(loaded: LoadedModel, splits: Splits, config: TrainConfig,
             head_finder: Callable[[Any], str | None] | None,
             world: World) -> tuple[_Run, HeadInfo]:
    """Device, seeds, the model on the device with its new head checked, the pixels."""
    import torch

    device = resolve_device(config.device)
    if world.size > 1 and device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"   # one GPU per rank
    else:
        share_cores_with_xdist_workers()
    ddp.check_rows(len(splits.test.images), "test", world)
    ddp.check_rows(len(splits.train.images), "train", world)
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
    if config.sync_batchnorm:
        model = ddp.sync_batchnorm(model, world, device)
    # The test split first: it is smaller, and it is read every epoch.
    test_pixels = Pixels(splits.test.images, device, config.batch_size * 2)
    train_pixels = Pixels(splits.train.images, device, config.batch_size * 2)
    # Binary cross-entropy takes a multilabel run's 0/1 targets as floats.
    y_train = np.array(splits.train.labels, dtype=np.float32 if splits.multilabel else None)
    return _Run(config, world, loaded.name, model, get_submodule(model, info.path), info.path, prep,
                device, Clock(device), train_pixels, test_pixels,
                torch.as_tensor(y_train, device=device), np.asarray(splits.test.labels)), info


def train(loaded: LoadedModel, splits: Splits, config: TrainConfig, log: EpochLog,
          head_finder: Callable[[Any], str | None] | None = None,
          world: World | None = None) -> Trained | None:
    """Fine-tune ``loaded`` on ``splits``, reporting each epoch to ``log``; returns the
    test probabilities, train predictions and the facts of the run.

    ``head_finder`` is the ``pytest_modelgate_find_head`` hook, asked after ``head=``.
    """
    import torch
    from torch import nn

    world = world or ddp.ONE_RANK
    run, info = _prepare(loaded, splits, config, head_finder, world)
    head_only = config.freeze == "backbone" and isinstance(run.head, nn.Linear)
    warm = _warm_forward(run) if head_only else 0.0
    start = run.clock.now()
    plan = _head_only(run) if head_only else _every_step(run)
    if head_only and world.size > 1:
        # The ranks shared the feature pass; rank 0 trains the head once, alone.
        if not world.lead:
            return None
        run = dataclasses.replace(run, world=ddp.ONE_RANK)
    # A multilabel run: one sigmoid per class (the head's outputs are logits either way).
    criterion = nn.BCEWithLogitsLoss() if run.multilabel else nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(plan.param_groups, lr=config.lr)
    on_clock = run.clock.now() - start - plan.eval_seconds
    for note in plan.notes:
        log.note(note)
    forward = ddp.wrap(plan.forward, run.world, run.device)
    forward = torch.compile(forward) if config.compile else forward
    t0 = run.clock.now()
    steps = _warm_up(run, plan, forward, optimizer, criterion)
    warm += run.clock.now() - t0
    log.warmed_up(f"{'torch.compile and ' if config.compile else ''}warm-up "
                  f"({'one step' if steps == 1 else f'{steps} steps'}, then undone)", warm)
    log.start(loaded.name, on_clock)
    logits = _fit(run, plan, forward, optimizer, criterion, log)
    probabilities = _probabilities(logits, run.multilabel)
    # One evaluation pass over the train split (no augmentation) for overfitting checks
    # (and a multilabel run's threshold="train"); a race run cut at its budget serves only
    # the race and skips it.
    train_out = None if log.cut_by_budget() else plan.predict_train()
    train_pred = train_prob = None
    if train_out is not None and run.multilabel:   # its thresholds apply to these
        train_prob = _probabilities(train_out, True)
    elif train_out is not None:
        train_pred = train_out.argmax(1).cpu().numpy()
    head_state = {k: v.detach().float().cpu().numpy() for k, v in run.head.state_dict().items()}
    if run.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return Trained(loaded.name, loaded.pretrained, run.device, probabilities, train_pred,
                   plan.setup_seconds,
                   {"image_size": run.prep.image_size, "device": run.device,
                    "head_path": info.path, "head_found_by": info.found_by,
                    "framework": "torch", "pixels": run.train_pixels.where,
                    **device_facts(run.device),
                    **({"workers": world.size, "backend": world.backend}
                       if world.size > 1 else {})},
                   head_state, train_prob)


def _probabilities(logits: torch.Tensor, multilabel: bool) -> np.ndarray:
    """Class probabilities: softmax rows, or a multilabel run's sigmoid per class."""
    import torch

    logits = logits.float()
    out = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
    return out.cpu().numpy()
