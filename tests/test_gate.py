"""The gate context: one object per test that the assertions record into, outside pytest
too."""

from __future__ import annotations

import contextvars

from pytest_modelgate import assert_accuracy_above, assert_recall_above
from pytest_modelgate.assertions import recording
from pytest_modelgate.gate import GateContext, current_gate, gate_context

RUN = ([0] * 10 + [1] * 10, [0] * 9 + [1] * 11)  # (y_true, y_pred): accuracy 0.95


def names(record: dict) -> list[str]:
    return [m["name"] for m in record["metrics"]]


def test_recording_opens_a_fresh_record_and_gives_back_the_one_before():
    gate = GateContext(device="cpu", seed=3, full_race=True)
    with gate_context(gate):
        assert current_gate() is gate and gate.record is None
        with recording() as outer:
            assert_accuracy_above(RUN, 0.5)
            with recording() as inner:
                assert_recall_above(RUN, 0.5)
                assert current_gate() is gate  # its settings stay
            assert gate.record is outer
        assert gate.record is None and gate.images == {}
    assert names(outer) == ["accuracy"]
    assert names(inner) == ["recall[macro]"]


def test_outside_a_test_nothing_records_and_recording_makes_a_context_for_its_block():
    def script() -> dict:  # as in a notebook: no gate context at all
        assert current_gate() is None
        assert_accuracy_above(RUN, 0.5)  # recorded nowhere
        with recording() as record:
            assert current_gate() is not None
            assert_accuracy_above(RUN, 0.5)
        assert current_gate() is None
        return record

    record = contextvars.Context().run(script)
    assert names(record) == ["accuracy"]
    assert record["samples"]  # the predictions behind the metric, packed
