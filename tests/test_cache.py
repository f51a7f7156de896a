from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from pytest_modelgate.cache import CacheCounts, RunCache, run_key  # noqa: E402
from pytest_modelgate.errors import ModelGateError, ModelGateWarning  # noqa: E402
from pytest_modelgate.train import run_finetune  # noqa: E402

from .conftest import tiny_cnn  # noqa: E402

# Cache tests are of CPU runs (exact repeats): pinned, as "auto" is cuda on a GPU machine.
GRAY = {"image_size": 8, "mean": (0.5,), "std": (0.5,), "device": "cpu"}


def _entries(directory):
    """Cached runs: one manifest each under runs/ (blobs/ holds their payloads)."""
    return sorted((directory / "runs").glob("*.json")) if (directory / "runs").is_dir() else []


def _blob(directory, manifest, name):
    """The file of the payload ``name`` (run.json, arrays.npz) a manifest names."""
    sha = json.loads(manifest.read_text())["blobs"][name]["sha256"]
    return directory / "blobs" / sha[:2] / sha


def _replace_payload(directory, manifest, name, data):
    """Point the entry's ``name`` at new content, with a matching hash: what someone with
    write access to the cache can do (the manifest is then unsigned)."""
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    (directory / "blobs" / sha[:2]).mkdir(parents=True, exist_ok=True)
    (directory / "blobs" / sha[:2] / sha).write_bytes(data)
    meta = json.loads(manifest.read_text())
    meta["blobs"][name] = {"sha256": sha, "size": len(data)}
    meta.pop("signature", None)
    manifest.write_text(json.dumps(meta))


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
    (manifest,) = _entries(tmp_path)
    assert json.loads(manifest.read_text())["format"] == 2
    meta = json.loads(_blob(tmp_path, manifest, "run.json").read_text())
    assert meta["format"] == 1
    with np.load(_blob(tmp_path, manifest, "arrays.npz"), allow_pickle=False) as arrays:
        assert arrays["head.weight"].shape == (3, 32)   # the trained head is kept


def test_anything_that_decides_the_run_changes_the_key(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", seed=1, cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="backbone", cache=cache, **GRAY)
    assert (cache.stored, cache.hits) == (4, 0)
    assert run_key({"a": 1, "b": [1, 2]}) == run_key({"b": [1, 2], "a": 1})


USER_MODEL = """
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.AdaptiveAvgPool2d(2),
                                      nn.Flatten())
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(self.features(x)){edit}
"""


def _user_class(folder, edit: str, monkeypatch):
    """The class ``Tiny`` of a module file written in ``folder``, imported as a user's
    repo's module is."""
    import importlib.util
    import sys

    folder.mkdir(exist_ok=True)
    (folder / "tiny_model.py").write_text(USER_MODEL.format(edit=edit))
    spec = importlib.util.spec_from_file_location("tiny_model", folder / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tiny_model", module)
    spec.loader.exec_module(module)
    return module.Tiny


def test_editing_the_users_model_code_retrains(digits_small, tmp_path, monkeypatch):
    cache = RunCache(tmp_path / "cache")
    run = dict(epochs=1, freeze="none", weights=None, cache=cache, **GRAY)
    run_finetune(_user_class(tmp_path / "a", "", monkeypatch), digits_small, **run)
    assert run_finetune(_user_class(tmp_path / "b", "", monkeypatch), digits_small, **run).cached
    # The same weights, another forward: a model that cannot work must not pass from the
    # cache of one that did.
    broken = run_finetune(_user_class(tmp_path / "c", " * 0", monkeypatch), digits_small, **run)
    assert not broken.cached
    # A layer swapped in an nn.Sequential of torch's own classes changes no weight either.
    from torch import nn

    def gelu(num_classes: int = 10):
        model = tiny_cnn(num_classes)
        model[1] = nn.GELU()
        return model

    run_finetune(tiny_cnn, digits_small, **run)
    assert not run_finetune(gelu, digits_small, **run).cached
    assert (cache.stored, cache.hits) == (4, 1)


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
    (manifest,) = _entries(tmp_path)
    # An object array would need pickle to load: it must be refused, not unpickled, even
    # under a manifest whose hash matches it.
    import io

    buffer = io.BytesIO()
    np.savez(buffer, y_true=np.array([{"evil": 1}], dtype=object))
    _replace_payload(tmp_path, manifest, "arrays.npz", buffer.getvalue())
    with pytest.warns(ModelGateWarning, match="ignoring unreadable cached run .*"
                                              "ValueError: Object arrays cannot be loaded"):
        rerun = run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache,
                             **GRAY)
    assert not rerun.cached
    again = run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache, **GRAY)
    assert again.cached   # the retrained run replaced the broken entry


def test_disabled_cache_writes_nothing(digits_small, tmp_path):
    cache = RunCache(None)
    run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    assert not cache.enabled and cache.load("x") is None


@pytest.mark.parametrize(("damage", "why"), [
    ("truncated", "does not match its hash"), ("empty", r"\(0 bytes"),
    ("flipped byte", "does not match its hash"), ("missing", "blob [0-9a-f]{12} is missing"),
    ("garbled manifest", "garbled manifest")])
def test_damaged_entries_are_a_warning_and_a_retrain(digits_small, tmp_path, damage, why):
    cache = RunCache(tmp_path)
    # Pinned to the CPU: the retrain is compared prediction for prediction.
    same = dict(epochs=1, freeze="none", cache=cache, **GRAY)
    first = run_finetune(tiny_cnn, digits_small, **same)
    (manifest,) = _entries(tmp_path)
    arrays = _blob(tmp_path, manifest, "arrays.npz")
    data = arrays.read_bytes()
    if damage == "truncated":   # a disk that filled up, a copy cut short
        arrays.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        arrays.write_bytes(b"")
    elif damage == "flipped byte":   # a bad disk, a bad copy: same size, other content
        arrays.write_bytes(data[:-30] + bytes([data[-30] ^ 0xFF]) + data[-29:])
    elif damage == "missing":
        arrays.unlink()
    else:
        manifest.write_text('{"format": 2, "key": ')
    with pytest.warns(ModelGateWarning,
                      match=f"ignoring unreadable cached run {manifest} \\(.*{why}"):
        rerun = run_finetune(tiny_cnn, digits_small, **same)
    assert not rerun.cached and cache.stored == 2
    np.testing.assert_array_equal(rerun.y_pred, first.y_pred)
    assert run_finetune(tiny_cnn, digits_small, **same).cached   # the entry was rewritten


def test_a_failed_run_stores_nothing_and_counts_as_not_trained(digits_small, tmp_path):
    cache = RunCache(tmp_path)
    with pytest.raises(Exception, match="head"):
        run_finetune(tiny_cnn, digits_small, epochs=1, head="nope", cache=cache, **GRAY)
    assert (cache.stored, cache.hits) == (0, 0) and _entries(tmp_path) == []
    assert cache.take_counts() == CacheCounts(0, 0, 0)
    run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    assert cache.take_counts() == CacheCounts(loaded=1, trained=1, rejected=0)
    assert cache.take_counts() == CacheCounts(0, 0, 0)


def test_runs_round_trip_through_s3(digits_small, s3_cache_url):
    cache = RunCache(s3_cache_url)
    assert cache.remote and cache.location == s3_cache_url
    first = run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache, **GRAY)
    again = RunCache(s3_cache_url)  # another runner: nothing of the first's in memory
    second = run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=again, **GRAY)
    assert not first.cached and second.cached
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    assert (cache.stored, again.hits) == (1, 1)
    # Lock files and leakage thumbnails stay on this machine.
    assert cache.directory is not None and cache.directory.is_dir()
    assert not str(cache.directory).startswith("s3")


def test_a_read_only_cache_loads_and_stores_nothing(digits_small, tmp_path):
    same = dict(epochs=1, freeze="none", **GRAY)
    readonly = RunCache(tmp_path / "ro", readonly=True)
    run = run_finetune(tiny_cnn, digits_small, cache=readonly, **same)
    assert not run.cached and (readonly.trained, readonly.stored) == (1, 0)
    readonly.write_file("durations.json", b"{}")
    assert not (tmp_path / "ro").exists() or not any((tmp_path / "ro").iterdir())
    run_finetune(tiny_cnn, digits_small, cache=RunCache(tmp_path / "rw"), **same)
    loaded = RunCache(tmp_path / "rw", readonly=True)
    assert run_finetune(tiny_cnn, digits_small, cache=loaded, **same).cached
    assert loaded.take_counts() == CacheCounts(loaded=1, trained=0, rejected=0)


def test_with_a_key_an_unsigned_entry_is_rejected_retrained_and_signed(digits_small, tmp_path):
    key = b"the-ci-secret-7"
    same = dict(epochs=1, freeze="none", **GRAY)
    first = run_finetune(tiny_cnn, digits_small, cache=RunCache(tmp_path), **same)  # unsigned
    (manifest,) = _entries(tmp_path)
    signed = RunCache(tmp_path, signing_key=key, readonly=True)
    with pytest.warns(ModelGateWarning, match=f"rejected cached run {manifest}: unsigned; "
                                              "with MODELGATE_CACHE_KEY set only entries "
                                              "signed with it are read; retraining it") as got:
        rerun = run_finetune(tiny_cnn, digits_small, cache=signed, **same)
    assert "the-ci-secret-7" not in str(got[0].message)
    assert not rerun.cached and signed.take_counts() == CacheCounts(0, 1, 1)
    assert "signature" not in json.loads(manifest.read_text())  # read-only: left as it was
    np.testing.assert_array_equal(rerun.y_pred, first.y_pred)

    writer = RunCache(tmp_path, signing_key=key)
    with pytest.warns(ModelGateWarning, match="rejected cached run"):
        run_finetune(tiny_cnn, digits_small, cache=writer, **same)
    assert "signature" in json.loads(manifest.read_text())  # rewritten, signed
    assert run_finetune(tiny_cnn, digits_small, cache=writer, **same).cached
    assert writer.take_counts() == CacheCounts(1, 1, 1)


def test_max_size_evicts_the_least_recently_used_after_each_save(digits_small, tmp_path):
    cache = RunCache(tmp_path, max_size=1)  # one run is more: only the newest stays
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", cache=cache, **GRAY)
    (older,) = _entries(tmp_path)
    run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none", seed=1, cache=cache, **GRAY)
    (newest,) = _entries(tmp_path)
    assert newest != older and cache.stored == 2


def test_max_size_is_refused_for_an_object_store():
    with pytest.raises(ModelGateError, match="max_size evicts from local folders only: an "
                                             "object store expires objects with its own "
                                             "lifecycle rules"):
        RunCache("s3://bucket/runs", max_size=10**9)


def test_an_unwritable_store_is_a_warning_not_a_failed_run(digits_small, s3_cache_url):
    cache = RunCache("s3://no-such-bucket-modelgate/runs")
    with pytest.warns(ModelGateWarning, match="run not stored in the run cache at "
                                              "s3://no-such-bucket-modelgate/runs "
                                              r"\(FileNotFoundError: .*\); it is trained "
                                              "again next time"):
        run = run_finetune(tiny_cnn, digits_small, epochs=1, cache=cache, **GRAY)
    assert not run.cached and (cache.trained, cache.stored) == (1, 0)


def test_an_unknown_filesystem_is_a_usage_error():
    with pytest.raises(ModelGateError, match=r"the run cache at nosuch://bucket/runs: .*"
                                             "use a folder, file://, s3://, gs:// or az://"):
        RunCache("nosuch://bucket/runs")


def test_plain_files_at_the_cache_root(tmp_path):
    cache = RunCache(tmp_path)
    assert cache.read_file("durations.json") is None
    cache.write_file("durations.json", b'{"t": 1}')
    assert cache.read_file("durations.json") == b'{"t": 1}'
    assert (tmp_path / "durations.json").read_bytes() == b'{"t": 1}'
    RunCache(tmp_path, readonly=True).write_file("durations.json", b"{}")
    assert cache.read_file("durations.json") == b'{"t": 1}'
    off = RunCache(None)
    off.write_file("durations.json", b"{}")
    assert off.read_file("durations.json") is None and off.location == "" and not off.remote


def test_a_read_only_or_signed_folder_cache_keeps_thumbnails_and_locks_on_this_machine(
        tmp_path):
    """Leakage thumbnails and lock files are not signed: a job that trusts the cache only by
    signature, or must not write it, keeps them in a folder of its own."""
    shared = tmp_path / "shared"
    assert RunCache(shared).directory == shared
    for cache in (RunCache(shared, readonly=True), RunCache(shared, signing_key=b"k")):
        assert cache.directory is not None and shared not in cache.directory.parents
        assert cache.directory != shared
