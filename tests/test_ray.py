"""PyTorch fine-tunes as Ray Train jobs (``--modelgate-ray``), on a real local Ray instance.

The faults that need no cluster run first; the runs then share one Ray instance of two CPUs
(starting one takes seconds), which the module's fixture starts and shuts down.
"""

from __future__ import annotations

import socket
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray", reason="the Ray tests need pytest-modelgate[ray]")
pytest.importorskip("ray.train.torch", reason="the Ray tests need pytest-modelgate[ray]")

from pytest_modelgate.errors import AdapterUnavailableError, HeadNotFoundError, ModelGateError
from pytest_modelgate.frameworks.torch import on_ray
from pytest_modelgate.options import OPTION_ENABLE, OPTION_RAY
from pytest_modelgate.train import run_finetune

from .conftest import tiny_cnn

GRAY = dict(image_size=8, mean=(0.5,), std=(0.5,), device="cpu")
RUN = dict(epochs=2, freeze="none", lr=1e-2, batch_size=64, **GRAY)


@pytest.fixture
def no_ray() -> None:
    """The faults of joining a cluster: this process must not be connected yet."""
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray (the fault tests run first)")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_ray_the_error_says_what_to_install(digits_small, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without Ray
    with pytest.raises(AdapterUnavailableError, match=r"pip install 'pytest-modelgate\[ray\]'"):
        run_finetune(tiny_cnn, digits_small, ray="local", **RUN)


def test_an_address_where_nothing_answers_fails_within_seconds(digits_small, no_ray):
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ModelGateError, match=rf"{OPTION_RAY}={address}: no Ray cluster "
                                             r"answers.*ray start --head"):
        run_finetune(tiny_cnn, digits_small, ray=address, **RUN)
    with pytest.raises(ModelGateError, match="no Ray cluster answers"):
        run_finetune(tiny_cnn, digits_small, ray=f"ray://{address}", **RUN)
    assert not ray.is_initialized()


def test_auto_without_a_running_cluster_says_how_to_start_one(digits_small, no_ray,
                                                              monkeypatch):
    # Whatever else runs on this machine: auto finds no cluster.
    from ray._private import services

    def no_gcs() -> list[str]:
        return []

    no_gcs.cache_clear = lambda: None  # type: ignore[attr-defined] # ray.init calls it
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", no_gcs)
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    with pytest.raises(ModelGateError, match=rf"{OPTION_RAY}=auto: no Ray cluster runs on "
                                             rf"this machine.*{OPTION_RAY}=local"):
        run_finetune(tiny_cnn, digits_small, ray="auto", **RUN)
    assert not ray.is_initialized()


def test_a_rank_s_own_error_keeps_its_class_and_says_the_rank():
    from ray.train import WorkerGroupError

    failed = WorkerGroupError("traceback text", {1: HeadNotFoundError("head='x' names no "
                                                                      "submodule")})
    error = on_ray._failure(failed, "local", 2)
    assert isinstance(error, HeadNotFoundError)
    assert str(error) == "rank 1 of 2 on Ray: head='x' names no submodule"


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray instance for the module's runs; ``ray="auto"`` then reuses it
    (a connected process keeps its cluster)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             object_store_memory=150 * 1024 ** 2)
    yield "auto"
    ray.shutdown()


def test_a_ray_run_is_the_run_trained_here(digits_small, local_ray):
    """On CPU with the same seed, the Ray worker trains the same run: the same predictions,
    probabilities equal but for float summation order (the worker's torch uses one thread,
    as Ray gives it one CPU), and rank 0's progress lines reach the driver."""
    lines: list[str] = []
    there = run_finetune(tiny_cnn, digits_small, ray=local_ray, progress=lines.append, **RUN)
    here = run_finetune(tiny_cnn, digits_small, **RUN)
    assert there.probabilities.shape == (len(digits_small.test), 3)
    np.testing.assert_array_equal(there.y_pred, here.y_pred)
    np.testing.assert_allclose(there.probabilities, here.probabilities, atol=1e-5)
    np.testing.assert_allclose([h.loss for h in there.history],
                               [h.loss for h in here.history], rtol=1e-5)
    assert there.accuracy == here.accuracy
    assert there.config["ranks"] == "ray" and "ranks" not in here.config
    assert there.config["workers"] == 1 and there.device == "cpu"
    assert [line.split(":")[1].strip() for line in lines] == ["tiny_cnn epoch 1/2",
                                                              "tiny_cnn epoch 2/2"]


def test_two_ray_workers_return_rank_0_s_record(digits_small, local_ray):
    """Two Ray Train workers in one gloo group train the run two spawned local ranks
    train: the same engine and world size, so the same predictions (CPU, same seed)."""
    run = run_finetune(tiny_cnn, digits_small, ray=local_ray, workers=2, **RUN)
    spawned = run_finetune(tiny_cnn, digits_small, workers=2, **RUN)
    assert run.probabilities.shape == (len(digits_small.test), 3)
    assert len(run.history) == 2
    assert (run.config["ranks"], run.config["workers"], run.config["backend"]) == \
        ("ray", 2, "gloo")
    assert spawned.config["ranks"] == "spawn"
    np.testing.assert_array_equal(run.y_pred, spawned.y_pred)
    np.testing.assert_allclose(run.probabilities, spawned.probabilities, atol=1e-5)


def test_more_workers_than_the_cluster_has_are_refused_not_awaited(digits_small, local_ray):
    with pytest.raises(ModelGateError, match=r"workers=4 on the Ray cluster .* one CPU, and "
                                             r"the cluster has 2 CPUs.*workers=2 or fewer"):
        run_finetune(tiny_cnn, digits_small, ray=local_ray, workers=4, **RUN)
    with pytest.raises(ModelGateError, match=r"one GPU, and the cluster has 0 GPUs"):
        run_finetune(tiny_cnn, digits_small, ray=local_ray, **{**RUN, "device": "cuda"})


class _Broken(torch.nn.Sequential):
    """tiny_cnn whose forward pass fails (the driver never runs it; the worker does)."""

    def forward(self, x):
        raise RuntimeError("the model broke on the worker")


def _broken() -> _Broken:
    return _Broken(*tiny_cnn(10))


def test_a_rank_that_raises_fails_the_run_with_its_rank_and_traceback(digits_small,
                                                                       local_ray):
    with pytest.raises(ModelGateError) as failed:
        run_finetune(_broken, digits_small, ray=local_ray, **RUN)
    message = str(failed.value)
    assert message.startswith(f"rank 0 of 1 failed in the Ray Train job at {OPTION_RAY}=auto")
    assert "RuntimeError: the model broke on the worker" in message
    assert "Traceback" in message and "in forward" in message


def test_pytest_runs_gates_on_a_session_ray_and_ends_it(pytester):
    """``--modelgate-ray=local`` as users run it: a Ray instance for the session, the gate
    trained there, and the instance shut down when the session ends."""
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\nmodelgate_device = cpu\n")
    # The tests in a folder of their own, as most projects keep them: pytest puts that
    # folder on sys.path, and the Ray workers must import the model's factory from it.
    tests = pytester.mkdir("tests")
    (tests / "conftest.py").write_text(textwrap.dedent('''
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            import ray
            with open("ray-after-session.txt", "w") as f:
                f.write(str(ray.is_initialized()))
    '''))
    (tests / "test_gate.py").write_text(textwrap.dedent('''
        import numpy as np
        import ray
        from torch import nn
        from pytest_modelgate import assert_accuracy_above
        from pytest_modelgate.data import stratified_split

        def tiny():
            return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))

        def test_gate(finetune):
            from sklearn.datasets import load_digits
            bunch = load_digits()
            keep = np.isin(bunch.target, [0, 1])
            images = np.round(bunch.images[keep] * (255 / 16)).astype(np.uint8)
            data = stratified_split(images, (bunch.target[keep] == 1).astype(int),
                                    class_names=["zero", "one"], seed=0)
            run = finetune(tiny, data, epochs=3, freeze="none", lr=1e-2, image_size=8,
                           mean=(0.5,), std=(0.5,))
            assert run.config["ranks"] == "ray"
            assert_accuracy_above(run, 0.8)
            with open("gcs.txt", "w") as f:
                f.write(ray.get_runtime_context().gcs_address)
    '''))
    result = pytester.runpytest(OPTION_ENABLE, f"{OPTION_RAY}=local")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "ray-after-session.txt").read_text() == "False"
    host, _, port = (pytester.path / "gcs.txt").read_text().rpartition(":")
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass  # the session's GCS is gone
