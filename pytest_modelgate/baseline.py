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
from .specs import (
    INCONCLUSIVE,
    METRICS,
    REGRESSED,
    MetricName,
    format_band,
    format_metric,
    metric_spec,
)
from .wording import counted

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


SCHEMA = "pytest-modelgate-baseline"
VERSION = 3
# version 1: metric values only, no per-sample results; version 2: one seed per test;
# version 3: a test's metrics may hold one value per seed (--modelgate-baseline-seeds)
READABLE = (1, 2, 3)
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
            if name not in METRICS and ("[" in name or "{" in name):
                raise ValueError(
                    f"tolerance {spec!r} names {name!r}: a tolerance names a metric, and "
                    f"covers its every class, average and slice; write "
                    f"{name.split('[')[0].split('{')[0]}=<amount>")
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
    from .frameworks import all_versions, installed_versions

    return {**env, **installed_versions("numpy"), **all_versions()}


def _upgrade(tests: dict[str, Any], version: int) -> dict[str, dict[str, Any]]:
    """Version 1 held only metric values per test: read it as entries without samples."""
    if version == 1:
        return {nodeid: {"metrics": metrics, "samples": {}, "env": {}}
                for nodeid, metrics in tests.items()}
    return tests


def _well_formed(tests: Any, version: int) -> bool:
    if not isinstance(tests, dict):
        return False
    for entry in tests.values():
        metrics = entry if version == 1 else (entry.get("metrics") if isinstance(entry, dict)
                                              else None)
        if not isinstance(metrics, dict) or not all(
                isinstance(e, dict) and isinstance(e.get("value"), (int, float))
                for e in metrics.values()):
            return False
        if version > 1 and not (isinstance(entry.get("samples", {}), dict)
                                and isinstance(entry.get("env", {}), dict)):
            return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _seed_problem(tests: dict[str, Any]) -> str | None:
    """What is wrong with the seed fields of a well-formed table's entries (a hand edit, a
    bad merge), or None: ``replicas`` a count of seeds, a metric's ``seeds`` two or more
    finite numbers, its ``seed_samples`` one key of the entry's ``samples`` per seed."""
    for nodeid, entry in tests.items():
        replicas = entry.get("replicas")
        if replicas is not None and not (isinstance(replicas, int)
                                         and not isinstance(replicas, bool) and replicas >= 1):
            return f"{nodeid}: 'replicas' is {replicas!r}, not a number of seeds"
        samples = entry.get("samples") or {}
        for name, metric in entry["metrics"].items():
            seeds = metric.get("seeds")
            keys = metric.get("seed_samples")
            if seeds is not None and not (isinstance(seeds, list) and len(seeds) >= 2
                                          and all(_is_number(v) for v in seeds)):
                return f"{nodeid}: {name}'s 'seeds' is not a list of two or more numbers"
            if keys is not None and not (
                    isinstance(seeds, list) and isinstance(keys, list)
                    and len(keys) == len(seeds)
                    and all(isinstance(k, str) and k in samples for k in keys)):
                return (f"{nodeid}: {name}'s 'seed_samples' does not name one of the "
                        "entry's samples per seed")
    return None


def load_baseline(path: Path) -> dict[str, dict[str, Any]] | None:
    """Entries by test id (``metrics`` by name, ``samples``, ``env``); None when the file
    does not exist. A version-1 file (metric values only) is read as entries without
    samples, so its comparisons are unpaired until the baseline is rewritten.

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
    version = data.get("version")
    if version not in READABLE:
        raise BaselineError(f"baseline {path} has schema version {version!r}; "
                            f"this pytest-modelgate reads versions "
                            f"{', '.join(map(str, READABLE))}; {fix}")
    tests = data.get("tests")
    if not isinstance(tests, dict) or not _well_formed(tests, version):
        raise BaselineError(f"baseline {path} has a malformed 'tests' table; {fix}")
    problem = _seed_problem(tests) if version > 1 else None
    if problem:
        raise BaselineError(f"baseline {path} has a malformed 'tests' table ({problem}); "
                            f"{fix}")
    return _upgrade(tests, version)


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
    table = {}
    for m in metrics:
        entry = {"value": m["value"], "higher_is_better": m["higher_is_better"], "n": m["n"]}
        if m.get("interval"):
            entry["interval"] = [round(float(v), 6) for v in m["interval"]]
            entry["confidence"] = m.get("confidence", 0.95)
        if m.get("samples"):
            entry["samples"] = m["samples"]
        if m.get("lower_bound"):
            entry["lower_bound"] = True  # absent (older files too): a measurement
        table[m["name"]] = entry
    return table


def _over_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One metric's entry from its entries per seed (the test's own run first, then the
    replicas that recorded it): the first one's ``n``, ``interval`` and ``samples``, the
    mean as ``value``, the values as ``seeds`` and, where every seed has them, their sample
    keys as ``seed_samples``. A bound in any seed makes the mean a bound."""
    entry = dict(per_seed[0])
    if len(per_seed) < 2:
        return entry
    values = [float(e["value"]) for e in per_seed]
    entry["value"] = math.fsum(values) / len(values)
    entry["seeds"] = values
    keys = [e.get("samples") for e in per_seed]
    if all(keys):
        entry["seed_samples"] = keys
    if any(e.get("lower_bound") for e in per_seed):
        entry["lower_bound"] = True
    return entry


def baseline_entry(record: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """What the baseline keeps of one gate test's record: its metrics, the packed test
    predictions they were computed on (without which no paired test is possible), and the
    environment class it ran in.

    A record with seed replicas (``record["replicas"]``, from
    ``--modelgate-baseline-seeds=K``) gives each metric the mean over the seeds that
    recorded it as ``value``, the values per seed as ``seeds`` (in replica order) and their
    sample keys as ``seed_samples``; ``samples``, ``n`` and ``interval`` stay the test's
    own run's. The entry's ``samples`` then holds every seed's predictions a metric uses,
    and ``replicas`` is K. Without replicas the entry is as it always was.

    Example:
        >>> one = {"name": "accuracy", "value": 0.9, "higher_is_better": True, "n": 10}
        >>> record = {"metrics": [one], "replicas": [{"metrics": [dict(one, value=0.8)]}]}
        >>> entry = baseline_entry(record)
        >>> entry["replicas"], entry["metrics"]["accuracy"]["seeds"]
        (2, [0.9, 0.8])
    """
    metrics = metrics_table(record.get("metrics", []))
    replicas = record.get("replicas") or []
    pools = [record.get("samples") or {}]
    if replicas:
        tables = [metrics] + [metrics_table(r.get("metrics", [])) for r in replicas]
        metrics = {name: _over_seeds([t[name] for t in tables if name in t])
                   for name in metrics}
        pools += [r.get("samples") or {} for r in replicas]
    used = {k for e in metrics.values()
            for k in [e.get("samples"), *(e.get("seed_samples") or [])] if k}
    samples: dict[str, Any] = {}
    for pool in pools:
        samples.update({k: v for k, v in pool.items() if k in used and k not in samples})
    entry = {"metrics": metrics, "samples": samples, "env": dict(env or {})}
    if replicas:
        entry["replicas"] = 1 + len(replicas)
    return entry


def written_at() -> str:
    """Now in UTC to the second, or ``SOURCE_DATE_EPOCH``'s time when it is set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else \
        datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def save_baseline(path: Path, tests: dict[str, dict[str, Any]],
                  previous: dict[str, dict] | None = None,
                  recorded_in: dict[str, str] | None = None) -> None:
    """Write the baseline: this run's test entries (see ``baseline_entry``) replace theirs,
    other tests' entries are kept. ``recorded_in``: where the runs ran (default: here;
    the merge of CI shards passes the shards'). The time written is now, or
    ``SOURCE_DATE_EPOCH`` when set (the reproducible-builds convention), so two writers of
    the same results write the same bytes."""
    merged: dict[str, dict] = dict(previous or {})
    for nodeid, entry in tests.items():
        if entry.get("metrics"):
            merged[nodeid] = entry
    doc = {
        "schema": SCHEMA,
        "version": VERSION,
        "environment": recorded_in if recorded_in is not None else environment(),
        "provenance": {"written": written_at(),
                       "by": "pytest --modelgate-update-baseline"},
        "tests": merged,
    }
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


# --- comparing ---------------------------------------------------------------------------

NEEDED_CAP = 100  # beyond this many times the test set, "samples needed" is not advice


@dataclass(frozen=True)
class Regression:
    """A metric worse than its baseline by more than the tolerance, and the verdict: a
    significant drop (or one no test applies to, or any drop with significance off) is
    ``regressed``; a drop the test cannot tell from noise is ``inconclusive``."""

    name: str
    baseline: float
    current: float
    allowed: float
    verdict: str = REGRESSED
    p: float | None = None
    level: float | None = None  # the Holm level p was held to
    method: str | None = None
    needed: int | None = None  # test samples that would show a drop this size
    n: int = 0
    note: str | None = None
    samples: tuple[str | None, str | None] = (None, None)  # (baseline, current) sample keys
    baseline_lower_bound: bool = False  # the baseline's value is a lower bound (">2.53")
    current_lower_bound: bool = False
    seeds: int = 1  # the baseline's seeds for this metric; baseline is then their mean
    seed_sd: float | None = None  # the standard deviation of the metric over those seeds

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def change(self) -> str:
        """``speedup >2.530 -> 1.500``: the move, each side marked where it is a bound;
        against a baseline over several seeds, ``accuracy 0.931, baseline 0.952 ± 0.006
        over 5 seeds``."""
        now = format_metric(self.name, self.current, lower_bound=self.current_lower_bound)
        if self.over_seeds:
            return f"{self.name} {now}, baseline {self.baseline_shown()}"
        before = format_metric(self.name, self.baseline, lower_bound=self.baseline_lower_bound)
        return f"{self.name} {before} -> {now}"

    @property
    def over_seeds(self) -> bool:
        """Whether the baseline is the mean over several seeds with a known spread."""
        return self.seeds > 1 and self.seed_sd is not None

    def baseline_shown(self, digits: int = 3) -> str:
        """The baseline as messages show it: ``0.952``, or ``0.952 ± 0.006 over 5 seeds``
        (mean and standard deviation over the seeds)."""
        if not self.over_seeds:
            return format_metric(self.name, self.baseline, digits,
                                 lower_bound=self.baseline_lower_bound)
        band = format_band(self.name, self.baseline, float(self.seed_sd or 0.0), digits,
                           lower_bound=self.baseline_lower_bound)
        return f"{band} over {self.seeds} seeds"


def seed_values(base: dict[str, Any]) -> list[float]:
    """A baseline metric's value per seed (``--modelgate-baseline-seeds``); one value when
    the baseline was written with one seed."""
    values = base.get("seeds")
    if isinstance(values, list) and len(values) > 1:
        return [float(v) for v in values]
    return [float(base["value"])]


def seed_band(base: dict[str, Any]) -> tuple[float, float | None, int]:
    """``(mean, standard deviation, seeds)`` of a baseline metric over its seeds; the
    deviation is None with one seed."""
    values = seed_values(base)
    k = len(values)
    mean = sum(values) / k
    if k < 2:
        return mean, None, 1
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1)), k


def proves_worse(current: float, current_bound: bool, allowed: float, base_bound: bool,
                 higher_is_better: bool) -> bool:
    """Whether ``current`` is worse than ``allowed`` for certain, where either side may be a
    lower bound (the true value at least that). A bound of a higher-is-better metric below
    the allowed value says nothing of the true value: not worse. Against a bound baseline
    the allowed value is itself a lower bound of the true allowed value: a measurement of a
    higher-is-better metric below it is below the true one too (a lower-is-better metric's
    bound baseline decides nothing)."""
    if higher_is_better:
        return current < allowed and not current_bound
    return current > allowed and not base_bound


@dataclass(frozen=True)
class _SeedSpread:
    """What the seed test of one metric needs beyond the baseline's values: the floor under
    its spread, its synthetic seeds (None where the baseline holds no per-seed
    predictions) and the test's overdispersion."""

    floor: float = 0.0
    mixed: Any = None
    factor: float = 1.0


def _seed_spreads(current: dict[str, dict], base_metrics: dict[str, dict],
                  base_samples: dict[str, dict], samples: dict[str, dict]
                  ) -> dict[str, _SeedSpread | None]:
    """For each metric of a multi-seed baseline that has a per-sample test, its
    ``_SeedSpread``; None where the test set changed since the baseline (the unpaired test
    applies then, as for one seed)."""
    from . import significance as sig

    groups: dict[tuple[str, ...], list[str]] = {}
    out: dict[str, _SeedSpread | None] = {}
    values: dict[str, list[float]] = {}
    for name, entry in current.items():
        base = base_metrics.get(name)
        if base is None or sig.significance_kind(name) is None or len(seed_values(base)) < 2:
            continue
        if sig.significance_kind(name) == "calibration":
            out[name] = _SeedSpread(floor=_interval_se(entry))
            continue
        keys = tuple(base.get("seed_samples") or ())
        packs = [base_samples.get(k) for k in keys]
        cur = samples.get(entry.get("samples") or "")
        if len(keys) != len(seed_values(base)) or cur is None or any(p is None for p in packs):
            out[name] = _SeedSpread()
        elif cur.get("multilabel"):   # no synthetic seeds of label matrices: the seeds' spread
            out[name] = _SeedSpread()
        elif all(p["test_hash"] == cur["test_hash"] and p["classes"] == cur["classes"]
                 for p in packs):
            groups.setdefault(keys + (entry["samples"],), []).append(name)
            values[name] = seed_values(base)
        else:
            out[name] = None
    mixed: dict[str, Any] = {}
    for group, names in groups.items():
        import numpy as np

        cur = samples[group[-1]]
        preds = np.stack([sig.unpack_predictions(base_samples[k]) for k in group[:-1]])
        mixed.update(sig.seed_mixed(names, cur["classes"], sig.unpack_labels(cur), preds))
    floors, factor = sig.seed_floors(values, {name: float(v.std(ddof=1))
                                              for name, v in mixed.items()})
    out.update({name: _SeedSpread(floors[name], mixed[name], factor[name])
                for name in values})
    return out


def _paired_test(name: str, base: dict, current: dict, base_samples: dict | None,
                 cur_samples: dict | None, margin: float, spread: _SeedSpread | None = None):
    """The test of one drop: against the seed spread where the baseline holds several seeds
    (``spread`` not None), else paired on the test samples (McNemar, or the bootstrap), or
    unpaired where the test set changed. Returns the test (None: no test applies) and a
    note on how it was compared."""
    from . import significance as sig

    kind = sig.significance_kind(name)
    if kind is None:
        return None, None
    if kind == "calibration" and (spread is None or len(seed_values(base)) < 2):
        return _calibration_test(name, base, current, base_samples, cur_samples, margin)
    if spread is not None and len(seed_values(base)) > 1:
        test = sig.seed_prediction_test(seed_values(base), float(current["value"]),
                                        higher_is_better=metric_spec(name).higher_is_better,
                                        floor_sd=spread.floor, n=int(current.get("n") or 0),
                                        mixed=spread.mixed, factor=spread.factor)
        return test, None
    if not (base_samples is not None and cur_samples is not None
            and base_samples["test_hash"] == cur_samples["test_hash"]
            and base_samples["classes"] == cur_samples["classes"]
            and "y_true" in cur_samples):
        note = ("the test set changed since the baseline: unpaired comparison"
                if base_samples is not None and cur_samples is not None else
                "the baseline holds no per-sample results (rewrite it with "
                "--modelgate-update-baseline for paired tests): unpaired comparison")
        return sig.unpaired(name, base, current, margin), note
    classes = cur_samples["classes"]
    y_true = sig.unpack_labels(cur_samples)
    base_pred = sig.unpack_predictions(base_samples)
    cur_pred = sig.unpack_predictions(cur_samples)
    if cur_samples.get("multilabel") or base_samples.get("multilabel"):
        return _paired_label_test(name, kind, classes, y_true, base_pred, cur_pred, margin)
    if kind == "mcnemar":
        label = MetricName.parse(name).arg   # recall[defect]: that class's samples
        rows = y_true == classes.index(label) if label else y_true >= 0
        exact = sig.mcnemar((base_pred == y_true)[rows], (cur_pred == y_true)[rows])
        beyond = sig.paired_bootstrap("accuracy", classes, y_true[rows], base_pred[rows],
                                      cur_pred[rows], margin=margin)
        return sig.DropTest(max(exact.p, beyond.p), f"{exact.method}, and {beyond.method} "
                            f"for a drop beyond {margin:g}", True, beyond.se, beyond.n), None
    higher = metric_spec(name).higher_is_better
    test = sig.paired_bootstrap(name, classes, y_true, base_pred, cur_pred,
                                higher_is_better=higher, margin=margin)
    return sig.DropTest(test.p, f"{test.method} for a drop beyond {margin:g}", True, test.se,
                        test.n), None


def _interval_se(entry: dict) -> float:
    """The standard error an entry's interval implies (0 without one): the least seed
    spread a calibration error's seed test assumes, its sampling noise."""
    interval = entry.get("interval")
    if not interval:
        return 0.0
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + float(entry.get("confidence") or 0.95) / 2)
    return (float(interval[1]) - float(interval[0])) / (2 * z)


def _calibration_test(name: str, base: dict, current: dict, base_samples: dict | None,
                      cur_samples: dict | None, margin: float):
    """A rise of expected calibration error: the paired bootstrap on the same samples where
    both sides kept per-sample confidences with the same binning, else the unpaired test on
    the two intervals, with a note saying why."""
    from . import significance as sig

    note = None
    if base_samples is None or cur_samples is None:
        note = ("the baseline holds no per-sample results (rewrite it with "
                "--modelgate-update-baseline for paired tests)")
    elif base_samples["test_hash"] != cur_samples["test_hash"]:
        note = "the test set changed since the baseline"
    elif "confidence" not in base_samples or "confidence" not in cur_samples:
        note = ("the baseline holds no per-sample confidences (rewrite it with "
                "--modelgate-update-baseline for a paired test)")
    elif (base_samples["bins"], base_samples["binning"]) != (cur_samples["bins"],
                                                             cur_samples["binning"]):
        note = (f"the binning changed since the baseline ({base_samples['bins']} "
                f"{base_samples['binning']} bins, now {cur_samples['bins']} "
                f"{cur_samples['binning']})")
    if note is not None:
        return sig.unpaired(name, base, current, margin), f"{note}: unpaired comparison"
    test = sig.paired_bootstrap_ece(sig.unpack_confidences(base_samples),
                                    sig.unpack_confidences(cur_samples),
                                    bins=int(cur_samples["bins"]),
                                    binning=str(cur_samples["binning"]), margin=margin)
    return sig.DropTest(test.p, f"{test.method} for a rise beyond {margin:g}", True, test.se,
                        test.n), None


def _paired_label_test(name: str, kind: str, classes: list[str], y_true: Any, base_pred: Any,
                       cur_pred: Any, margin: float):
    """``_paired_test`` of a multilabel task ((n, K) 0/1 matrices). McNemar on one label's
    correctness over the samples showing it (``recall[cat]``), or on whole-sample
    correctness (subset ``accuracy``), each with the paired bootstrap for a drop beyond the
    margin; every other figure a paired bootstrap over samples."""
    import numpy as np

    from . import significance as sig

    if kind != "mcnemar":
        test = sig.paired_label_bootstrap(name, classes, y_true, base_pred, cur_pred,
                                          higher_is_better=metric_spec(name).higher_is_better,
                                          margin=margin)
        return sig.DropTest(test.p, f"{test.method} for a drop beyond {margin:g}", True,
                            test.se, test.n), None
    label = MetricName.parse(name).arg
    if label:   # recall[cat]: the samples that show cat, right when cat is predicted
        j = classes.index(label)
        rows = y_true[:, j] == 1
        truth, was, now = y_true[rows, j], base_pred[rows, j], cur_pred[rows, j]
        names = ["0", "1"]
    else:       # subset accuracy: right when every label of the sample is
        truth = np.zeros(len(y_true), dtype=np.int64)
        was = (~np.all(base_pred == y_true, axis=1)).astype(np.int64)
        now = (~np.all(cur_pred == y_true, axis=1)).astype(np.int64)
        names = ["right", "wrong"]
    exact = sig.mcnemar(was == truth, now == truth)
    beyond = sig.paired_bootstrap("accuracy", names, truth, was, now, margin=margin)
    return sig.DropTest(max(exact.p, beyond.p), f"{exact.method}, and {beyond.method} for a "
                        f"drop beyond {margin:g}", True, beyond.se, beyond.n), None


def compare(metrics: Iterable[dict], baseline: dict[str, Any] | None, tolerance: Tolerance,
            *, alpha: float | None = None, samples: dict[str, dict] | None = None
            ) -> list[Regression]:
    """Metrics worse than their baseline by more than the tolerance, each with its verdict.

    ``baseline`` is one test's entry (``metrics``, ``samples``); ``samples`` the current
    record's packed predictions. With ``alpha`` (significance on), each drop beyond
    tolerance is tested (see ``significance``) and Holm-corrected over the metrics this
    test compares; a drop that is not significant is ``inconclusive``.
    """
    if not baseline or not baseline.get("metrics"):
        return []
    from .significance import holm, samples_needed, significance_kind

    base_metrics = baseline["metrics"]
    base_samples = baseline.get("samples") or {}
    samples = samples or {}
    beyond = []
    testable = 0
    for name, entry in metrics_table(metrics).items():
        if name not in base_metrics or not tolerance.compares(name):
            continue
        if entry.get("samples") and entry["samples"] in (base_metrics[name].get("seed_samples")
                                                         or ()):
            continue  # the very predictions of one of the baseline's seeds: nothing changed
        testable += significance_kind(name) is not None
        base = base_metrics[name]
        allowed = tolerance.allowed(name, float(base["value"]))
        current = float(entry["value"])
        if proves_worse(current, bool(entry.get("lower_bound")), allowed,
                        bool(base.get("lower_bound")), entry["higher_is_better"]):
            beyond.append((name, base, entry, allowed))
    out: list[Regression] = []
    tests = {}
    spreads: dict[str, _SeedSpread | None] = {}
    if alpha is not None and any(len(seed_values(base)) > 1 for _n, base, _e, _a in beyond):
        spreads = _seed_spreads(metrics_table(metrics), base_metrics, base_samples, samples)
    for name, base, entry, allowed in beyond:
        keys = (base.get("samples"), entry.get("samples"))
        _mean, sd, k = seed_band(base)
        common: dict[str, Any] = dict(seeds=k, seed_sd=sd,
            name=name, baseline=float(base["value"]), current=float(entry["value"]),
            allowed=allowed, n=int(entry.get("n") or 0), samples=keys,
            baseline_lower_bound=bool(base.get("lower_bound")),
            current_lower_bound=bool(entry.get("lower_bound")))
        if alpha is None:
            out.append(Regression(**common))
            continue
        margin = abs(common["baseline"] - allowed)
        test, note = _paired_test(name, base, entry, base_samples.get(keys[0] or ""),
                                  samples.get(keys[1] or ""), margin, spreads.get(name))
        if test is None:
            method = ("none (no per-sample test for this metric: the tolerance decides)"
                      if note is None else "none (the baseline holds no interval for an "
                      "unpaired test: the tolerance decides)")
            out.append(Regression(**common, method=method, note=note))
            continue
        tests[name] = (test, note, common, margin)
    decisions = holm({name: t[0].p for name, t in tests.items()}, alpha or 0.0, m=testable)
    for name, (test, note, common, margin) in tests.items():
        rejected, level = decisions[name]
        drop = abs(common["baseline"] - common["current"])
        needed = None
        if test.seeds > 1 and not rejected:
            note = (f"the baseline's {test.seeds} seeds vary this much among themselves; more "
                    "seeds (--modelgate-baseline-seeds) or test samples would settle it")
        elif not rejected:
            needed = samples_needed(drop, test, level, margin)
        out.append(Regression(
            **common, verdict=REGRESSED if rejected else INCONCLUSIVE, p=test.p, level=level,
            method=test.method, note=note, needed=needed))
    order = {name: i for i, (name, *_rest) in enumerate(beyond)}
    return sorted(out, key=lambda r: order[r.name])


def format_regressions(regressions: list[Regression], path: Path, *,
                       inconclusive_fails: bool = False) -> str:
    """The table a failing (or warning) test shows, ending with the fix.

    A baseline over several seeds shows as its mean ± the standard deviation over the
    seeds. ``inconclusive_fails``: the drops are inconclusive and fail the test
    (``--modelgate-inconclusive=fail``), and the last line says how to pass.
    """
    width = max(len("metric"), *(len(r.name) for r in regressions))
    bases = [format_band(r.name, r.baseline, float(r.seed_sd or 0.0), 4,
                         lower_bound=r.baseline_lower_bound) if r.over_seeds else
             format_metric(r.name, r.baseline, 4, lower_bound=r.baseline_lower_bound)
             for r in regressions]
    bw = max(9, *(len(b) for b in bases))
    tested = any(r.p is not None for r in regressions)
    regressed = [r for r in regressions if r.verdict == REGRESSED]
    if regressed:
        head = (f"{counted(len(regressed), 'metric')} regressed beyond tolerance against "
                f"baseline {path}"
                + (", significantly" if tested and any(r.p is not None for r in regressed)
                   else "") + ":")
    else:
        head = (f"{counted(len(regressions), 'metric')} below tolerance against baseline "
                f"{path}, but "
                "not significantly (inconclusive):")
    lines = [head, f"  {'metric':<{width}}  {'baseline':>{bw}}  {'current':>9}  "
                   f"{'allowed':>9}" + ("  verdict        p       level" if tested else "")]
    for r, base in zip(regressions, bases, strict=True):
        op = ">=" if metric_spec(r.name).higher_is_better else "<="
        row = (f"  {r.name:<{width}}  {base:>{bw}}  "
               f"{format_metric(r.name, r.current, 4, lower_bound=r.current_lower_bound):>9}  "
               f"{op} {format_metric(r.name, r.allowed, 4)}")
        if tested:
            p = f"{r.p:.4f}" if r.p is not None else "-"
            level = f"{r.level:.4f}" if r.level is not None else "-"
            row += f"  {r.verdict:<12} {p:>7}  {level:>7}"
        lines.append(row)
    seeds = sorted({r.seeds for r in regressions if r.over_seeds})
    if seeds:
        lines.append(f"  baseline: mean ± standard deviation over "
                     f"{' or '.join(map(str, seeds))} seeds")
    for r in regressions:
        if r.method and r.p is not None:
            lines.append(f"  {r.name}: {r.method}" + (f"; {r.note}" if r.note else ""))
        elif r.method:
            lines.append(f"  {r.name}: {r.method}")
        if r.verdict == INCONCLUSIVE and r.needed:
            cls = MetricName.parse(r.name).label
            of = f" of class {cls}" if cls else ""
            if r.needed > NEEDED_CAP * max(r.n, 1):
                lines.append(f"  {r.name}: this drop is so close to the tolerance that no "
                             f"practical test set would show it exceeds it (has {r.n}{of})")
            else:
                lines.append(f"  {r.name}: this drop would need about {r.needed} test "
                             f"samples{of} to show it exceeds the tolerance (has {r.n})")
    if regressed:
        lines.append("If the change is intended, rerun with --modelgate-update-baseline and "
                     f"commit {path.name}; to allow more noise, raise --modelgate-tolerance.")
    elif any(r.over_seeds for r in regressions):
        why = ("the baseline's seeds vary about as much as this drop, so it may be retraining "
               "noise. More seeds (--modelgate-update-baseline --modelgate-baseline-seeds) "
               "or test images would settle it")
        lines.append(f"This fails the test (--modelgate-inconclusive=fail): {why}; or let such "
                     "drops warn: --modelgate-inconclusive=warn." if inconclusive_fails else
                     f"Not a red build: {why}.")
    elif inconclusive_fails:
        lines.append("This fails the test (--modelgate-inconclusive=fail): the test set is too "
                     "small to show this drop exceeds the tolerance. Add test images, or let "
                     "such drops warn: --modelgate-inconclusive=warn.")
    else:
        lines.append("Not a red build: the test set is too small to show this drop exceeds the "
                     "tolerance. Add test images, or look at the images that changed in "
                     "the report.")
    return "\n".join(lines)
