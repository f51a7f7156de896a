from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn

from pytest_modelgate.errors import HeadNotFoundError
from pytest_modelgate.frameworks.torch.heads import find_head, replace_head, verify_width


class CifarStyleNet(nn.Module):
    """Like the CIFAR ResNets: the classifier is called ``linear``, not ``fc``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(8, 10)

    def forward(self, x):
        return self.linear(self.pool(torch.relu(self.conv1(x))).flatten(1))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU())
        self.cls = nn.Linear(6, 3)
        self.box = nn.Linear(6, 4)

    def forward(self, x):
        return self.cls(self.body(x))


@pytest.mark.parametrize(
    ("factory", "path", "found_by"),
    [
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)), "2", "scan"),
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 2))),
         "1.1", "scan (Linear ending an nn.Sequential)"),
        (lambda: __import__("torchvision").models.resnet18(), "fc", "known torchvision"),
        (lambda: __import__("torchvision").models.mobilenet_v3_small(), "classifier.3",
         "known torchvision"),
        (lambda: __import__("torchvision").models.densenet121(), "classifier",
         "known torchvision"),
    ],
)
def test_head_is_resolved_by_path(factory, path, found_by):
    info = find_head(factory())
    assert info.path == path
    assert info.found_by.startswith(found_by)


@pytest.mark.parametrize("factory", [CifarStyleNet,
                                     lambda: __import__("torchvision").models.resnet18()])
def test_replace_then_verify_width(factory):
    model = factory()
    sample = torch.zeros(2, 3, 32, 32)
    info = replace_head(model, 5, sample=sample)
    verify_width(model, sample, 5, info)
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_traced_forward_pass_finds_a_head_named_anything():
    # Registration order would say ``box``; the forward pass shows ``cls`` makes the output.
    info = find_head(TwoHeads(), sample=torch.zeros(2, 12))
    assert (info.path, info.found_by) == ("cls", "traced forward pass")
    info = find_head(CifarStyleNet(), sample=torch.zeros(2, 3, 8, 8))
    assert info.path == "linear"


def test_output_from_no_single_linear_is_refused():
    class Summed(TwoHeads):
        def forward(self, x):
            h = self.body(x)
            return self.cls(h) + self.box(h)[:, :3]

    with pytest.raises(HeadNotFoundError, match="no Linear's output is the model output"):
        find_head(Summed(), sample=torch.zeros(2, 12))


def test_ambiguous_model_lists_candidates_and_the_fix():
    with pytest.raises(HeadNotFoundError) as info:
        find_head(TwoHeads())
    message = str(info.value)
    assert "could not find the classifier head of TwoHeads" in message
    assert "known heads fc, classifier, heads.head, head" in message
    assert "Fix: pass head=" in message and "head='box'" in message
    assert find_head(TwoHeads(), head="cls").found_by == "head= argument"


def test_a_head_named_by_the_hook_says_so():
    info = find_head(TwoHeads(), hook=lambda model: "cls")
    assert (info.path, info.found_by) == ("cls", "pytest_modelgate_find_head hook")
    # head= still wins over the hook.
    assert find_head(TwoHeads(), head="box", hook=lambda model: "cls").path == "box"
    with pytest.raises(HeadNotFoundError) as info_:
        find_head(TwoHeads(), hook=lambda model: None)
    assert ("Tried: head= argument (not given); pytest_modelgate_find_head hook (returned "
            "None); get_classifier()") in str(info_.value)
    with pytest.raises(HeadNotFoundError, match=r"pytest_modelgate_find_head's answer 'nope' "
                                                r"names no submodule of TwoHeads"):
        find_head(TwoHeads(), hook=lambda model: "nope")


def test_model_without_linear_head():
    pooled = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(HeadNotFoundError, match=r"no single final Linear; Linear layers: none"):
        find_head(pooled)


def test_bad_explicit_head():
    with pytest.raises(HeadNotFoundError, match=r"head='fc' names no submodule of TwoHeads"):
        find_head(TwoHeads(), head="fc")
    with pytest.raises(HeadNotFoundError, match="is a Sequential, not an nn.Linear"):
        find_head(TwoHeads(), head="body")


def test_wrong_output_width_is_caught():
    class Reshaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)).view(-1, 2, 5)  # output width set after the head

    model = Reshaped()
    info = replace_head(model, 10)
    with pytest.raises(HeadNotFoundError, match=r"outputs shape \(2, 2, 5\), not \(batch, 10\)"):
        verify_width(model, torch.zeros(2, 4), 10, info)
