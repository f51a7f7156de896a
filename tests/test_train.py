"""The framework-neutral orchestration: a run as a picklable plan, and the epoch
bookkeeping every engine reports to."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.train.config import TrainConfig, stopped_by_budget
from pytest_modelgate.train.record import EpochLog

GRAY = dict(image_size=8, mean=(0.5,), std=(0.5,), device="cpu")


def test_a_run_plan_pickles_and_trains_the_same_run_where_it_lands(digits_small):
    """What a spawned rank or a Ray worker receives: the plan, pickled; trained there it is
    the run trained here, and it names the same cache entry."""
    pytest.importorskip("torch")
    from pytest_modelgate.train import run_finetune
    from pytest_modelgate.train.plan import plan_run
    from pytest_modelgate.train.record import fit

    from .conftest import tiny_cnn

    kwargs = dict(epochs=2, freeze="none", lr=1e-2, batch_size=64, **GRAY)
    plan = plan_run(tiny_cnn, digits_small, **kwargs)
    landed = pickle.loads(pickle.dumps(plan))
    assert landed == plan
    assert landed.key(landed.config, {"m": 1}) == plan.key(plan.config, {"m": 1})
    there, head_state = fit(landed.adapter, landed.load(), digits_small, landed.config)
    here = run_finetune(tiny_cnn, digits_small, **kwargs)
    np.testing.assert_array_equal(there.probabilities, here.probabilities)
    assert [h.loss for h in there.history] == [h.loss for h in here.history]
    assert set(head_state) == {"weight", "bias"}


def test_a_keras_plan_keys_on_keras_versions_and_a_torch_plan_on_torch_versions(digits_small):
    from pytest_modelgate.train.plan import plan_run

    keras = plan_run("keras:MobileNet(alpha=0.25)", digits_small, weights=None)
    torch = plan_run("efficientnet_lite0", digits_small)
    assert keras.framework == "keras" and torch.framework == "torch"
    assert "torch" not in keras.key_parts["versions"]
    assert not {"keras", "tensorflow"} & set(torch.key_parts["versions"])
    assert {"pytest-modelgate", "numpy"} <= set(keras.key_parts["versions"])


def _log(**config):
    lines: list[str] = []
    log = EpochLog(TrainConfig(epochs=3, **config), lines.append)
    log.start("net", 0.5)
    return log, lines


def test_the_epoch_log_keeps_history_and_says_each_epoch():
    log, lines = _log()
    assert not log.end_epoch(1, loss=0.7, train_accuracy=0.5, seconds=1.0,
                             evaluate=lambda: 0.6)
    assert log.history[0].seconds == 1.5 and log.history[0].test_accuracy == 0.6
    assert lines == ["modelgate: net epoch 1/3: loss 0.7000, train acc 0.500, test acc "
                     "0.600, 1.5s"]


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_a_broken_loss_stops_the_run_with_the_fix(loss):
    log, _ = _log(lr=0.5)
    with pytest.raises(ModelGateError, match=rf"training loss became {loss} in epoch 1; "
                                             r"lower the learning rate \(lr=0.5\)"):
        log.end_epoch(1, loss=loss, train_accuracy=0.1, seconds=1.0, evaluate=lambda: 0.1)


def test_the_target_and_the_race_budget_stop_training_with_a_note():
    log, _ = _log(stop_at_accuracy=0.9)
    assert log.end_epoch(1, loss=0.1, train_accuracy=1.0, seconds=1.0, evaluate=lambda: 0.95)
    assert log.notes == ["stopped after epoch 1: reached 0.900"]
    log, _ = _log(stop_after_seconds=2.0)
    assert not log.passes_budget(1.0) and log.passes_budget(1.5)
    assert log.end_epoch(1, loss=0.1, train_accuracy=0.5, seconds=1.6, evaluate=lambda: 0.5,
                         cut=(40, 100))
    assert log.notes[-1].endswith("in epoch 1, after 40 of 100 images: 2.1s of training "
                                  "reached the race's budget of 2.0s, which decides the "
                                  "verdict") and log.cut_by_budget()
    log, _ = _log(stop_after_seconds=2.0)
    assert log.end_epoch(1, loss=0.1, train_accuracy=0.5, seconds=2.0, evaluate=lambda: 0.5)
    assert "after epoch 1" in log.notes[-1] and log.cut_by_budget()


def test_the_run_record_comes_from_the_log_and_what_the_engine_returns(digits_small):
    from pytest_modelgate.train.record import Trained, run_record

    log, _ = _log(stop_after_seconds=0.1)
    log.warmed_up("warm-up (one step, then undone)", 0.25)
    log.end_epoch(1, loss=0.1, train_accuracy=0.5, seconds=1.0, evaluate=lambda: 0.5)
    n = len(digits_small.test)
    probabilities = np.full((n, 3), 1 / 3, dtype=np.float32)
    trained = Trained("net", True, "cpu", probabilities, None, 0.5, {"framework": "torch"})
    run = run_record(trained, digits_small, log.config, log)
    assert run.notes[0] == "warm-up (one step, then undone): 0.2s, not timed"
    assert stopped_by_budget(run) and run.train_y_true is None and run.seconds == 1.5
    assert run.config["framework"] == "torch" and run.config["epochs"] == 3
    np.testing.assert_array_equal(run.y_true, digits_small.test.labels)
