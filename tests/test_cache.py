from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from pytest_modelgate.cache import RunCache, run_key  # noqa: E402
from pytest_modelgate.errors import ModelGateWarning  # noqa: E402
from pytest_modelgate.train import run_finetune  # noqa: E402

from .conftest import tiny_cnn  # noqa: E402

# Cache tests are of CPU runs (exact repeats): pinned, as "auto" is cuda on a GPU machine.
GRAY = {"image_size": 8, "mean": (0.5,), "std": (0.5,), "device": "cpu"}


def _entries(directory):
    """Cached runs: one folder each (lock files live in the hidden .locks folder)."""
    return [p for p in directory.iterdir() if not p.name.startswith(".")]


def test_second_run_is_loaded_not_trained(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    first = run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", cache=cache, **GRAY)
    second = run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", cache=cache, **GRAY)
    assert (cache.stored, cache.hits) == (1, 1)
    assert not first.cached and second.cached
    assert second.notes[-1].startswith("cached: trained ")
    for name in ("y_true", "y_pred", "probabilities", "train_y_true", "train_y_pred"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.history == first.history and second.config == first.config
    (folder,) = _entries(tmp_path)
    meta = json.loads((folder / "run.json").read_text())
    assert meta["format"] == 1
    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["head.weight"].shape == (3, 32)   # the trained head is kept


def test_anything_that_decides_the_run_changes_the_key(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", seed=1, cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="backbone", cache=cache, **GRAY)
    assert (cache.stored, cache.hits) == (4, 0)
    assert run_key({"a": 1, "b": [1, 2]}) == run_key({"b": [1, 2], "a": 1})


def test_scratch_races_are_cached_too(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    run = run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    run.scratch_runner(target_accuracy=0.5)
    again = run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    assert again.scratch_runner(target_accuracy=0.5).cached
    assert (cache.stored, cache.hits) == (2, 2)


def test_a_race_cut_at_its_budget_serves_smaller_budgets_only(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    run = run_finetune(tiny_cnn, digits_small, epochs=4, cache=cache, **GRAY)
    cut = run.scratch_runner(target_accuracy=1.0, budget_seconds=1e-6)
    # Cut in its first epoch, after its first batch: the verdict is decided there. A run
    # cut short serves only its race, so it skips the evaluation pass over the train split.
    assert len(cut.history) == 1 and cut.notes[-1].startswith(
        f"race stopped in epoch 1, after 32 of {len(digits_small.train)} images: "
    ) and cut.notes[-1].endswith("decides the verdict")
    assert cut.train_y_pred is None and cut.train_y_true is None
    # The budget follows the pretrained run's timing: it is not part of the key.
    served = run.scratch_runner(target_accuracy=1.0, budget_seconds=cut.seconds / 2)
    assert served.cached and served.train_y_pred is None
    full = run.scratch_runner(target_accuracy=1.0)  # the full race: trained again
    assert not full.cached and len(full.history) == 4 and not any(
        n.startswith("race stopped") for n in full.notes)
    assert run.scratch_runner(target_accuracy=1.0, budget_seconds=1e-6).cached  # and stored
    assert (cache.stored, cache.hits) == (3, 2)


def test_unreadable_entries_are_retrained_with_a_warning(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache, **GRAY)
    (folder,) = _entries(tmp_path)
    # An object array would need pickle to load: it must be refused, not unpickled.
    np.savez(folder / "arrays.npz", y_true=np.array([{"evil": 1}], dtype=object))
    with pytest.warns(ModelGateWarning, match="ignoring unreadable cached run"):
        rerun = run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache,
                             **GRAY)
    assert not rerun.cached
    again = run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache, **GRAY)
    assert again.cached   # the retrained run replaced the broken entry


def test_disabled_cache_writes_nothing(digits_small, tmp_path):
    cache = RunCache(None)
    run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    assert not cache.enabled and cache.load("x") is None


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbled json"])
def test_damaged_entries_are_a_warning_and_a_retrain(digits_small, tmp_path, damage):
    cache = RunCache(tmp_path)
    # Pinned to the CPU: the retrain is compared prediction for prediction.
    same = dict(epochs=1, freeze="none", cache=cache, **GRAY)
    first = run_finetune(tiny_cnn, digits_small, **same)
    (folder,) = _entries(tmp_path)
    arrays = folder / "arrays.npz"
    if damage == "truncated":   # a disk that filled up, a copy cut short
        arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
    elif damage == "empty":
        arrays.write_bytes(b"")
    else:
        (folder / "run.json").write_text('{"format": 1, "model": ')
    with pytest.warns(ModelGateWarning, match=f"ignoring unreadable cached run {folder}"):
        rerun = run_finetune(tiny_cnn, digits_small, **same)
    assert not rerun.cached and cache.stored == 2
    np.testing.assert_array_equal(rerun.y_pred, first.y_pred)
    assert run_finetune(tiny_cnn, digits_small, **same).cached


def test_a_failed_run_stores_nothing_and_counts_as_not_trained(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    with pytest.raises(Exception, match="head"):
        run_finetune(tiny_cnn, digits_small, epochs=1, head="nope", cache=cache, **GRAY)
    assert (cache.stored, cache.hits) == (0, 0) and _entries(tmp_path) == []
    assert cache.take_counts() == (0, 0)
    run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    assert cache.take_counts() == (1, 1) and cache.take_counts() == (0, 0)
