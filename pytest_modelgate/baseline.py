"""The baseline file: recorded metrics committed in the user's repo, and the regression check.

One JSON file (sorted keys, schema name and version, environment fingerprint, provenance)
maps test node ids to metric values. A tolerance is always the allowed *worsening*; the
metric's ``higher_is_better`` decides which way is worse. No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BaselineError, user_error_frames
from .specs import METRICS, metric_spec

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


SCHEMA = "pytest-modelgate-baseline"
VERSION = 1
DEFAULT_BASELINE = "modelgate-baseline.json"


@dataclass(frozen=True)
class Tolerance:
    """Allowed worsening per metric; ``(value, relative)`` pairs keyed by base metric name."""

    overrides: dict[str, tuple[float, bool]] = field(default_factory=dict)
    default: float | None = None  # a bare number: every metric with an absolute tolerance

    def for_metric(self, name: str) -> tuple[float, bool]:
        spec = metric_spec(name)
        if spec.name in self.overrides:
            return self.overrides[spec.name]
        if self.default is not None and not spec.relative:
            return self.default, False
        return spec.default_tolerance, spec.relative

    def compares(self, name: str) -> bool:
        """Whether ``name`` is checked against the baseline at all."""
        spec = metric_spec(name)
        return spec.compared or spec.name in self.overrides

    def allowed(self, name: str, baseline: float) -> float:
        """The worst value that still passes against ``baseline``."""
        tol, relative = self.for_metric(name)
        slack = abs(baseline) * tol if relative else tol
        return baseline - slack if metric_spec(name).higher_is_better else baseline + slack


EXPECTED = ("expected a finite number like 0.02 for every metric, or metric=amount pairs "
            "separated by commas like recall=0.01,speedup=50%")


def _parse_amount(text: str, where: str, spec_text: str, metric: str | None) -> tuple[float, bool]:
    """One amount: an absolute number, or a percentage of the baseline value."""
    text = text.strip()
    relative = text.endswith("%")
    number = text[:-1] if relative else text
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number like 0.02 or 10% "
                         f"(read from {spec_text!r}); {EXPECTED}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {text!r} is not a finite number (read from {spec_text!r}); "
                         "a tolerance of nan or inf would disable the regression check; "
                         f"{EXPECTED}")
    if value < 0:
        raise ValueError(f"{where}: a tolerance is an allowed worsening and cannot be negative, "
                         f"got {text!r}")
    if relative:
        value /= 100
        spec = METRICS[metric] if metric else None
        if spec is not None and spec.higher_is_better and value > 1:
            raise ValueError(f"{where}: {text} would allow {metric} to fall below zero; a "
                             "relative tolerance of a higher-is-better metric is at most 100%")
        return value, True
    bounded = metric is None or METRICS[metric].upper is not None
    if bounded and value > 1:
        raise ValueError(
            f"{where}: {text!r} is above 1, wider than the whole range of a 0-1 metric, so "
            f"nothing could regress (read from {spec_text!r}); an absolute tolerance is at "
            "most 1, e.g. 0.05 for five points"
        )
    return value, False


def parse_tolerance(spec: str) -> Tolerance:
    """Parse ``"0.02"`` (every absolute metric) or ``"recall=0.01,speedup=50%"``.

    Each amount must be finite and in range (absolute at most 1 for bounded metrics), each
    metric named once, and at most one bare number given.

    Example:
        >>> parse_tolerance("0.05,speedup=20%").for_metric("speedup")
        (0.2, True)
    """
    overrides: dict[str, tuple[float, bool]] = {}
    default = None
    parts = [p.strip() for p in spec.split(",")]
    if not any(parts):
        raise ValueError(f"tolerance {spec!r} is empty; {EXPECTED}")
    bare = [p for p in parts if p and "=" not in p]
    if len(bare) > 1:
        comma = (f"; if {','.join(bare[:2])!r} means {'.'.join(bare[:2])}, write a decimal "
                 "point" if all(p.isdigit() for p in bare[:2]) else "")
        raise ValueError(f"tolerance {spec!r} holds {len(bare)} bare numbers {bare}: give one "
                         f"for every metric and name the others (recall=0.01){comma}; "
                         f"{EXPECTED}")
    for i, part in enumerate(parts):
        if not part:
            raise ValueError(f"tolerance {spec!r} has an empty entry; {EXPECTED}")
        if "=" in part:
            name, _, amount = part.partition("=")
            name = name.strip()
            if name not in METRICS:
                from difflib import get_close_matches

                near = get_close_matches(name, METRICS, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(
                    f"unknown metric {name!r} in tolerance{hint}; known: {', '.join(METRICS)}"
                )
            if name in overrides:
                raise ValueError(f"tolerance {spec!r} names {name} twice; give each metric "
                                 "one amount")
            amount = amount.strip()
            following = parts[i + 1] if i + 1 < len(parts) else ""
            if amount.isdigit() and following.isdigit():
                raise ValueError(
                    f"tolerance {spec!r}: {name}={amount},{following} reads as {name}={amount} "
                    f"and a bare {following}; write a decimal point: {name}={amount}.{following}"
                )
            overrides[name] = _parse_amount(amount, name, spec, name)
        else:
            value, relative = _parse_amount(part, "tolerance", spec, None)
            if relative:
                raise ValueError("a bare tolerance is absolute (0.02); give percentages per "
                                 "metric, like speedup=50%")
            default = value
    return Tolerance(overrides, default)


def environment() -> dict[str, str]:
    """Where a baseline was recorded: enough to explain a difference, not to reject one."""
    env = {"python": platform.python_version(), "platform": platform.platform(terse=True),
           "machine": platform.machine()}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch", "torchvision", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            env[dist] = version(dist)
    return env


def load_baseline(path: Path) -> dict[str, dict[str, dict[str, Any]]] | None:
    """Metrics by test id and metric name; None when the file does not exist.

    Raises:
        BaselineError: the file is unreadable, malformed or of another schema version
            (``replaceable``), or not a pytest-modelgate baseline at all (not replaceable).
    """
    if not path.exists():
        return None
    fix = (f"restore it from version control (git checkout -- {path}), or replace it "
           "with this run's metrics: --modelgate-update-baseline (the new file holds only "
           "the gates that run records)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"baseline {path} is not readable JSON ({exc}); {fix}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BaselineError(
            f"{path} is not a pytest-modelgate baseline (no schema {SCHEMA!r}), so it is never "
            "overwritten; point --modelgate-baseline (or the modelgate_baseline ini key) at "
            "another file, or move this one away",
            replaceable=False,
        )
    if data.get("version") != VERSION:
        raise BaselineError(f"baseline {path} has schema version {data.get('version')!r}; "
                            f"this pytest-modelgate reads version {VERSION}; {fix}")
    tests = data.get("tests")
    if not isinstance(tests, dict) or not all(
        isinstance(m, dict) and all(isinstance(e, dict) and isinstance(e.get("value"),
                                                                        (int, float))
                                    for e in m.values())
        for m in tests.values()
    ):
        raise BaselineError(f"baseline {path} has a malformed 'tests' table; {fix}")
    return tests


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def metrics_table(metrics: Iterable[dict]) -> dict[str, dict[str, Any]]:
    """Baseline entries from recorded metrics; the last value of a repeated name wins."""
    return {m["name"]: {"value": m["value"], "higher_is_better": m["higher_is_better"],
                        "n": m["n"]} for m in metrics}


def save_baseline(path: Path, tests: dict[str, list[dict]],
                  previous: dict[str, dict] | None = None) -> None:
    """Write the baseline: this run's tests replace theirs, other tests' entries are kept."""
    merged: dict[str, dict] = dict(previous or {})
    for nodeid, metrics in tests.items():
        table = metrics_table(metrics)
        if table:
            merged[nodeid] = table
    doc = {
        "schema": SCHEMA,
        "version": VERSION,
        "environment": environment(),
        "provenance": {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "by": "pytest --modelgate-update-baseline"},
        "tests": merged,
    }
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Regression:
    name: str
    baseline: float
    current: float
    allowed: float


def compare(metrics: Iterable[dict], baseline: dict[str, dict[str, Any]] | None,
            tolerance: Tolerance) -> list[Regression]:
    """Metrics worse than their baseline by more than the tolerance."""
    if not baseline:
        return []
    out = []
    for name, entry in metrics_table(metrics).items():
        if name not in baseline or not tolerance.compares(name):
            continue
        base = float(baseline[name]["value"])
        allowed = tolerance.allowed(name, base)
        current = float(entry["value"])
        worse = current < allowed if entry["higher_is_better"] else current > allowed
        if worse:
            out.append(Regression(name, base, current, allowed))
    return out


def format_regressions(regressions: list[Regression], path: Path) -> str:
    """The table a failing test shows, ending with the fix."""
    width = max(len("metric"), *(len(r.name) for r in regressions))
    lines = [f"{len(regressions)} metric(s) regressed beyond tolerance against baseline {path}:",
             f"  {'metric':<{width}}  {'baseline':>9}  {'current':>9}  {'allowed':>9}"]
    for r in regressions:
        op = ">=" if metric_spec(r.name).higher_is_better else "<="
        lines.append(f"  {r.name:<{width}}  {r.baseline:>9.4f}  {r.current:>9.4f}  "
                     f"{op} {r.allowed:.4f}")
    lines.append("If the change is intended, rerun with --modelgate-update-baseline and commit "
                 f"{path.name}; to allow more noise, raise --modelgate-tolerance.")
    return "\n".join(lines)
