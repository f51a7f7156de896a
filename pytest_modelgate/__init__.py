"""pytest-modelgate: model quality gates for pytest.

Fine-tune a pretrained vision model with the ``finetune`` fixture, then assert on what
matters. Importing this package imports no framework.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .assertions import (
    assert_accuracy_above,
    assert_balanced_accuracy_above,
    assert_beats_majority,
    assert_f1_above,
    assert_faster_than_scratch,
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
    "assert_f1_above",
    "assert_faster_than_scratch",
    "assert_no_leakage",
    "assert_no_overfitting",
    "assert_precision_above",
    "assert_precision_at_recall",
    "assert_recall_above",
    "assert_recall_at_precision",
    "from_arrays",
    "from_folder",
    "from_torch",
    "load_digits",
    "stratified_split",
]
