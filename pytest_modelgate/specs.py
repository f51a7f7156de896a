"""What each metric means: direction, bounds, default tolerance, how it is tested; and the
words gate results are written in: metric names (``MetricName``), averages, devices, verdicts.

Standard library only: the baseline and the plugin read it at load time without numpy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ModelGateError, user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

# What a gate averages over classes (``assert_recall_above(average=...)``), and the bracket
# of an averaged metric's name: ``recall[macro]``. scikit-learn's ``average=`` options are
# another set (``metrics.SKLEARN_AVERAGES``).
# "samples" (the mean over test samples of each sample's figure) is multilabel's only.
GATE_AVERAGES = ("macro", "micro", "weighted", "samples")
# --modelgate-device and FinetuneConfig.device: one of these, or "cuda:N".
DEVICES = ("auto", "cpu", "cuda", "mps")
# A gate test's verdict beyond pytest's outcome: worse than the baseline beyond tolerance,
# significantly (regressed) or not (inconclusive).
REGRESSED, INCONCLUSIVE = "regressed", "inconclusive"
# The gate could not judge the model (a ModelGateError: an unknown model, a bad argument; or
# any exception but a failed assertion), as against "failed": the model missed the bar.
ERROR = "error"
# The order the summary and the report list gate tests in: what to look at first.
VERDICTS = (ERROR, "failed", REGRESSED, INCONCLUSIVE, "skipped", "passed")


@dataclass(frozen=True)
class MetricName:
    """A recorded metric's name: its base metric and, in brackets, what it is of.

    ``recall[defect]`` (one class), ``f2[macro]`` (an average over classes),
    ``precision_at_recall[defect@0.95]`` (an operating point), or a bare ``accuracy``; a
    figure of one slice of the test samples (``slice=``/``where=`` of a gate) ends in
    braces: ``recall[defect]{camera=B}``, ``accuracy{time=night,camera=A|B}``. The
    one place the format is written and read: baselines, the report and messages show
    ``str(name)``.

    Example:
        >>> name = MetricName.parse("recall[defect]{camera=B}")
        >>> name.base, name.label, name.slice, str(name.whole)
        ('recall', 'defect', 'camera=B', 'recall[defect]')
    """

    base: str
    arg: str | None = None   # what the brackets hold: a class, an average, "class@target"
    slice: str | None = None  # what the braces hold: the samples' attributes, "camera=B"

    @classmethod
    def parse(cls, name: str) -> MetricName:
        """Read a recorded name; text without a closing bracket has no argument, without
        closing braces no slice."""
        slice_ = None
        if name.endswith("}"):
            # The braces follow the brackets (a class name may hold "{"), or the base (a
            # metric's own name is a word: a slice's values may hold "[").
            head = len(name) - len(name.lstrip("abcdefghijklmnopqrstuvwxyz0123456789_"))
            cut = name.find("]{") + 1 if name[head:head + 1] == "[" else \
                (head if name[head:head + 1] == "{" else -1)
            if cut > 0:
                name, slice_ = name[:cut], name[cut + 1:-1]
        base, _, rest = name.partition("[")
        return cls(base, rest[:-1] if rest.endswith("]") else None, slice_)

    @property
    def whole(self) -> MetricName:
        """The same figure over the whole test set (no slice)."""
        return dataclasses.replace(self, slice=None)

    @property
    def average(self) -> str | None:
        """The average over classes (``macro``, ``micro``, ``weighted``; multilabel also
        ``samples``), if that is the arg."""
        return self.arg if self.arg in GATE_AVERAGES else None

    @property
    def label(self) -> str | None:
        """The one class this figure is of, if any (not an average, not an operating point)."""
        arg = self.arg
        return arg if arg and arg not in GATE_AVERAGES and "@" not in arg else None

    def __str__(self) -> str:
        text = self.base if self.arg is None else f"{self.base}[{self.arg}]"
        return text if self.slice is None else f"{text}{{{self.slice}}}"


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
    integer: bool = False  # a count (leaked pairs): shown as a whole number, never 3.000


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
        MetricSpec("leaked_pairs", higher_is_better=False, upper=None, default_tolerance=0.0,
                   integer=True),
        # Expected calibration error (assert_calibrated): 0 is perfectly calibrated. Two
        # points, as for accuracy: its bootstrap spread on a few hundred test images.
        MetricSpec("ece", higher_is_better=False),
    )
}


def metric_spec(name: str) -> MetricSpec:
    """Return the spec for a metric name such as ``"recall"`` or ``"recall[defect]"``.

    Example:
        >>> metric_spec("recall[defect]").higher_is_better
        True
    """
    base = MetricName.parse(name).base
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


def is_count(name: str) -> bool:
    """Whether a metric is a count (its spec's ``integer``); an unknown name is not."""
    try:
        return metric_spec(name).integer
    except ModelGateError:
        return False


def format_metric(name: str, value: float, digits: int = 3, *, sign: bool = False,
                  lower_bound: bool = False) -> str:
    """A metric's value as the terminal and the report show it: ``0.875``, or ``3`` for a
    count. ``sign``: a delta, ``+0.012`` or ``+3``. ``lower_bound``: the true value is at
    least this one (a stopped race's speedup), ``>2.312``.

    Example:
        >>> format_metric("recall[cat]", 0.8751), format_metric("leaked_pairs", 3.0)
        ('0.875', '3')
        >>> format_metric("speedup", 2.311625, lower_bound=True)
        '>2.312'
    """
    plus = "+" if sign else ""
    mark = ">" if lower_bound else ""
    if is_count(name):
        return f"{mark}{round(float(value)):{plus}d}"
    return f"{mark}{float(value):{plus}.{digits}f}"


def format_band(name: str, mean: float, sd: float, digits: int = 3, *,
                lower_bound: bool = False) -> str:
    """A baseline over several seeds as the terminal and the report show it: the mean and
    the standard deviation over the seeds, ``0.952 ± 0.006`` (a count's deviation with
    one decimal: ``3 ± 0.5``).

    Example:
        >>> format_band("accuracy", 0.9523, 0.0061), format_band("leaked_pairs", 3.0, 0.5)
        ('0.952 ± 0.006', '3 ± 0.5')
    """
    spread = f"{float(sd):.1f}" if is_count(name) else f"{float(sd):.{digits}f}"
    return f"{format_metric(name, mean, digits, lower_bound=lower_bound)} ± {spread}"


def metric_number(name: str, value: float) -> int | float:
    """A metric's value for JUnit properties and other machine readers: an int for a count,
    else rounded to 6 digits."""
    return round(float(value)) if is_count(name) else round(float(value), 6)


def fbeta_name(beta: float) -> str:
    """The metric name of F-beta: ``f1``, ``f2``, ``f0.5``."""
    return f"f{beta:g}"


def _is_fbeta(base: str) -> bool:
    number = base[1:]
    return base.startswith("f") and number.replace(".", "", 1).isdigit() and \
        number.count(".") <= 1


def junit_properties(record: dict, verdict: str) -> list[tuple[str, Any]]:
    """A gate test's JUnit properties: each metric (the last value of a name) and the
    verdict. The plugin adds them to the test's ``user_properties``; the merge of CI shards
    writes them into its JUnit file."""
    out: list[tuple[str, Any]] = []
    for name, m in {m["name"]: m for m in record["metrics"]}.items():
        value = metric_number(name, m["value"])  # an int for a count (leaked_pairs 3)
        # A lower bound (a race stopped at its verdict) is no number to plot: ">2.311625".
        out.append((f"modelgate.{name}", f">{value}" if m.get("lower_bound") else value))
    out.append(("modelgate.verdict", verdict))
    return out
