"""Metric names and the shared vocabulary, read and written in one place."""

from __future__ import annotations

import pytest

from pytest_modelgate.specs import GATE_AVERAGES, VERDICTS, MetricName, format_metric


@pytest.mark.parametrize(("text", "base", "arg", "label", "average"), [
    ("accuracy", "accuracy", None, None, None),
    ("recall[defect]", "recall", "defect", "defect", None),
    ("f2[defect_scratch]", "f2", "defect_scratch", "defect_scratch", None),
    ("f0.5[macro]", "f0.5", "macro", None, "macro"),
    ("precision[weighted]", "precision", "weighted", None, "weighted"),
    ("precision_at_recall[defect@0.95]", "precision_at_recall", "defect@0.95", None, None),
    ("recall[a]b]", "recall", "a]b", "a]b", None),
])
def test_metric_names_parse_and_print_back_unchanged(text, base, arg, label, average):
    name = MetricName.parse(text)
    assert (name.base, name.arg, name.label, name.average) == (base, arg, label, average)
    assert str(name) == text
    assert MetricName(base, arg) == name


def test_metric_names_are_written_as_recorded():
    assert str(MetricName("recall", "defect")) == "recall[defect]"
    assert str(MetricName("precision_at_recall", "seven@0.9")) == \
        "precision_at_recall[seven@0.9]"
    assert str(MetricName("balanced_accuracy")) == "balanced_accuracy"


def test_one_vocabulary_shared_by_its_users():
    from pytest_modelgate import options, session
    from pytest_modelgate.report import context
    from pytest_modelgate.train import config

    assert session.VERDICTS is VERDICTS and context.VERDICTS is VERDICTS
    assert options.DEVICES is config.DEVICES
    assert GATE_AVERAGES == ("macro", "micro", "weighted", "samples")  # samples: multilabel


def test_one_format_for_counts_bounds_and_deltas():
    assert format_metric("accuracy", 0.8431) == "0.843"
    assert format_metric("leaked_pairs", 3.0) == "3" and format_metric("leaked_pairs", 3, 4) == "3"
    assert format_metric("leaked_pairs", 3.0, sign=True) == "+3"
    assert format_metric("accuracy", -0.0123, sign=True) == "-0.012"
    assert format_metric("speedup", 2.311625, lower_bound=True) == ">2.312"
    assert format_metric("speedup", 2.53, 4, lower_bound=True) == ">2.5300"


def test_a_slice_value_may_hold_brackets():
    for text in ("accuracy{camera=cam[1]}", "recall[a]{cam=[x]}", "f1[macro]{site=b[2]|c}"):
        assert str(MetricName.parse(text)) == text
    assert MetricName.parse("accuracy{camera=cam[1]}").whole == MetricName("accuracy")
