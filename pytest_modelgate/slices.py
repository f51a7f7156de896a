"""Slices of a test set: the samples whose attributes match (``where={"time": "night"}``)
or one group per value of an attribute (``slice="camera"``), and how a gate over several
slices decides (a floor per slice, Holm's step-down over slices with ``confidence=``).

Pure: numpy and the standard library. The assertions (``assertions._gate_slices``) run
their usual check on each slice's samples and use this module to choose the samples, name
the slice and word the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelGateError, user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

MIN_SLICE_SIZE = 20  # test samples a slice needs before its figure gates (min_slice_size=)
# More values than this in a slice= attribute is a measurement (lux, a timestamp), not a
# category: one slice per value would gate nothing and print thousands of lines.
MAX_SLICE_VALUES = 100
# A slice's verdict in the record and the report (the report adds "regressed").
PASSED, FAILED, TOO_SMALL, NOT_MEASURED = "passed", "failed", "not gated: too small", \
    "not gated: not measurable"

HOW_TO_GET = ("load the data with a manifest whose extra columns become attributes "
              "(from_manifest), build the ImageSet with attributes={'camera': [...]}, or "
              "pass Predictions.from_arrays(..., attributes={'camera': [...]})")


@dataclass(frozen=True)
class Slice:
    """Some test samples: ``text`` names them as metric names and messages do
    (``camera=B``, ``time=night,camera=A|B``), ``indices`` are their positions."""

    text: str
    indices: np.ndarray

    @property
    def n(self) -> int:
        return int(len(self.indices))


def _text(value: Any) -> str:
    """An attribute value as slice names write it (numpy scalars as Python's)."""
    return str(value.item() if isinstance(value, np.generic) else value)


def _wanted(argname: str, name: str, value: Any) -> list[str]:
    """The texts a ``where`` value stands for: one value, or a list/tuple/set of any-of."""
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if not values:
        raise ModelGateError(f"{argname}[{name!r}] is an empty list: name at least one value")
    if isinstance(value, (set, frozenset)):
        values = sorted(values, key=_text)
    return [_text(v) for v in values]


def where_texts(where: Mapping[str, Any]) -> dict[str, list[str]]:
    """``where`` as the record keeps it (JSON-ready): each attribute's wanted values as
    text, ``{"camera": ["A", "B"]}``."""
    return {str(name): _wanted("where", name, value) for name, value in where.items()}


def _attribute(attributes: Mapping[str, np.ndarray], name: Any, argname: str) -> np.ndarray:
    if not isinstance(name, str) or not name:
        raise ModelGateError(f"{argname} names an attribute (a non-empty string such as "
                             f"'camera'), got {name!r}")
    if name not in attributes:
        from difflib import get_close_matches

        near = get_close_matches(name, list(attributes), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ModelGateError(f"{argname}: the test samples have no attribute {name!r}{hint}; "
                             f"their attributes are {sorted(attributes)}")
    return np.asarray(attributes[name]).astype(str)


def _values_of(texts: np.ndarray) -> list[str]:
    return sorted(set(texts.tolist()))


def select_slices(attributes: Mapping[str, Any] | None, *, slice: str | None = None,
                  where: Mapping[str, Any] | None = None) -> list[Slice]:
    """The slices a gate checks: the samples matching every key of ``where`` (a value may
    be a list, tuple or set: any of them), then, with ``slice=``, one slice per value of
    that attribute among them (in sorted order of the values' text). Values match by
    their text too, so ``where={"camera": 1}`` finds a manifest's ``"1"``.

    Example:
        >>> attrs = {"camera": np.array(["A", "B", "A"]), "time": np.array(["day"] * 3)}
        >>> [(s.text, s.indices.tolist()) for s in select_slices(attrs, slice="camera")]
        [('camera=A', [0, 2]), ('camera=B', [1])]

    Raises:
        ModelGateError: neither given; a bad ``slice``/``where``; the samples have no
            attributes, or not the one named; a ``where`` value that selects no sample.
    """
    if slice is None and where is None:
        raise ModelGateError("pass slice='attribute' (every value of it) or "
                             "where={'attribute': value} (one slice)")
    named = [slice] if slice is not None else []
    if where is not None:
        if not isinstance(where, Mapping) or not where:
            raise ModelGateError("where must be a non-empty dict of attribute values, such as "
                                 f"where={{'time': 'night'}}, got {where!r}")
        named += list(where)
    attributes = dict(attributes or {})
    if not attributes:
        what = f"slice={slice!r}" if slice is not None else f"where={dict(where or {})!r}"
        raise ModelGateError(f"{what} needs per-sample attributes, and these test samples "
                             f"have none: {HOW_TO_GET}")
    n = len(next(iter(attributes.values())))
    mask = np.ones(n, dtype=bool)
    parts = []
    for name, value in (where or {}).items():
        texts = _attribute(attributes, name, "where")
        wanted = _wanted("where", name, value)
        hit = np.isin(texts, wanted)
        if not (hit & mask).any():
            among = "" if mask.all() else " among the samples the other keys select"
            raise ModelGateError(
                f"where={{{name!r}: {value!r}}} selects no test sample{among}; attribute "
                f"{name!r} holds {_values_of(texts[mask])}")
        mask &= hit
        parts.append(f"{name}={'|'.join(wanted)}")
    if slice is None:
        return [Slice(",".join(parts), np.flatnonzero(mask))]
    texts = _attribute(attributes, slice, "slice")
    values = _values_of(texts[mask])
    raw = np.asarray(attributes[slice])
    fractional = raw.dtype.kind == "f" and not np.all(np.isnan(raw) | (raw == np.round(raw)))
    if fractional or len(values) > MAX_SLICE_VALUES:
        what = "numbers" if raw.dtype.kind in "iuf" else "values"
        raise ModelGateError(
            f"slice={slice!r} would make {len(values)} slices, one per value, and attribute "
            f"{slice!r} holds {what} such as {values[:3]}: slices are for categories "
            f"(camera, site, time of day). Group it into a few bands first (a manifest "
            f"column such as {slice}_band with dark/dim/bright), or gate one group of values "
            f"with where={{{slice!r}: [...]}}")
    prefix = ",".join(parts) + "," if parts else ""
    return [Slice(f"{prefix}{slice}={value}", np.flatnonzero(mask & (texts == value)))
            for value in values]


def check_min_slice_size(value: Any) -> int:
    """``min_slice_size``: a positive integer, or None (gate every slice: 1)."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ModelGateError(f"min_slice_size must be a positive integer (or None to gate "
                             f"every slice), got {value!r}")
    return int(value)


def holm_over_slices(names: Sequence[str], clears: Callable[[str, float], bool],
                     confidence: float) -> dict[str, tuple[bool, float]]:
    """Holm's step-down over slices, where each slice's one-sided test is "its interval's
    lower bound at some confidence clears the threshold" (``clears(name, level)``).

    The gate's one-sided error for one figure is ``alpha = (1 - confidence) / 2`` (the
    lower end of a two-sided interval). With ``k`` slices not yet passed, each is held to
    ``alpha / k``, i.e. to the lower bound of its interval at confidence
    ``1 - (1 - confidence) / k``; every slice that clears it passes (in Holm's order they
    are the ones with the smallest p-values, and the levels only loosen after them), and
    the round repeats with the slices left until none clears. So the chance that any slice
    the gate passes is truly below the threshold stays at most ``alpha``, and one slice is
    judged exactly as the gate judges the whole test set.

    Returns per slice whether it passed and the confidence level it was last held to.

    Example:
        >>> lows = {"a": 0.95, "b": 0.91}   # clears at any level: a; at 95% only: b
        >>> holm_over_slices(["a", "b"], lambda s, c: s == "a" or c <= 0.95, 0.95)
        {'a': (True, 0.975), 'b': (True, 0.95)}
    """
    out: dict[str, tuple[bool, float]] = {}
    left = list(names)
    while left:
        level = 1 - (1 - confidence) / len(left)
        passed = [name for name in left if clears(name, level)]
        for name in left:
            out[name] = (name in passed, level)
        if not passed:
            break
        left = [name for name in left if name not in passed]
    return {name: out[name] for name in names}


def worst_first(rows: list[dict]) -> list[dict]:
    """Slice rows as tables list them: failed (or regressed) first, then passed, then
    those not gated; within each, the lowest value first (a lower-is-better metric's
    highest)."""
    rank = {FAILED: 0, "regressed": 0, "inconclusive": 1, PASSED: 2}

    def key(row: dict) -> tuple:
        value = row.get("value")
        sign = 1.0 if row.get("higher_is_better", True) else -1.0
        shown = float("inf") if value is None else sign * float(value)
        return (rank.get(row["verdict"], 3), shown, row["slice"])

    return sorted(rows, key=key)
