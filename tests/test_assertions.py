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
    assert "    class      precision  recall     n\n" in message  # as wide as '<b>eel</b>'
    assert "    dog            0.714   1.000    10" in message
    assert "Fix:" in message


def test_long_class_names_are_not_cut_in_tables():
    names = ["defect_scratch", "defect_scratch_deep", "ok"]
    p = Predictions.from_arrays([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 2], class_names=names)
    with pytest.raises(AssertionError) as info:
        assert_recall_above(p, 0.9, per_class=True)
    message = str(info.value)
    assert "    class               precision  recall     n\n" in message
    assert "    defect_scratch          1.000   0.500     2\n" in message
    assert "    defect_scratch_deep     0.667   1.000     2\n" in message


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
        (lambda r: assert_recall_above(r, 1.5), r"threshold=1\.5 is a fraction in \[0, 1\]"),
        (lambda r: assert_recall_above(r, 0.5, label="cow"), "label='cow' is not a class"),
        (lambda r: assert_accuracy_above("run", 0.5), "run must be the result of finetune"),
        (lambda r: assert_faster_than_scratch(r, target_accuracy=0.8, min_speedup=0),
         "min_speedup must be positive"),
        (lambda r: assert_faster_than_scratch(r, target_accuracy=2),
         "target_accuracy=2 is a fraction in"),
        (lambda r: assert_faster_than_scratch(r, target_accuracy=-0.1),
         "target_accuracy must be a number"),
        (lambda r: assert_faster_than_scratch(r, target_accuracy=0.5),
         "cannot race from scratch"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ModelGateError, match=message):
        call(make_run(Y_TRUE, Y_PRED))


def _racer(accuracies, seconds_per_epoch, asked=None, mid_epoch=False):
    """A scratch runner as run_finetune's: it stops at the target, or after the first epoch
    that ends past the race's budget (Keras), or (``mid_epoch``, PyTorch) at the step that
    passes it, with whatever accuracy the model has there, reached or not (the engines'
    note either way); ``asked`` records budgets."""
    from pytest_modelgate.run import EpochStats
    from pytest_modelgate.train.config import (
        TrainConfig,
        budget_note,
        out_of_budget,
        over_budget,
    )

    def scratch(target_accuracy=None, epochs=None, budget_seconds=None):
        if asked is not None:
            asked.append(budget_seconds)
        config = TrainConfig(epochs=len(accuracies), stop_after_seconds=budget_seconds)
        notes: list[str] = []
        history = []
        for i, acc in enumerate(accuracies):
            end = seconds_per_epoch * (i + 1)
            if mid_epoch and over_budget(config, end) and end > budget_seconds:
                cut = max(budget_seconds, seconds_per_epoch * i)
                history.append(EpochStats(i + 1, 1.0, acc, acc, cut))
                notes.append(budget_note(config, cut, f"in epoch {i + 1}"))
                break
            history.append(EpochStats(i + 1, 1.0, acc, acc, end))
            if target_accuracy is not None and acc >= target_accuracy:
                break
            if out_of_budget(config, end, i + 1, notes):
                break
        run = make_run(Y_TRUE, Y_PRED, pretrained=False)
        return dataclasses.replace(run, notes=tuple(notes), history=tuple(history),
                                   seconds=history[-1].seconds)
    return scratch


def test_faster_than_scratch_passes_and_records_the_race():
    # pretrained reaches 0.9 at epoch 2 (2 s); scratch at epoch 3 (15 s): 7.5x
    run = make_run(Y_TRUE, Y_PRED, scratch=_racer((0.3, 0.6, 0.92), 5.0))
    with recording() as record:
        assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=2, full_race=True)
    (race,) = record["races"]
    assert race["speedup"] == pytest.approx(7.5) and not race["lower_bound"]
    assert not race["stopped_early"]
    assert record["metrics"][0]["lower_bound"] is False
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
    # The metric itself says it is a bound: the report, JUnit and the baseline read it there.
    (speedup,) = record["metrics"]
    assert speedup["name"] == "speedup" and speedup["lower_bound"] is True
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


# --- options: per_class, average, confidence, min_support ------------------------------------

from sklearn import metrics as skm  # noqa: E402

from pytest_modelgate import (  # noqa: E402
    Predictions,
    assert_balanced_accuracy_above,
    assert_beats_majority,
    assert_f1_above,
    assert_no_overfitting,
    assert_precision_at_recall,
    assert_recall_at_precision,
)
from pytest_modelgate.errors import ModelGateWarning  # noqa: E402


def test_per_class_lists_every_class_below():
    with pytest.raises(AssertionError) as info:
        assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.9, per_class=True)
    message = str(info.value)
    assert message.startswith("2 classes below the threshold:\n  recall(cat) = 0.800 < 0.900")
    assert "\n  recall(<b>eel</b>) = 0.600 < 0.900 required [n=5" in message
    with recording() as record:
        assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.5, per_class=True)
    assert [m["name"] for m in record["metrics"]] == ["recall[cat]", "recall[dog]",
                                                      "recall[<b>eel</b>]"]


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("kind", ["precision", "recall", "f1"])
def test_averages_record_scikit_learn_values(kind, average):
    fn = {"precision": assert_precision_above, "recall": assert_recall_above,
          "f1": assert_f1_above}[kind]
    ref = {"precision": skm.precision_score, "recall": skm.recall_score,
           "f1": skm.f1_score}[kind](Y_TRUE, Y_PRED, average=average)
    with recording() as record:
        fn(make_run(Y_TRUE, Y_PRED), 0.0, average=average)
    (metric,) = record["metrics"]
    assert metric["name"] == f"{kind}[{average}]"
    assert metric["value"] == pytest.approx(ref)
    lo, hi = metric["interval"]
    assert lo <= metric["value"] <= hi


def test_f1_of_one_class():
    with pytest.raises(AssertionError, match=r"^f1\(<b>eel</b>\) = 0\.750 < 0\.800 required "
                                             r"\[n=5, 95% CI 0\.\d{3}-1\.000\]"):
        assert_f1_above(make_run(Y_TRUE, Y_PRED), 0.8, label="<b>eel</b>")
    assert_f1_above(make_run(Y_TRUE, Y_PRED), 0.7, label="<b>eel</b>")


def test_confidence_asks_the_lower_bound_to_clear():
    run = make_run(Y_TRUE, Y_PRED)
    assert_recall_above(run, 0.75, label="cat")              # point value 0.8 clears
    with pytest.raises(AssertionError) as info:
        assert_recall_above(run, 0.75, label="cat", confidence=0.95)
    assert str(info.value).startswith(
        "recall(cat): lower 95% bound 0.490 < 0.750 required (value 0.800, n=10, 95% CI "
        "0.490-0.943); the test set is too small to show the model clears it")
    big = make_run([0] * 1000 + [1] * 1000 + [2] * 5, [0] * 1000 + [1] * 1000 + [2] * 5)
    assert_recall_above(big, 0.99, label="cat", confidence=0.95)


def test_min_support_fails_or_warns():
    run = make_run(Y_TRUE, Y_PRED)
    with pytest.raises(AssertionError, match=r"^insufficient evidence: <b>eel</b> \(n=5\) below "
                                             r"min_support=8 test samples; add test images"):
        assert_recall_above(run, 0.5, min_support=8)
    with pytest.warns(ModelGateWarning, match="insufficient evidence: <b>eel</b>"):
        assert_recall_above(run, 0.5, min_support=8, insufficient="warn")
    assert_recall_above(run, 0.5, label="cat", min_support=8)   # only the checked class counts


def test_balanced_accuracy():
    # recalls 0.8, 1.0, 0.6 -> 0.8
    with recording() as record:
        assert_balanced_accuracy_above(make_run(Y_TRUE, Y_PRED), 0.75)
    assert record["metrics"][0]["value"] == pytest.approx(0.8)
    with pytest.raises(AssertionError, match=r"(?s)^balanced accuracy = 0\.800 < 0\.850 required "
                                             r"\[n=25, 95% CI .*Fix: raise the recall"):
        assert_balanced_accuracy_above(make_run(Y_TRUE, Y_PRED), 0.85)


# --- the accuracy paradox ------------------------------------------------------------------

def _binary(y_true, y_pred, scores=None, train=None):
    return Predictions.from_arrays(y_true, y_pred, scores, class_names=["ok", "defect"],
                                   train=train)


def test_beats_majority_catches_the_accuracy_paradox():
    lazy = _binary([0] * 95 + [1] * 5, [0] * 100)           # 95% accurate, finds nothing
    assert_accuracy_above(lazy, 0.9)
    with pytest.raises(AssertionError) as info:
        assert_beats_majority(lazy, margin=0.05)
    message = str(info.value)
    assert message.startswith(
        "the model does not beat guessing by 0.050: balanced accuracy 0.500 (guessing 0.500, "
        "required >= 0.550), MCC 0.000 (guessing 0.000, required >= 0.050) [n=100]")
    assert ("Its accuracy is 0.950, but always predicting 'ok' scores 0.950 on this test set: "
            "on imbalanced data high accuracy can come from predicting the common class. "
            "Class shares: ok 95.0%, defect 5.0%.") in message
    assert "Fix: rebalance training" in message
    good = _binary([0] * 95 + [1] * 5, [0] * 94 + [1] + [1] * 4 + [0])
    with recording() as record:
        assert_beats_majority(good)
    assert [m["name"] for m in record["metrics"]] == ["balanced_accuracy", "mcc"]


def test_beats_majority_on_balanced_data_does_not_blame_imbalance():
    # 46/54: a model that learned nothing, on data with no accuracy paradox to speak of.
    y_true = [0] * 46 + [1] * 54
    y_pred = ([0] * 23 + [1] * 23) + ([0] * 27 + [1] * 27)
    with pytest.raises(AssertionError) as info:
        assert_beats_majority(_binary(y_true, y_pred))
    message = str(info.value)
    assert ("The test classes are about balanced (ok 46.0%, defect 54.0%), so this is not the "
            "accuracy paradox: the model's accuracy 0.500 is close to a guess (always "
            "predicting 'defect' scores 0.540).") in message
    assert "imbalanced" not in message and "rebalance" not in message
    assert "Fix: check that training converged" in message


def test_beats_majority_names_the_test_splits_majority():
    # Train is mostly 'ok', but the test split is mostly 'defect': always predicting the
    # test majority is what a lazy model would score on this test set.
    train = ([0] * 90 + [1] * 10, [0] * 90 + [1] * 10)
    p = _binary([0] * 20 + [1] * 80, [0] * 100, train=train)
    with pytest.raises(AssertionError) as info:
        assert_beats_majority(p)
    assert "always predicting 'defect' scores 0.800 on this test set" in str(info.value)
    with recording() as record:
        with pytest.raises(AssertionError):
            assert_beats_majority(p)
    assert record["metrics"][0]["detail"]["majority_accuracy"] == 0.8


# --- overfitting ---------------------------------------------------------------------------

def test_no_overfitting_pass_and_fail():
    run = dataclasses.replace(make_run(Y_TRUE, Y_PRED), train_y_true=np.array(Y_TRUE),
                              train_y_pred=np.array(Y_TRUE))   # train accuracy 1.0, test 0.84
    assert_no_overfitting(run, max_gap=0.2)
    with pytest.raises(AssertionError) as info:
        assert_no_overfitting(run, max_gap=0.1)
    message = str(info.value)
    assert message.startswith("train accuracy 1.000 - test accuracy 0.840 = gap 0.160 > 0.100 "
                              "allowed [n_train=25, n_test=25]")
    assert "    epoch     train     test\n        1     0.500    0.500" in message
    assert "Fix: fewer epochs" in message
    arrays = _binary([0, 1, 1, 0], [0, 1, 0, 0], train=([0, 1, 1, 0], [0, 1, 1, 0]))
    with pytest.raises(AssertionError, match="gap 0.250 > 0.100"):
        assert_no_overfitting(arrays)
    with pytest.raises(ModelGateError, match="needs train-split predictions"):
        assert_no_overfitting(make_run(Y_TRUE, Y_PRED))


# --- binary operating points ---------------------------------------------------------------

SCORES = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.45, 0.8, 0.9])
TRUTH = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])


def test_threshold_for_and_at_threshold_agree_with_scikit_learn():
    p = _binary(TRUTH, (SCORES >= 0.5).astype(int), SCORES)
    t = p.threshold_for(recall=1.0)
    assert t == 0.45
    at = p.at_threshold(t)
    assert skm.recall_score(at.y_true, at.y_pred) == 1.0
    assert skm.precision_score(at.y_true, at.y_pred) == pytest.approx(3 / 5)
    assert p.threshold_for(precision=1.0) == 0.8
    assert p.threshold_for(precision=0.5) == 0.4   # the lowest: the most recall at that precision


def test_precision_at_recall_pass_and_fail():
    p = _binary(TRUTH, (SCORES >= 0.5).astype(int), SCORES)
    with recording() as record:
        assert_precision_at_recall(p, recall=1.0, min_precision=0.6)
    metric = record["metrics"][0]
    assert metric["name"] == "precision_at_recall[defect@1]"
    assert metric["detail"]["threshold"] == 0.45 and metric["detail"]["curve"][-1] == [0.0, 1.0]
    with pytest.raises(AssertionError) as info:
        assert_precision_at_recall(p, recall=1.0, min_precision=0.8)
    assert str(info.value).startswith(
        "precision(defect) at recall >= 1.000 = 0.600 < 0.800 required [threshold 0.450 gives "
        "recall 1.000; n positives=3, n=10]\n  The precision-recall balance is a choice")


def test_recall_at_precision_pass_and_fail():
    p = _binary(TRUTH, (SCORES >= 0.5).astype(int), SCORES)
    assert_recall_at_precision(p, precision=1.0, min_recall=0.6)
    with pytest.raises(AssertionError, match=r"recall\(defect\) at precision >= 1\.000 = 0\.667 "
                                             r"< 0\.900 required \[threshold 0\.800"):
        assert_recall_at_precision(p, precision=1.0, min_recall=0.9)
    negatives_first = _binary([1, 0, 0], [0, 0, 0], [0.1, 0.9, 0.8])
    with pytest.raises(AssertionError, match="no threshold reaches precision 1.000 for 'defect'"):
        assert_recall_at_precision(negatives_first, precision=1.0, min_recall=0.1)


def test_plain_tuples_work_like_runs():
    assert_recall_above((Y_TRUE, Y_PRED), 0.5)
    assert_precision_at_recall((TRUTH, (SCORES >= 0.5).astype(int), SCORES), recall=1.0,
                               min_precision=0.5)
    with pytest.raises(AssertionError, match=r"^accuracy = 0\.840 < 0\.900"):
        assert_accuracy_above((Y_TRUE, Y_PRED), 0.9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Predictions.from_arrays([0, 1], [0]), "differ in length"),
        (lambda: Predictions.from_arrays([0, 3], [0, 1], class_names=["a", "b"]),
         r"y_true holds labels outside the class list \(0..1"),
        (lambda: Predictions.from_arrays([], []), "y_true is empty"),
        (lambda: Predictions.from_arrays([0, 1], None), "pass y_pred, scores, or both"),
        (lambda: _binary([0, 1], [0, 1], [0.2, np.nan]), "NaN or infinite"),
        (lambda: _binary([0, 1], [0, 1], [[0.2, 0.9], [0.5, 0.5]]),
         "row 0 sums to 1.1000: apply softmax"),
        (lambda: _binary([0, 1], [0, 1], [0.2, 1.4]), r"probabilities in \[0, 1\]"),
        (lambda: _binary([0, 1], [0, 1], [0.2, 0.4]).at_threshold(1.5),
         r"threshold must be in \[0, 1\], got 1.5"),
        (lambda: _binary([0, 1], [0, 1]).at_threshold(0.5), "operating points need scores"),
        (lambda: _binary([0, 1], [0, 1], [0.2, 0.4]).threshold_for(recall=0.5, precision=0.5),
         "exactly one of recall= or precision="),
        (lambda: assert_precision_at_recall(_binary([0, 1], [0, 1], [0.2, 0.4]), recall=0.5,
                                            min_precision=0.5, positive="cat"),
         r"positive='cat' is not one of \['ok', 'defect'\]"),
        (lambda: assert_precision_at_recall(make_run(Y_TRUE, Y_PRED), recall=0.5,
                                            min_precision=0.5),
         "operating points need a binary task; this one has 3 classes"),
        (lambda: assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.5, average="mean"),
         "average must be one of"),
        (lambda: assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.5, confidence=95),
         r"confidence must be a float in \(0, 1\)"),
        (lambda: assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.5, min_support=0),
         "min_support must be a positive integer"),
        (lambda: assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.5, insufficient="ignore"),
         "insufficient must be 'fail' or 'warn'"),
        (lambda: assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.5, label="cat",
                                     per_class=True), "label= or per_class=True, not both"),
        (lambda: assert_beats_majority(make_run(Y_TRUE, Y_PRED), margin=2),
         r"margin=2 is a fraction in \[0, 1\]: did you mean 0\.02\?"),
        (lambda: assert_recall_above([0, 1], 0.5), "a tuple \\(y_true, y_pred"),
    ],
)
def test_bad_prediction_inputs(call, message):
    with pytest.raises(ModelGateError, match=message):
        call()


def test_the_race_stops_scratch_once_the_verdict_is_decided():
    # Pretrained: 2 s to 0.9. With min_speedup 2 the budget is 4 s: scratch's first epoch
    # (5 s) passes it, so the race stops there with a lower bound, not at epoch 3 (15 s).
    asked: list = []
    run = make_run(Y_TRUE, Y_PRED, scratch=_racer((0.3, 0.6, 0.92), 5.0, asked))
    with recording() as record:
        assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=2)
    (race,) = record["races"]
    assert asked == [4.0]
    assert race["lower_bound"] and race["stopped_early"]
    assert race["speedup"] == pytest.approx(2.5) and race["scratch_seconds"] == 5.0


def test_the_early_stop_never_changes_the_verdict():
    """Random races: the verdict with the budget equals the full race's, every time."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 8))
        accuracies = tuple(np.round(np.sort(rng.uniform(0, 1, n)), 2))
        per_epoch = float(rng.uniform(0.2, 4))
        min_speedup = float(rng.uniform(0.5, 5))
        verdicts = []
        for full, mid_epoch in ((True, False), (False, False), (False, True)):
            run = make_run(Y_TRUE, Y_PRED, accuracies=(0.5, 0.9),
                           scratch=_racer(accuracies, per_epoch, mid_epoch=mid_epoch))
            try:
                assert_faster_than_scratch(run, target_accuracy=0.9, min_speedup=min_speedup,
                                           full_race=full)
                verdicts.append(True)
            except AssertionError:
                verdicts.append(False)
        assert verdicts[0] == verdicts[1] == verdicts[2], (accuracies, per_epoch, min_speedup)


def test_per_class_gives_the_lowest_classes_a_line_of_their_own():
    with pytest.raises(AssertionError) as info:
        assert_recall_above(make_run(Y_TRUE, Y_PRED), 0.9, per_class=True)
    lines = str(info.value).split("\n")
    assert lines[2].startswith("  recall(<b>eel</b>) = 0.600 < 0.900 required [n=5, 95% CI ")
    assert lines[2].endswith("]")  # the last class's line ends with its own interval
    assert lines[3] == "  lowest recall: <b>eel</b> 0.600, cat 0.800, dog 1.000"


@pytest.mark.parametrize("call", [
    lambda r, t: assert_accuracy_above(r, t),
    lambda r, t: assert_recall_above(r, t, label="cat"),
    lambda r, t: assert_precision_above(r, t),
])
def test_a_percentage_for_a_fraction_asks_did_you_mean(call):
    run = make_run(Y_TRUE, Y_PRED)
    with pytest.raises(ModelGateError,
                       match=r"^threshold=90 is a fraction in \[0, 1\]: did you mean 0\.90\?$"):
        call(run, 90)
    with pytest.raises(ModelGateError, match=r"threshold=87\.5 .* did you mean 0\.875\?"):
        call(run, 87.5)
    with pytest.raises(ModelGateError, match=r"threshold must be a number in \[0, 1\], got 300"):
        call(run, 300)


def test_a_run_prints_as_one_short_line():
    run = make_run(Y_TRUE, Y_PRED)
    assert repr(run) == str(run) == (
        "FinetuneRun('toy', pretrained, freeze=backbone, accuracy 0.840 on 25 test images, "
        "3 classes: cat, dog, <b>eel</b>, 2.00s on cpu)")
    cached = dataclasses.replace(run, cached=True, pretrained=False, freeze="none")
    assert repr(cached).endswith(", 2.00s on cpu, cached)")
    assert "scratch" in repr(cached)


# --- a test split that lacks a class (issue 22) ---------------------------------------------

def _no_bees_run():
    """hymenoptera_data with no bees in val/: 8 ants, one of them called a bee."""
    from pytest_modelgate.data import ImageSet

    y_true, y_pred = np.zeros(8, dtype=int), np.array([0] * 7 + [1])
    bee = np.where(y_pred == 1, 0.8, 0.1)
    images = np.random.default_rng(0).integers(0, 256, (8, 4, 4), dtype=np.uint8)
    return dataclasses.replace(
        make_run(y_true, y_pred), class_names=("ants", "bees"),
        probabilities=np.stack([1 - bee, bee], axis=1),
        train_y_true=np.array([0, 0, 1, 1]), train_y_pred=np.array([0, 0, 1, 1]),
        test_set=ImageSet(images, y_true, ("ants", "bees"), name="val"))


def test_split_wide_gates_work_when_the_test_split_lacks_a_class():
    run = _no_bees_run()
    with recording() as record:
        assert_accuracy_above(run, 0.8)
        assert_balanced_accuracy_above(run, 0.8)
        assert_no_overfitting(run, max_gap=0.2)
        assert_recall_above(run, 0.8)            # macro over the classes val has: ants
        assert_f1_above(run, 0.8, average="micro")
    assert [m["value"] for m in record["metrics"]] == [0.875, 0.875, 0.125, 0.875, 0.875]
    (entry,) = record["runs"].values()
    assert entry["pr_curve"] is None
    assert entry["pr_note"] == ("precision-recall curve not drawn: the test split (val) has no "
                                "images of 'bees'")
    bees = entry["summary"]["per_class"][1]
    assert (bees["recall"], bees["f1"], bees["precision"], bees["support"]) == (None, None,
                                                                                 0.0, 0)


@pytest.mark.parametrize("gate", [
    lambda r: assert_recall_above(r, 0.5, label="bees"),
    lambda r: assert_precision_above(r, 0.5, label="bees"),
    lambda r: assert_f1_above(r, 0.5, label="bees"),
    lambda r: assert_recall_above(r, 0.5, label="bees", min_support=5),
    lambda r: assert_precision_at_recall(r, recall=0.9, min_precision=0.5),
    lambda r: assert_recall_at_precision(r, precision=0.9, min_recall=0.5, positive="bees"),
])
def test_a_gate_on_the_missing_class_says_the_test_split_has_none(gate):
    with recording() as record, pytest.raises(ModelGateError) as info:
        gate(_no_bees_run())
    assert str(info.value).startswith(
        "the test split (val) has no images of class 'bees', so no figure of that class can "
        "be measured; add test images of 'bees', or gate a class the test split has")
    assert record["metrics"] == []


def test_a_missing_class_shows_as_na_and_is_left_out_of_per_class_and_macro():
    # cat and dog in the test split; eel only in train, and predicted once (a false alarm).
    p = Predictions.from_arrays([0, 0, 1, 1], [0, 0, 1, 2], class_names=["cat", "dog", "eel"])
    with recording() as record:
        assert_recall_above(p, 0.7)          # (1.0 + 0.5) / 2: eel's n/a recall is left out
    assert record["metrics"][0]["value"] == 0.75
    with pytest.warns(ModelGateWarning, match=r"per_class=True: the test split has no images "
                                              r"of \['eel'\]; checked the other classes"):
        with pytest.raises(AssertionError) as info:
            assert_recall_above(p, 0.9, per_class=True)
    message = str(info.value)
    assert message.startswith("recall(dog) = 0.500 < 0.900 required [n=2")
    assert "lowest recall: dog 0.500, cat 1.000\n" in message
    assert "    eel       0.000     n/a     0" in message


def test_a_class_the_model_never_predicts_has_na_precision_and_fails_its_gate():
    p = Predictions.from_arrays([0, 0, 1, 1, 2], [0, 0, 1, 1, 1],
                                class_names=["cat", "dog", "eel"])
    assert p.summary()["per_class"][2]["precision"] is None
    assert_precision_above(p, 0.5)                       # macro runs, eel counts as 0
    with pytest.raises(AssertionError) as info:
        assert_precision_above(p, 0.5, label="eel")
    message = str(info.value)
    assert message.startswith("precision(eel) = 0.000 < 0.500 required [n=0, 95% CI "
                              "0.000-1.000]; the model never predicts 'eel'")
    assert "    eel         n/a   0.000     1" in message


def test_beats_majority_on_a_test_split_of_one_class_says_why_it_cannot_pass():
    with pytest.raises(ModelGateError, match=r"^the test split \(val\) holds one class, 'ants': "
                                             r"always predicting it is right every time, so no "
                                             r"model can beat guessing; add test images of "
                                             r"'bees'"):
        assert_beats_majority(_no_bees_run())
    # Three classes, one missing: the other two are compared as usual.
    assert_beats_majority(Predictions.from_arrays([0, 0, 1, 1], [0, 0, 1, 1],
                                                  class_names=["cat", "dog", "eel"]))
