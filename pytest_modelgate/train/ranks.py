"""Where a fine-tune's ranks run: the one place that decides it.

- ``here``: this process, one rank (``workers=1``, today's path; and every Keras run, whose
  ``workers`` are devices of one process under ``tf.distribute``);
- ``spawn``: ``workers`` local rank processes started by PyTorch's own launcher;
- ``torchrun``: the world ``torchrun`` set up (every rank runs the same pytest session,
  and each fine-tune is one data-parallel job over the whole world);
- ``ray``: a Ray Train job whose driver is this process (``--modelgate-ray``).

The framework adapter decides what one rank does (``Framework.train`` with a ``World``);
every path ends in ``run_record``, so the assertions, cache, race, baseline and report
never learn how a run was trained.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ModelGateError, user_error_frames

if TYPE_CHECKING:  # numpy and the record load with a run: the plugin reads torchrun_world
    import numpy as np

    from ..data import Splits
    from ..frameworks import Framework
    from ..run import EpochStats, FinetuneRun
    from .config import TrainConfig
    from .record import Trained

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

PLACES = ("here", "spawn", "torchrun", "ray")

# Seconds a collective may wait for a peer before it fails (torch.distributed's timeout):
# a dead or stuck peer ends the run with an error instead of hanging CI. The spawning
# process also watches its ranks and stops the rest within a second of one dying.
COLLECTIVE_TIMEOUT_S = float(os.environ.get("MODELGATE_COLLECTIVE_TIMEOUT", "600"))


@dataclass(frozen=True)
class World:
    """One rank's place in a data-parallel run: its rank, the world's size, its rank on
    this machine (its GPU) and the process group's backend ("" for one rank)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def lead(self) -> bool:
        """Whether this rank reports: rank 0 alone keeps the record, logs progress and
        writes the cache."""
        return self.rank == 0


def torchrun_world() -> World | None:
    """The world ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE`` and
    ``LOCAL_RANK``) started this process in; None when there is none or it is one rank."""
    size = os.environ.get("WORLD_SIZE", "")
    rank = os.environ.get("RANK", "")
    if not size.isdigit() or not rank.isdigit() or int(size) < 2:
        return None
    return World(int(rank), int(size), int(os.environ.get("LOCAL_RANK", "0") or 0))


def where_ranks_run(framework: Framework, config: TrainConfig, ray: str | None = None) -> str:
    """Where a run with ``config`` runs its ranks (one of ``PLACES``).

    Raises:
        ModelGateError: ``workers`` that a torchrun world cannot honour.
    """
    if not framework.rank_processes:
        return "here"  # one process; its adapter spreads ``workers`` over devices
    world = torchrun_world()
    if world is not None:
        if config.workers not in (1, world.size):
            raise ModelGateError(
                f"workers={config.workers} under torchrun with a world of {world.size}: "
                f"every fine-tune runs over the whole world; leave workers at 1 (or "
                f"{world.size}), or change torchrun's --nproc-per-node/--nnodes")
        return "torchrun"
    if ray:
        return "ray"
    return "spawn" if config.workers > 1 else "here"


@dataclass
class RankJob:
    """What every rank needs to train one run, sent to rank processes (it pickles as far
    as the model and the user's transform do): the adapter's name, the loaded model, the
    data, the configuration (``workers`` set to the world's size) and the head path the
    ``pytest_modelgate_find_head`` hook gave in the driver (the hook stays there)."""

    framework: str
    loaded: Any
    data: Splits
    config: TrainConfig
    head_hint: str | None = None


@dataclass
class RankResult:
    """Rank 0's outcome, sent back to the driver: what the engine returned and what its
    ``EpochLog`` recorded."""

    trained: Trained
    history: list[EpochStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class HeadHint:
    """The ``pytest_modelgate_find_head`` hook's answer, as a picklable stand-in for the
    hook in rank processes."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def __call__(self, model: Any) -> str | None:
        return self.path


def run_rank(framework: Framework, job: RankJob, world: World,
             progress: Callable[[str], None] | None = None) -> RankResult | None:
    """What every rank runs, in a process group of ``world`` already set up: the adapter
    trains its share. Rank 0 returns the result (the others None)."""
    from .record import EpochLog

    log = EpochLog(job.config, progress if world.lead else None)
    trained = framework.train(job.loaded, job.data, job.config, log,
                                         head_finder=HeadHint(job.head_hint), world=world)
    if not world.lead or trained is None:
        return None
    return RankResult(trained, log.history, log.notes, log.seconds)


def record_of(result: RankResult, data: Splits, config: TrainConfig
              ) -> tuple[FinetuneRun, dict[str, np.ndarray]]:
    """The run record and the head's weights of rank 0's result, as ``record.fit`` makes
    them in this process."""
    from .record import EpochLog, run_record

    log = EpochLog(config)
    log.history, log.notes, log.seconds = list(result.history), list(result.notes), \
        result.seconds
    return run_record(result.trained, data, config, log), result.trained.head_state


def fit(framework: Framework, loaded: Any, data: Splits, config: TrainConfig, *,
        progress: Callable[[str], None] | None = None,
        head_finder: Callable[[Any], str | None] | None = None, ray: str | None = None
        ) -> tuple[FinetuneRun | None, dict[str, np.ndarray]]:
    """Train ``loaded`` where its ranks run (``where_ranks_run``); returns the run record
    and the trained head's weights, the same from every place (under torchrun, on rank 0;
    the other ranks get (None, {}) and rank 0's record from ``Runner``)."""
    from .record import fit as fit_here

    place = where_ranks_run(framework, config, ray)
    if place == "here":
        return fit_here(framework, loaded, data, config, progress=progress,
                        head_finder=head_finder)
    result = framework.launch(loaded, data, config, place=place, progress=progress,
                              head_finder=head_finder, ray=ray)
    if result is None:  # a torchrun rank but 0: the record comes from rank 0 (Runner)
        return None, {}
    return record_of(result, data, config)
