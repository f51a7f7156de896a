"""Settings for a gate session, and the one order in which every setting is resolved:
the call's keyword, then the test's ``@pytest.mark.modelgate`` keyword, then the command
line, then the ini file, then the default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .baseline import Tolerance

T = TypeVar("T")


def resolve(*layers: T | None, default: T | None = None) -> T | None:
    """A setting's value: the first of ``layers`` that sets it (not None), else ``default``.

    Pass the layers in precedence order, the call's keyword first, then the test's marker,
    the command line and the ini file. The session resolves the command line over the ini
    file through here, the plugin a test's marker over the session, and the ``finetune``
    fixture a call's keyword over the test: the order is written once.

    Example:
        >>> resolve(None, "cuda", "cpu", default="auto")  # no keyword; the marker's device
        'cuda'
        >>> resolve(None, None, default=0)
        0
    """
    return next((value for value in layers if value is not None), default)


@dataclass(frozen=True)
class GateSettings:
    """What ``--modelgate*`` options and ``modelgate_*`` ini keys decided."""

    enabled: bool = False
    update_baseline: bool = False
    baseline_path: Path = Path("modelgate-baseline.json")
    tolerance: Tolerance = field(default_factory=Tolerance)
    report_dir: Path | None = Path("reports")
    device: str = "auto"
    # The run cache's local folder: the cache itself, or with cache_url the lock files and
    # leakage thumbnails of this machine. None (and no cache_url): runs are not cached.
    cache_dir: Path | None = None
    cache_url: str | None = None  # a remote run cache: s3://bucket/prefix, gs://, az://
    cache_readonly: bool = False  # load cached runs, store none
    cache_max_size: int | None = None  # bytes a local cache may hold (LRU eviction)
    seed: int = 0
    significance: float | None = 0.05  # None: any drop beyond tolerance regresses
    baseline_env: str = "same"  # "any": compare with a baseline from another environment
    inconclusive: str = "warn"  # "fail": an inconclusive verdict fails the test
    # Seeds each gate test's runs are trained with when the baseline is written; 1 in a
    # session that does not write it.
    baseline_seeds: int = 1
    full_race: bool = False  # races run scratch to its target or epochs, not to the verdict
    workers: int = 1  # data-parallel ranks per fine-tune
    ray: str | None = None  # a Ray cluster's address: fine-tunes run there as Ray Train jobs

