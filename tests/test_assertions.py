"""Assertions on runs built from plain arrays: the messages a user reads on a red build."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytest_modelgate import (
    assert_accuracy_above,
    assert_faster_than_scratch,
    assert_precision_above,
    assert_recall_above,
)
from pytest_modelgate.assertions import recording
from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.run import EpochStats, FinetuneRun


def make_run(y_true, y_pred, accuracies=(0.5, 0.9), seconds_per_epoch=1.0, scratch=None,
             pretrained=True):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = 3
    history = tuple(EpochStats(i + 1, 1.0, acc, acc, seconds_per_epoch * (i + 1))
                    for i, acc in enumerate(accuracies))
    return FinetuneRun(
        model="toy", class_names=("cat", "dog", "<b>eel</b>"), y_true=y_true, y_pred=y_pred,
        probabilities=np.eye(k)[y_pred], history=history,
        seconds=history[-1].seconds, setup_seconds=0.0, device="cpu",
        freeze="backbone" if pretrained else "none", pretrained=pretrained,
        config={"image_size": 8}, scratch_runner=scratch,
    )


# 10 cats (8 right), 10 dogs (10 right), 5 eels (3 right, 2 called dog)
Y_TRUE = [0] * 10 + [1] * 10 + [2] * 5
Y_PRED = [0] * 8 + [1] * 2 + [1] * 10 + [2] * 3 + [1] * 2


def test_recall_of_one_class_passes_and_records():
    run = make_run(Y_TRUE, Y_PRED)
    with recording() as record:
        assert_recall_above(run, 0.75, label="cat")
    (metric,) = record["metrics"]
    assert metric["name"] == "recall[cat]" and metric["value"] == 0.8 and metric["n"] == 10
    assert metric["passed"] and metric["op"] == ">="
    assert 0.49 < metric["interval"][0] < 0.8 < metric["interval"][1]
    assert list(record["runs"]) == ["toy (pretrained, freeze=backbone)"]


def test_recall_failure_message():
    with pytest.raises(AssertionError) as info:
        assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.7, label="<b>eel</b>")
    message = str(info.value)
    assert message.startswith("recall(<b>eel</b>) = 0.600 < 0.700 required [n=5, 95% CI 0.231-")
    assert "lowest recall: <b>eel</b> 0.600, cat 0.800, dog 1.000" in message
    assert "    dog              0.714   1.000    10" in message
    assert "Fix:" in message


def test_macro_precision_pass_and_fail():
    run = make_run(Y_TRUE, Y_PRED)
    # precision: cat 8/8, dog 10/14, eel 3/3 -> macro 0.905
    assert_precision_above(run, 0.9)
    with pytest.raises(AssertionError, match=r"^precision \(macro over classes\) = 0\.905 < "
                                             r"0\.950 required \[n=25, 95% CI 0\.\d{3}-0\.\d{3}"
                                             r"\]; lowest precision: dog 0\.714"):
        assert_precision_above(run, 0.95)
    with pytest.raises(AssertionError, match=r"precision\(dog\) = 0\.714 < 0\.800 required "
                                             r"\[n=14, 95% CI"):
        assert_precision_above(run, 0.8, label="dog")


def test_accuracy_pass_and_fail():
    run = make_run(Y_TRUE, Y_PRED)
    assert_accuracy_above(run, 0.84)
    with pytest.raises(AssertionError, match=r"accuracy = 0\.840 < 0\.900 required \[n=25, 95% "
                                             r"CI 0\.653-0\.936\]; lowest recall: <b>eel</b>"):
        assert_accuracy_above(run, 0.9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: assert_recall_above(r, 1.5), r"threshold must be a number in \[0, 1\]"),
        (lambda r: assert_recall_above(r, 0.5, label="cow"), "label='cow' is not a class"),
        (lambda r: assert_accuracy_above("run", 0.5), "run must be the result of finetune"),
        (lambda r: assert_faster_than_scratch(r, target_accuracy=0.8, min_speedup=0),
         "min_speedup must be positive"),
        (lambda r: assert_faster_than_scratch(r, target_accuracy=2),
         "target_accuracy must be a number"),
        (lambda r: assert_faster_than_scratch(r, target_accuracy=0.5),
         "cannot race from scratch"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ModelGateError, match=message):
        call(make_run(Y_TRUE, Y_PRED))


def _racer(accuracies, seconds_per_epoch):
    def scratch(target_accuracy=None, epochs=None):
        return make_run(Y_TRUE, Y_PRED, accuracies, seconds_per_epoch, pretrained=False)
    return scratch


def test_faster_than_scratch_passes_and_records_the_race():
    # pretrained reaches 0.9 at epoch 2 (2 s); scratch at epoch 3 (15 s): 7.5x
    run = make_run(Y_TRUE, Y_PRED, scratch=_racer((0.3, 0.6, 0.92), 5.0))
    with recording() as record:
        assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=2)
    (race,) = record["races"]
    assert race["speedup"] == pytest.approx(7.5) and not race["lower_bound"]
    assert record["metrics"][0]["name"] == "speedup"
    assert set(record["runs"]) == {"toy (pretrained, freeze=backbone)",
                                   "toy (scratch, freeze=none)"}


def test_faster_than_scratch_failure_shows_both_times():
    run = make_run(Y_TRUE, Y_PRED, scratch=_racer((0.95,), 3.0))
    with pytest.raises(AssertionError) as info:
        assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=2)
    assert str(info.value).startswith(
        "speedup to accuracy 0.900 = 1.50x < 2.00x required: pretrained 2.00s (epoch 2), "
        "scratch 3.00s (epoch 1)")


def test_scratch_never_reaching_target_gives_a_lower_bound():
    run = make_run(Y_TRUE, Y_PRED, scratch=_racer((0.2, 0.4), 1.5))
    with recording() as record:
        assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=1.2)
    assert record["races"][0]["lower_bound"]
    with pytest.raises(AssertionError, match=r"= > 1\.50x < 4\.00x required.*scratch never in "
                                             r"2 epochs, 3\.00s \(best 0\.400\)"):
        assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=4)


def test_pretrained_never_reaching_target_fails_without_racing():
    def boom(**_):
        raise RuntimeError("must not train scratch")

    run = dataclasses.replace(make_run(Y_TRUE, Y_PRED), scratch_runner=boom)
    with pytest.raises(AssertionError, match=r"never reached accuracy 0\.950 \(best 0\.900 in 2 "
                                             r"epochs, 2\.00s\)"):
        assert_faster_than_scratch(run, target_accuracy=0.95)


def test_assertions_work_outside_a_gate_session():
    assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.5)  # no record active: nothing recorded
