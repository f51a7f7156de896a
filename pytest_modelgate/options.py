"""The ``--modelgate-*`` option names and their argparse ``type=`` parsers, in one place.

No pytest: the plugin adds the options with these names and parsers, the session parses the
``modelgate_*`` ini values with the same parsers (so a bad value reads the same from either),
and tests import the names.
"""

from __future__ import annotations

import argparse

from .baseline import Tolerance, parse_tolerance
from .specs import DEVICES

OPTION_ENABLE = "--modelgate"
OPTION_UPDATE = "--modelgate-update-baseline"
OPTION_BASELINE = "--modelgate-baseline"
OPTION_TOLERANCE = "--modelgate-tolerance"
OPTION_REPORT_DIR = "--modelgate-report-dir"
OPTION_DEVICE = "--modelgate-device"
OPTION_SEED = "--modelgate-seed"
OPTION_CACHE_DIR = "--modelgate-cache-dir"
OPTION_NO_CACHE = "--modelgate-no-cache"
OPTION_SIGNIFICANCE = "--modelgate-significance"
OPTION_BASELINE_ENV = "--modelgate-baseline-env"

BASELINE_ENVS = ("same", "any")


def parse_tolerance_option(value: str) -> Tolerance:
    """argparse ``type=`` for --modelgate-tolerance."""
    try:
        return parse_tolerance(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_device(value: str) -> str:
    """argparse ``type=`` for --modelgate-device."""
    if value in DEVICES or value.startswith("cuda:"):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(DEVICES)} or cuda:N")


def parse_seed(value: str) -> int:
    """argparse ``type=`` for --modelgate-seed."""
    try:
        seed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer seed") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"the seed must be non-negative, got {seed}")
    return seed


def parse_significance(value: str) -> float:
    """argparse ``type=`` for --modelgate-significance: a level in (0, 0.5), or off (0.0)."""
    if value.strip().lower() in ("off", "none", "0"):
        return 0.0
    try:
        alpha = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a significance level like 0.05 (or off)") from None
    if not 0 < alpha < 0.5:
        raise argparse.ArgumentTypeError(
            f"the significance level must be in (0, 0.5), like 0.05, or off; got {value!r}")
    return alpha


def parse_baseline_env(value: str) -> str:
    """argparse ``type=`` for --modelgate-baseline-env."""
    if value not in BASELINE_ENVS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(BASELINE_ENVS)}")
    return value
