"""pytest-modelgate: model quality gates for pytest.

Fine-tune a pretrained vision model with the ``finetune`` fixture, then assert on what
matters. Importing this package imports no framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

# Names are imported on first use (PEP 562): pytest loads this package with the plugin in
# every run of a repo that installs it, and a plain ``pytest`` must not pay for numpy.
_EXPORTS = {
    "assertions": ("assert_accuracy_above", "assert_balanced_accuracy_above",
                   "assert_beats_majority", "assert_calibrated", "assert_f1_above",
                   "assert_faster_than_scratch",
                   "assert_fbeta_above",
                   "assert_no_leakage", "assert_no_overfitting", "assert_precision_above",
                   "assert_precision_at_recall", "assert_recall_above",
                   "assert_recall_at_precision"),
    "data": ("ImageSet", "Splits", "from_arrays", "from_folder", "from_hf", "from_manifest",
             "from_tf", "from_torch", "load_digits", "stratified_split"),
    "errors": ("AdapterUnavailableError", "BaselineError", "HeadNotFoundError",
               "ModelGateError", "ModelGateWarning"),
    "leakage": ("find_leaks", "scan_leaks"),
    "run": ("EpochStats", "FinetuneRun", "Predictions"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


if TYPE_CHECKING:
    from .assertions import (
        assert_accuracy_above,
        assert_balanced_accuracy_above,
        assert_beats_majority,
        assert_calibrated,
        assert_f1_above,
        assert_faster_than_scratch,
        assert_fbeta_above,
        assert_no_leakage,
        assert_no_overfitting,
        assert_precision_above,
        assert_precision_at_recall,
        assert_recall_above,
        assert_recall_at_precision,
    )
    from .data import (
        ImageSet,
        Splits,
        from_arrays,
        from_folder,
        from_hf,
        from_manifest,
        from_tf,
        from_torch,
        load_digits,
        stratified_split,
    )
    from .errors import (
        AdapterUnavailableError,
        BaselineError,
        HeadNotFoundError,
        ModelGateError,
        ModelGateWarning,
    )
    from .leakage import find_leaks, scan_leaks
    from .run import EpochStats, FinetuneRun, Predictions

__all__ = [
    "AdapterUnavailableError",
    "BaselineError",
    "EpochStats",
    "FinetuneRun",
    "HeadNotFoundError",
    "ImageSet",
    "ModelGateError",
    "ModelGateWarning",
    "Predictions",
    "Splits",
    "__version__",
    "assert_accuracy_above",
    "assert_balanced_accuracy_above",
    "assert_beats_majority",
    "assert_calibrated",
    "assert_f1_above",
    "assert_fbeta_above",
    "assert_faster_than_scratch",
    "assert_no_leakage",
    "assert_no_overfitting",
    "assert_precision_above",
    "assert_precision_at_recall",
    "assert_recall_above",
    "assert_recall_at_precision",
    "find_leaks",
    "from_arrays",
    "from_folder",
    "from_hf",
    "from_manifest",
    "from_tf",
    "from_torch",
    "load_digits",
    "scan_leaks",
    "stratified_split",
]
