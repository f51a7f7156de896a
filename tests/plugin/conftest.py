"""A small gate project for pytester runs: real digit scans and tiny CNNs.

``pretrained_tiny`` is pretrained for real by the project itself, on digits the gates do not
use (2-6, 8, 9), so the pretrained-versus-scratch race has real transfer to measure.
"""

from __future__ import annotations

import pytest

# pyproject's addopts run pytester in subprocesses (--runpytest=subprocess): in-process runs
# unload modules first imported inside them, and torch cannot be loaded twice.
pytest.importorskip("torch")

PROJECT_CONFTEST = '''
import numpy as np
import pytest
import torch
from torch import nn

from pytest_modelgate.data import stratified_split

GRAY = dict(image_size=8, mean=(0.5,), std=(0.5,))
# Races run at 32 px: a scratch epoch then takes tenths of a second, not milliseconds, so a
# busy machine's scheduling stall cannot decide the verdict (at 8 px, two CPU-bound
# processes beside the run turned a 3.7x race into 0.34x).
RACE = dict(GRAY, image_size=32)


def _digits(keep_classes):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = np.isin(bunch.target, keep_classes)
    images = np.round(bunch.images[keep] * (255 / 16)).astype(np.uint8)
    remap = {c: i for i, c in enumerate(keep_classes)}
    labels = np.array([remap[t] for t in bunch.target[keep]])
    return images, labels


@pytest.fixture(scope="session")
def digits():
    images, labels = _digits([0, 1, 7])
    return stratified_split(images, labels, class_names=["zero", "one", "seven"], seed=0)


@pytest.fixture(scope="session")
def ones_and_sevens():
    """A binary task: the two digits most alike in this set."""
    images, labels = _digits([1, 7])
    return stratified_split(images, labels, class_names=["one", "seven"], seed=0)


@pytest.fixture(scope="session")
def few_digits(digits):
    """Ten train images per class: a model memorises them."""
    from pytest_modelgate.data import Splits, ImageSet

    keep = np.concatenate([np.flatnonzero(digits.train.labels == c)[:10] for c in range(3)])
    train = ImageSet(digits.train.images[keep], digits.train.labels[keep],
                     digits.class_names, name="train")
    return Splits(train=train, test=digits.test)


def tiny_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10),
    )


class LinearHeadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.linear = nn.Linear(8, 10)

    def forward(self, x):
        return self.linear(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="session")
def tiny():
    return tiny_cnn


@pytest.fixture(scope="session")
def linear_head_net():
    return LinearHeadNet


@pytest.fixture(scope="session")
def pretrained_tiny(tmp_path_factory):
    """tiny_cnn trained on the other seven digits, saved and loaded like a checkpoint."""
    images, labels = _digits([2, 3, 4, 5, 6, 8, 9])
    torch.manual_seed(0)
    model = tiny_cnn()
    x = (torch.from_numpy(images).float().div(255).unsqueeze(1) - 0.5) / 0.5
    y = torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(model.state_dict(), path)

    def factory():
        net = tiny_cnn()
        net.load_state_dict(torch.load(path, weights_only=True))
        return net

    return factory
'''


# The project's runs are pinned to the CPU: its tests check exact figures, cache hits and
# report contents of CPU runs, and "auto" is cuda on a GPU machine.
PROJECT_INI = "[pytest]\naddopts = -p no:cacheprovider\nmodelgate_device = cpu\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with the gate project's conftest and a fixed ini."""
    pytester.makeini(PROJECT_INI)
    pytester.makeconftest(PROJECT_CONFTEST)
    return pytester
