"""Settings for a gate session, resolved once: command line over ini over default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .baseline import Tolerance


@dataclass(frozen=True)
class GateSettings:
    """What ``--modelgate*`` options and ``modelgate_*`` ini keys decided."""

    enabled: bool = False
    update_baseline: bool = False
    baseline_path: Path = Path("modelgate-baseline.json")
    tolerance: Tolerance = field(default_factory=Tolerance)
    report_dir: Path | None = Path("reports")
    device: str = "auto"
    cache_dir: Path | None = None  # None: runs are not cached
    seed: int = 0
    significance: float | None = 0.05  # None: any drop beyond tolerance regresses
    baseline_env: str = "same"  # "any": compare with a baseline from another environment
    full_race: bool = False  # races run scratch to its target or epochs, not to the verdict
