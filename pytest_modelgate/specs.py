"""What each metric means: direction, bounds, default tolerance, how it is tested.

Standard library only: the baseline and the plugin read it at load time without numpy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ModelGateError, user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


@dataclass(frozen=True)
class MetricSpec:
    """What a metric means: its direction, bounds and default tolerance for baselines.

    ``default_tolerance`` is the allowed worsening against a baseline: absolute when
    ``relative`` is False (``0.02`` = two points of recall), a fraction of the baseline
    value when True (``0.5`` = half the baseline speedup). A metric with ``compared=False``
    is stored in the baseline but only compared when a tolerance names it.
    """

    name: str
    higher_is_better: bool
    lower: float | None = 0.0
    upper: float | None = 1.0
    default_tolerance: float = 0.02
    relative: bool = False
    compared: bool = True


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", higher_is_better=True),
        MetricSpec("balanced_accuracy", higher_is_better=True),
        MetricSpec("recall", higher_is_better=True),
        MetricSpec("precision", higher_is_better=True),
        MetricSpec("f1", higher_is_better=True),
        MetricSpec("mcc", higher_is_better=True, lower=-1.0),
        MetricSpec("precision_at_recall", higher_is_better=True),
        MetricSpec("recall_at_precision", higher_is_better=True),
        # Train accuracy minus test accuracy: the smaller, the better.
        MetricSpec("train_test_gap", higher_is_better=False, lower=-1.0),
        # A wall-clock ratio: on a shared 2-core machine it varied 6x-15x between identical
        # runs, so it is compared only when asked (--modelgate-tolerance speedup=50%).
        MetricSpec("speedup", higher_is_better=True, upper=None, default_tolerance=0.5,
                   relative=True, compared=False),
        MetricSpec("leaked_pairs", higher_is_better=False, upper=None, default_tolerance=0.0),
    )
}


def metric_spec(name: str) -> MetricSpec:
    """Return the spec for a metric name such as ``"recall"`` or ``"recall[defect]"``.

    Example:
        >>> metric_spec("recall[defect]").higher_is_better
        True
    """
    base = name.split("[", 1)[0]
    if _is_fbeta(base):   # "f2", "f0.5": assert_fbeta_above's F-beta, compared like F1
        return dataclasses.replace(METRICS["f1"], name=base)
    try:
        return METRICS[base]
    except KeyError:
        from difflib import get_close_matches

        near = get_close_matches(base, METRICS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        known = ", ".join(sorted(METRICS))
        raise ModelGateError(f"unknown metric {base!r}{hint} Known metrics: {known}") from None


def fbeta_name(beta: float) -> str:
    """The metric name of F-beta: ``f1``, ``f2``, ``f0.5``."""
    return f"f{beta:g}"


def _is_fbeta(base: str) -> bool:
    number = base[1:]
    return base.startswith("f") and number.replace(".", "", 1).isdigit() and \
        number.count(".") <= 1
