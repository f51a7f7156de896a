from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_modelgate.options import OPTION_DEVICE, OPTION_ENABLE, OPTION_TOLERANCE

GATE_FILE = """
import pytest
from pytest_modelgate import assert_accuracy_above, assert_no_leakage
from conftest import GRAY

def test_gate(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)
    assert_accuracy_above(run, 0.8)

@pytest.mark.modelgate
def test_marked_gate(digits):
    assert_no_leakage(digits.train, digits.test)

def test_plain():
    pass
"""


def test_gates_skip_without_the_flag(project):
    project.makepyfile(test_gates=GATE_FILE)
    result = project.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*model gate: run with --modelgate to fine-tune and check it*"])
    result.stdout.no_fnmatch_line("*= modelgate =*")
    assert not (project.path / "reports").exists()


def test_gates_run_with_the_flag(project):
    project.makepyfile(test_gates=GATE_FILE)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*= modelgate =*",
        "2 gate tests recorded 2 metrics",
        "no baseline at *modelgate-baseline.json: nothing compared; create one with "
        "--modelgate-update-baseline",
        "report: *reports/modelgate.html",
    ])
    assert result.stdout.str().count("no baseline at") == 1
    assert (project.path / "reports" / "modelgate.json").is_file()


def test_loading_the_plugin_imports_no_framework():
    code = ("import sys, pytest_modelgate.plugin, pytest_modelgate.fixtures; "
            "print(sorted(m for m in ('torch', 'torchvision', 'tensorflow', 'jinja2', 'timm', "
            "'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plain_pytest_run_imports_no_framework(project):
    project.makepyfile(test_gates=GATE_FILE)
    project.makepyfile(test_probe="""
        import sys
        def test_probe():
            assert 'torch' not in sys.modules and 'jinja2' not in sys.modules
            # numpy costs a plain pytest run about 0.1 s: the plugin loads without it.
            assert 'numpy' not in sys.modules
    """)
    # The project conftest imports torch itself, so probe from a bare directory instead.
    (project.path / "conftest.py").unlink()
    result = project.runpytest_subprocess("test_probe.py")
    result.assert_outcomes(passed=1)


def test_help_lists_the_options(project):
    result = project.runpytest("--help")
    result.stdout.fnmatch_lines([
        "model quality gates:",
        "*--modelgate*Run model gate tests (skipped otherwise)",
        "*--modelgate-update-baseline*",
        "*--modelgate-baseline=PATH*",
        "*--modelgate-tolerance=SPEC*",
        "*--modelgate-report-dir=DIR*",
        "*--modelgate-device=DEVICE*",
    ])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"{OPTION_TOLERANCE}=abc"],
         "*argument --modelgate-tolerance: tolerance: 'abc' is not a number like 0.02 or 10%"
         " (read from 'abc'); expected a finite number like 0.02 for every metric, or "
         "metric=amount pairs separated by commas like recall=0.01,speedup=50%"),
        ([f"{OPTION_TOLERANCE}=nan"], "*argument --modelgate-tolerance: tolerance: 'nan' is not "
                                      "a finite number*"),
        ([f"{OPTION_TOLERANCE}=0,05"], "*argument --modelgate-tolerance: tolerance '0,05' holds "
                                       "2 bare numbers*write a decimal point*"),
        ([f"{OPTION_TOLERANCE}=recal=0.1"], "*unknown metric 'recal' in tolerance*"),
        ([f"{OPTION_DEVICE}=tpu"], "*argument --modelgate-device: 'tpu' is not one of auto*"),
    ],
)
def test_bad_option_values(project, args, message):
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value(project):
    project.makeini("[pytest]\nmodelgate_tolerance = lots\n")
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option modelgate_tolerance = 'lots'*not a number*"])


def test_corrupt_baseline_is_a_usage_error(project):
    project.makepyfile(test_gates=GATE_FILE)
    (project.path / "modelgate-baseline.json").write_text("{broken")
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*modelgate-baseline.json is not readable JSON*"
                                 "--modelgate-update-baseline*"])
    assert (project.path / "modelgate-baseline.json").read_text() == "{broken"


def test_gpu_marker_skips_with_a_reason(project):
    project.makepyfile(test_gpu="""
        import pytest
        @pytest.mark.gpu
        def test_needs_gpu():
            pass
    """)
    torch = pytest.importorskip("torch")
    result = project.runpytest("-rs")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*needs a CUDA GPU; none is visible*"])


CACHED_FILE = """
from pytest_modelgate import assert_accuracy_above, assert_faster_than_scratch
from conftest import GRAY

def test_gate(finetune, digits, pretrained_tiny):
    run = finetune(pretrained_tiny, digits, epochs=4, freeze="backbone", lr=1e-2, **GRAY)
    assert_accuracy_above(run, 0.5)
    assert_faster_than_scratch(run, target_accuracy=0.5, min_speedup=0.01)
"""


def test_runs_are_cached_in_pytest_s_cache_by_default(project):
    """No option: the runs go to pytest's own cache folder (a plugin hook that ran before
    pytest set its cache up once left every default session uncached)."""
    project.makeini("[pytest]\nmodelgate_device = cpu\n")   # pytest's cache on
    project.makepyfile(test_cached=CACHED_FILE)
    project.runpytest(OPTION_ENABLE).stdout.fnmatch_lines(
        ["run cache: 0 run(s) loaded, 2 trained (*.pytest_cache*modelgate*)"])
    project.runpytest(OPTION_ENABLE).stdout.fnmatch_lines(
        ["run cache: 2 run(s) loaded, 0 trained (*.pytest_cache*modelgate*)"])


def test_unchanged_second_run_retrains_nothing(project):
    project.makepyfile(test_cached=CACHED_FILE)
    args = (OPTION_ENABLE, "--modelgate-cache-dir=runs")
    first = project.runpytest(*args)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["run cache: 0 run(s) loaded, 2 trained (*runs)"])
    second = project.runpytest(*args)
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["run cache: 2 run(s) loaded, 0 trained (*runs)"])
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "cached: trained" in html
    third = project.runpytest(*args, "--modelgate-no-cache")
    third.stdout.fnmatch_lines(["run cache: off"])
    fourth = project.runpytest(*args, "--modelgate-seed=1")
    fourth.stdout.fnmatch_lines(["run cache: 0 run(s) loaded, 2 trained (*runs)"])


def test_bad_seed_option(project):
    result = project.runpytest("--modelgate-seed=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --modelgate-seed: 'abc' is not an integer seed"])


@pytest.mark.parametrize("option, message", [
    ("--modelgate-workers=0", "*argument --modelgate-workers: workers must be at least 1, "
                              "got 0"),
    ("--modelgate-workers=two", "*argument --modelgate-workers: 'two' is not a number of "
                                "workers"),
    ("--modelgate-ray=head-node", "*argument --modelgate-ray: 'head-node' is not a Ray "
                                  "address: use auto, local, HOST:PORT*"),
])
def test_bad_scaling_options_name_the_fix(project, option, message):
    result = project.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_workers_ini_value_names_the_key(project):
    project.makeini("[pytest]\nmodelgate_workers = -2\n")
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option modelgate_workers = '-2': workers must be at "
                                 "least 1, got -2*"])


@pytest.mark.parametrize("keywords, message", [
    ("seed=-1", "@pytest.mark.modelgate(seed=-1): the seed must be non-negative, got -1"),
    ("seed=1.5", "@pytest.mark.modelgate(seed=1.5): 1.5 is not an integer seed"),
    ("device='gpu'", "@pytest.mark.modelgate(device='gpu'): 'gpu' is not one of auto, cpu, "
                     "cuda, mps or cuda:N"),
    ("full_race='yes'", "@pytest.mark.modelgate(full_race='yes'): full_race must be True or "
                        "False"),
    ("workers=0", "@pytest.mark.modelgate(workers=0): workers must be at least 1, got 0"),
    ("workers='2'", "@pytest.mark.modelgate(workers='2'): workers must be an int, got '2'"),
])
def test_a_bad_marker_value_is_a_usage_error_naming_the_test(project, keywords, message):
    """Checked at collection as the option's value would be, before anything trains (a
    marker's seed=-1 reached numpy as its own ValueError from inside the package)."""
    project.makepyfile(test_marked=f"""
        import pytest

        @pytest.mark.modelgate({keywords})
        def test_marked():
            pass
    """)
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"test_marked.py::test_marked: {message}" in result.stderr.str()


def test_a_usage_error_leaves_the_last_report_as_it_was(project):
    """A typo in a marker stops the session before any test runs: the report of the last
    session stays, instead of an empty one over it, and no summary says otherwise."""
    project.makepyfile(test_gates=GATE_FILE)
    assert project.runpytest(OPTION_ENABLE).ret == 0
    report = project.path / "reports" / "modelgate.json"
    before = report.read_bytes()
    project.makepyfile(test_typo="""
        import pytest

        @pytest.mark.modelgate(sed=1)
        def test_typo():
            pass
    """)
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert report.read_bytes() == before
    result.stdout.no_fnmatch_line("*gate test* recorded*")
