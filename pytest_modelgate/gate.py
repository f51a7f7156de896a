"""The running test's gate context: the settings its runs use, where its leakage thumbnails
are kept and, during its call phase, the record its assertions fill.

Pure: no pytest. The plugin builds one ``GateContext`` per test, sets it for the whole
test (``gate_context``) and opens its record for the call phase of a gate test under
``--modelgate``; the assertions, the ``finetune`` fixture and the leakage scan read it
with ``current_gate()``.
Outside pytest (a script, a notebook) there is none, and nothing is recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def new_record() -> dict:
    """An empty record: metrics in order, runs by id, pretrained-vs-scratch races, and the
    packed test predictions the metrics were computed on (``samples``, by key)."""
    return {"metrics": [], "runs": {}, "races": [], "samples": {}}


@dataclass
class GateContext:
    """One test's gate state.

    ``device``, ``seed``, ``full_race`` and ``workers`` are the test's settings, its
    ``@pytest.mark.modelgate`` keywords over the session's (None: the session decides).
    ``run_cache`` is the run cache's folder, where ``assert_no_leakage`` keeps thumbnails.
    ``replica`` is the seed replica being run (``--modelgate-baseline-seeds``): 0 for the
    test's own run, r for the rerun whose runs train with their seed + r
    (``replicas.replica_seed``).
    ``record`` is what the assertions record (JSON-ready), None when not recording;
    ``images`` the test ImageSet behind each samples key of the record, for thumbnails of
    what changed against the baseline (kept beside the record, which stays JSON-ready).
    """

    device: str | None = None
    seed: int | None = None
    full_race: bool = False
    workers: int | None = None
    run_cache: Path | None = None
    replica: int = 0
    record: dict | None = None
    images: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def recording(self) -> Iterator[dict]:
        """Collect what assertions record inside the block into a fresh record (and
        ``images``); what was recording before is back after the block."""
        saved = self.record, self.images
        self.record, self.images = new_record(), {}
        try:
            yield self.record
        finally:
            self.record, self.images = saved


_CURRENT: contextvars.ContextVar[GateContext | None] = contextvars.ContextVar(
    "modelgate_gate", default=None
)


def current_gate() -> GateContext | None:
    """The running test's gate context, or None outside one."""
    return _CURRENT.get()


@contextlib.contextmanager
def gate_context(context: GateContext) -> Iterator[GateContext]:
    """Make ``context`` the current gate context inside the block."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def recording() -> Iterator[dict]:
    """Collect what assertions record inside the block into a fresh record dict.

    Inside a test, into its gate context (its settings stay); elsewhere, into a context
    for the block.

    Example:
        >>> from pytest_modelgate.assertions import assert_accuracy_above
        >>> with recording() as record:
        ...     assert_accuracy_above(([0, 1, 1], [0, 1, 1]), 0.5)
        >>> [m["name"] for m in record["metrics"]]
        ['accuracy']
    """
    current = current_gate()
    with contextlib.ExitStack() as stack:
        if current is None:
            current = stack.enter_context(gate_context(GateContext()))
        yield stack.enter_context(current.recording())
