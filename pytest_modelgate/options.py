"""The ``--modelgate-*`` options and ``modelgate_*`` ini keys in one place: their names,
their argparse ``type=`` parsers, their help, and how each ini value is parsed.

No pytest import: the plugin hands pytest's option group and parser to ``add_options`` and
``add_ini``, the session parses ini values with ``INI_PARSERS`` (the options' own parsers,
so a bad value reads the same from either place), and tests import the names.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any, TypeVar

from .baseline import parse_tolerance
from .shards import parse_shard
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
OPTION_CACHE = "--modelgate-cache"
OPTION_CACHE_MAX_SIZE = "--modelgate-cache-max-size"
OPTION_CACHE_READONLY = "--modelgate-cache-readonly"
OPTION_SIGNIFICANCE = "--modelgate-significance"
OPTION_BASELINE_ENV = "--modelgate-baseline-env"
OPTION_WORKERS = "--modelgate-workers"
OPTION_RAY = "--modelgate-ray"
OPTION_BASELINE_SEEDS = "--modelgate-baseline-seeds"
OPTION_INCONCLUSIVE = "--modelgate-inconclusive"
OPTION_SHARD = "--modelgate-shard"

BASELINE_ENVS = ("same", "any")
INCONCLUSIVE_MODES = ("warn", "fail")

T = TypeVar("T")


def _argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type=``: its ValueError becomes argparse's error, with
    the same message."""
    def parsed(value: str) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parsed.__doc__ = f"argparse ``type=`` of ``{parse.__name__}``."
    return parsed


parse_tolerance_option = _argument_type(parse_tolerance)  # --modelgate-tolerance


def parse_device(value: str) -> str:
    """argparse ``type=`` for --modelgate-device."""
    if value in DEVICES or value.startswith("cuda:"):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(DEVICES)} or cuda:N")


def _integer(value: str, minimum: int, not_int: str, too_small: str) -> int:
    """``value`` as an int of at least ``minimum``, or argparse's error: ``not_int`` and
    ``too_small`` are the messages, formatted with ``value``."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(not_int.format(value=repr(value))) from None
    if number < minimum:
        raise argparse.ArgumentTypeError(too_small.format(value=number))
    return number


def parse_seed(value: str) -> int:
    """argparse ``type=`` for --modelgate-seed."""
    return _integer(value, 0, "{value} is not an integer seed",
                    "the seed must be non-negative, got {value}")


def parse_workers(value: str) -> int:
    """argparse ``type=`` for --modelgate-workers: data-parallel ranks per fine-tune."""
    return _integer(value, 1, "{value} is not a number of workers",
                    "workers must be at least 1, got {value}")


MAX_BASELINE_SEEDS = 100  # each seed is a training of every gate: more is a typo


def parse_baseline_seeds(value: str) -> int:
    """argparse ``type=`` for --modelgate-baseline-seeds: how many seeds the baseline's
    runs are trained with when it is written (1: the run itself, as before). Two seeds are
    refused: Student's t with one degree of freedom would call a 12-point drop noise, which
    one seed's per-image test catches."""
    seeds = _integer(value, 1, "{value} is not a number of seeds, like 5",
                     "the baseline needs at least 1 seed, got {value}")
    if seeds == 2:
        raise argparse.ArgumentTypeError(
            "2 seeds give the seed test one degree of freedom: it would call even large "
            "drops noise, where one seed's per-image test catches them; use 1, or 3 or more "
            "(5 decides most drops of several spreads, 10 most of a few)")
    if seeds > MAX_BASELINE_SEEDS:
        raise argparse.ArgumentTypeError(
            f"{seeds} seeds would train every gate {seeds} times; at most "
            f"{MAX_BASELINE_SEEDS} (5 to 10 is the useful range)")
    return seeds


parse_shard_option = _argument_type(parse_shard)  # --modelgate-shard=K/N


def parse_inconclusive(value: str) -> str:
    """argparse ``type=`` for --modelgate-inconclusive: ``warn`` (an inconclusive drop
    warns, the build stays green) or ``fail`` (it fails the test)."""
    if value not in INCONCLUSIVE_MODES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not one of {', '.join(INCONCLUSIVE_MODES)}: warn keeps an "
            "inconclusive drop a warning, fail makes it fail the test")
    return value


def parse_ray(value: str) -> str:
    """argparse ``type=`` for --modelgate-ray: ``auto`` (the cluster this machine is part
    of), ``local`` (start one here for the session), ``HOST:PORT`` or ``ray://HOST:PORT``."""
    value = value.strip()
    if value in ("auto", "local"):
        return value
    host, _, port = value.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a Ray address: use auto, local, HOST:PORT (the head's GCS "
            "port, 6379 by default) or ray://HOST:PORT (Ray Client, 10001)")
    return value


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


def parse_cache_location(value: str) -> str:
    """argparse ``type=`` for --modelgate-cache: a folder, ``file:///path`` or an fsspec URL
    (``s3://bucket/prefix``, ``gs://``, ``az://``). Credentials in the URL are refused, and
    not repeated in the message: they come from the filesystem's environment."""
    from .cache_store import credentials_in  # only when the option is given

    value = value.strip()
    if not value:
        raise argparse.ArgumentTypeError("give a folder or a URL such as s3://bucket/prefix")
    if credentials_in(value):
        raise argparse.ArgumentTypeError(
            "the URL holds credentials (user:password@): they would show in process lists "
            "and CI logs; give the URL without them and set them in the environment "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, for s3://; "
            "GOOGLE_APPLICATION_CREDENTIALS for gs://; AZURE_STORAGE_ACCOUNT_NAME and "
            "AZURE_STORAGE_ACCOUNT_KEY for az://)")
    if "?" in value and "://" in value:
        raise argparse.ArgumentTypeError(
            "the URL has a query (?...): options and tokens go in the environment "
            "(FSSPEC_S3_* or the filesystem's own variables), not in the URL, which shows "
            "in logs and would become part of the stored objects' names")
    if value.startswith("file://") and not value.startswith("file:///"):
        raise argparse.ArgumentTypeError(
            "a file:// URL takes an absolute path after its two slashes, like "
            "file:///mnt/shared/modelgate (three slashes); or give the folder itself")
    return value


SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(value: str) -> int:
    """argparse ``type=`` for --modelgate-cache-max-size: bytes, or a number with a unit
    (``500MB``, ``2GB``, ``1.5GiB``; KB, MB, GB and TB are powers of 1000)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", value)
    unit = found[2].lower() if found else None
    if found is None or unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a size: use bytes or a number with KB, MB, GB or TB (powers "
            "of 1000) or KiB, MiB, GiB, TiB, like 500MB or 2GB")
    size = int(float(found[1]) * SIZE_UNITS[unit])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"the cache's size must be above 0 bytes, got {value!r}")
    return size


def parse_baseline_env(value: str) -> str:
    """argparse ``type=`` for --modelgate-baseline-env."""
    if value not in BASELINE_ENVS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(BASELINE_ENVS)}")
    return value


def add_options(group: Any) -> None:
    """The ``--modelgate-*`` options, added to pytest's option ``group``."""
    group.addoption(OPTION_ENABLE, action="store_true", dest="modelgate", default=False,
                    help="Run model gate tests (skipped otherwise)")
    group.addoption(OPTION_UPDATE, action="store_true", dest="modelgate_update_baseline",
                    default=False,
                    help="Run the gates and rewrite the baseline file with what they record")
    group.addoption(OPTION_BASELINE, dest="modelgate_baseline", metavar="PATH", default=None,
                    help="Baseline file, relative to the rootdir (default modelgate-baseline.json)")
    group.addoption(OPTION_TOLERANCE, dest="modelgate_tolerance", metavar="SPEC", default=None,
                    type=parse_tolerance_option,
                    help="Allowed worsening against the baseline: 0.02, or per metric as "
                         "recall=0.01,speedup=50%%")
    group.addoption(OPTION_SIGNIFICANCE, dest="modelgate_significance", metavar="ALPHA",
                    default=None, type=parse_significance,
                    help="A drop beyond tolerance fails only when significant at this level "
                         "(paired tests on the test samples, Holm-corrected per test; "
                         "default 0.05); off: every such drop fails")
    group.addoption(OPTION_INCONCLUSIVE, dest="modelgate_inconclusive", metavar="warn|fail",
                    default=None, type=parse_inconclusive,
                    help="What a drop beyond tolerance that the test set cannot settle "
                         "does: warn (default; the test passes) or fail the test")
    group.addoption(OPTION_BASELINE_SEEDS, dest="modelgate_baseline_seeds", metavar="K",
                    default=None, type=parse_baseline_seeds,
                    help="With --modelgate-update-baseline: train each gate's runs with K "
                         "seeds and record every metric per seed (default 1)")
    group.addoption(OPTION_BASELINE_ENV, dest="modelgate_baseline_env", metavar="same|any",
                    default=None, type=parse_baseline_env,
                    help="Compare with a baseline recorded on another device class or "
                         "framework major version only when any (default same: warn, skip)")
    group.addoption(OPTION_REPORT_DIR, dest="modelgate_report_dir", metavar="DIR", default=None,
                    help="Where modelgate.html and modelgate.json go (default reports)")
    group.addoption(OPTION_DEVICE, dest="modelgate_device", metavar="DEVICE", default=None,
                    type=parse_device,
                    help="Device for fine-tuning: auto (cuda, then mps, then cpu), cpu, cuda, "
                         "cuda:N, mps")
    group.addoption(OPTION_SEED, dest="modelgate_seed", metavar="N", default=None,
                    type=parse_seed,
                    help="Seed for weights init, data order and every generator (default 0)")
    group.addoption(OPTION_WORKERS, dest="modelgate_workers", metavar="N", default=None,
                    type=parse_workers,
                    help="Data-parallel ranks per fine-tune (default 1): one per GPU with "
                         "NCCL, or gloo processes on CPU; batch_size stays the global batch")
    group.addoption(OPTION_RAY, dest="modelgate_ray", metavar="ADDRESS", default=None,
                    type=parse_ray,
                    help="Run each PyTorch fine-tune as a Ray Train job on this cluster: "
                         "auto, local (start one here), HOST:PORT or ray://HOST:PORT")
    group.addoption(OPTION_SHARD, dest="modelgate_shard", metavar="K/N", default=None,
                    type=parse_shard_option,
                    help="Run shard K of N of the selected tests (1-based): split "
                         "deterministically, balanced by the durations the last merge "
                         "recorded in the run cache, tests that use the same run together; "
                         "combine the shards with python -m pytest_modelgate merge")
    group.addoption(OPTION_CACHE_DIR, dest="modelgate_cache_dir", metavar="DIR", default=None,
                    help="Where fine-tuning runs are cached (default: pytest's cache directory)")
    group.addoption(OPTION_CACHE, dest="modelgate_cache", metavar="URL", default=None,
                    type=parse_cache_location,
                    help="Run cache shared by CI runners: s3://bucket/prefix, gs://, az://, "
                         "file:///path or a folder; credentials from the environment")
    group.addoption(OPTION_CACHE_READONLY, action="store_true", dest="modelgate_cache_readonly",
                    default=None, help="Load cached runs, never store any (pull-request jobs)")
    group.addoption(OPTION_CACHE_MAX_SIZE, dest="modelgate_cache_max_size", metavar="SIZE",
                    default=None, type=parse_size,
                    help="Evict the least recently used runs of a local cache beyond this "
                         "size: 500MB, 2GB, or bytes")
    group.addoption(OPTION_NO_CACHE, action="store_true", dest="modelgate_no_cache",
                    default=False, help="Retrain every run; read and write no cached runs")


def add_ini(parser: Any) -> None:
    """The ``modelgate_*`` ini keys, each read as its option is (``INI_PARSERS``)."""
    parser.addini("modelgate_baseline", "Baseline file relative to the rootdir")
    parser.addini("modelgate_tolerance", "Allowed worsening against the baseline (see --help)")
    parser.addini("modelgate_significance", "Significance level of the regression gate "
                  "(default 0.05; off: every drop beyond tolerance fails)")
    parser.addini("modelgate_inconclusive", "warn (default) or fail: what an inconclusive "
                  "drop against the baseline does")
    parser.addini("modelgate_baseline_seeds", "Seeds per gate test when the baseline is "
                  "written (default 1; read only with --modelgate-update-baseline)")
    parser.addini("modelgate_baseline_env", "same (default) or any: compare with a baseline "
                  "from another device class or framework major version")
    parser.addini("modelgate_report_dir", "Directory for the HTML and JSON reports")
    parser.addini("modelgate_device", "Device for fine-tuning: auto, cpu, cuda, cuda:N, mps")
    parser.addini("modelgate_seed", "Seed for fine-tuning runs (default 0)")
    parser.addini("modelgate_workers", "Data-parallel ranks per fine-tune (default 1)")
    parser.addini("modelgate_ray", "Ray cluster address for fine-tunes (auto, local, "
                  "HOST:PORT, ray://HOST:PORT)")
    parser.addini("modelgate_cache_dir", "Directory for cached fine-tuning runs")
    parser.addini("modelgate_cache", "Run cache URL (s3://bucket/prefix, gs://, az://, "
                  "file:///path) or folder")
    parser.addini("modelgate_cache_readonly", "Load cached runs, never store any",
                  type="bool", default=False)
    parser.addini("modelgate_cache_max_size", "Size limit of a local run cache (500MB, 2GB); "
                  "not applied to a remote one")
    parser.addini("modelgate_full_race", "assert_faster_than_scratch trains scratch to its "
                  "target or epoch budget, not only until the verdict is decided",
                  type="bool", default=False)


# How each ini key's text is read: as its command-line option's value is, so a bad value
# reads the same from either place.
INI_PARSERS: dict[str, Callable[[str], Any]] = {
    "modelgate_tolerance": parse_tolerance_option,
    "modelgate_device": parse_device,
    "modelgate_seed": parse_seed,
    "modelgate_significance": parse_significance,
    "modelgate_baseline_env": parse_baseline_env,
    "modelgate_inconclusive": parse_inconclusive,
    "modelgate_baseline_seeds": parse_baseline_seeds,
    "modelgate_workers": parse_workers,
    "modelgate_ray": parse_ray,
    "modelgate_cache": parse_cache_location,
    "modelgate_cache_max_size": parse_size,
}
# Ini keys whose text an error does not repeat: it may hold a secret.
SECRET_INI = frozenset({"modelgate_cache"})
