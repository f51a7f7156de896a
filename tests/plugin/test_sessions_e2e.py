"""Sessions that do not run cleanly: Ctrl-C, failures during an update, a damaged baseline,
runs that fail before training, pytest-xdist workers sharing a run, and errors in a fixture.
Whatever happens, the user's baseline is never left half-written."""

from __future__ import annotations

import json

import pytest

from pytest_modelgate.options import OPTION_ENABLE, OPTION_UPDATE

GATE = """
import os, signal, time
import pytest
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_a(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs={epochs}, freeze="none", lr=1e-2, **GRAY)
    assert_accuracy_above(run, {threshold})

@pytest.mark.modelgate
def test_b():
    if {interrupt}:
        os.kill(os.getpid(), signal.SIGINT)   # what Ctrl-C sends
        time.sleep(5)

def test_c(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=1, freeze="none", lr=1e-2, **GRAY)
    assert_accuracy_above(run, 0.0)
"""


def _gates(epochs=3, threshold=0.0, interrupt=False):
    return GATE.format(epochs=epochs, threshold=threshold, interrupt=interrupt)


def test_ctrl_c_during_an_update_leaves_the_baseline_untouched(project):
    project.makepyfile(test_gates=_gates())
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=3)
    baseline = project.path / "modelgate-baseline.json"
    before = baseline.read_bytes()

    project.makepyfile(test_gates=_gates(epochs=1, interrupt=True))
    result = project.runpytest(OPTION_UPDATE)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert baseline.read_bytes() == before
    result.stdout.fnmatch_lines([
        "*= modelgate =*",
        "1 gate test recorded 1 metric",
        "session interrupted: 2 gate test(s) did not run or finish: test_gates.py::test_b, "
        "test_gates.py::test_c",
        "baseline not written, *modelgate-baseline.json left as it was: the session was "
        "interrupted; rerun --modelgate-update-baseline and let it finish with every test "
        "passing",
    ])
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    assert report["session"]["interrupted"] is True
    assert report["session"]["not_run"] == ["test_gates.py::test_b", "test_gates.py::test_c"]
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert "The session was interrupted: this report is incomplete." in html
    assert "<li>test_gates.py::test_c</li>" in html
    assert "was not written: the session was interrupted" in html

    # Interrupted while only comparing: the report says so too.
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["session interrupted: 2 gate test(s) did not run or finish*"])


def test_a_failing_session_does_not_update_the_baseline(project):
    project.makepyfile(test_gates=_gates())
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=3)
    baseline = project.path / "modelgate-baseline.json"
    before = baseline.read_bytes()
    project.makepyfile(test_gates=_gates(epochs=1, threshold=0.999))
    result = project.runpytest(OPTION_UPDATE)
    result.assert_outcomes(passed=2, failed=1)
    assert baseline.read_bytes() == before
    result.stdout.fnmatch_lines([
        "baseline not written, *modelgate-baseline.json left as it was: 1 test(s) failed "
        "(test_gates.py::test_a); rerun --modelgate-update-baseline and let it finish with "
        "every test passing",
    ])
    result.stdout.no_fnmatch_line("session interrupted*")


def test_update_replaces_an_unreadable_baseline_after_saying_so(project):
    project.makepyfile(test_gates=_gates())
    baseline = project.path / "modelgate-baseline.json"
    baseline.write_text('{"schema": "pytest-modelgate-baseline", "version": 1, "tests": {')
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*modelgate-baseline.json is not readable JSON (*); restore it from version control "
        "(git checkout -- */modelgate-baseline.json), or replace it with this run's metrics: "
        "--modelgate-update-baseline*",
    ])
    # The advice works.
    result = project.runpytest(OPTION_UPDATE)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "modelgate: baseline *modelgate-baseline.json is not readable JSON (*); "
        "--modelgate-update-baseline replaces it if this session runs to its end with every "
        "test passing",
        "baseline written: *modelgate-baseline.json (replaced: baseline * is not readable JSON*",
    ])
    assert set(json.loads(baseline.read_text())["tests"]) == {"test_gates.py::test_a",
                                                             "test_gates.py::test_c"}
    project.runpytest(OPTION_ENABLE).assert_outcomes(passed=3)


def test_update_never_overwrites_a_file_that_is_not_a_baseline(project):
    project.makepyfile(test_gates=_gates())
    foreign = project.path / "package.json"
    foreign.write_text('{"name": "my-app"}')
    result = project.runpytest(OPTION_UPDATE, "--modelgate-baseline=package.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*package.json is not a pytest-modelgate baseline (*), so it "
                                 "is never overwritten; point --modelgate-baseline*"])
    assert foreign.read_text() == '{"name": "my-app"}'


CACHE_COUNTS = """
import pytest
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_broken(finetune, digits, tiny):
    finetune(tiny, digits, epochs=1, head="nope", **GRAY)

def test_good(finetune, digits, tiny):
    assert_accuracy_above(finetune(tiny, digits, epochs=1, **GRAY), 0.0)
"""


def test_the_cache_line_counts_only_runs_that_were_trained(project):
    project.makepyfile(test_counts=CACHE_COUNTS)
    args = (OPTION_ENABLE, "--modelgate-cache-dir=runs")
    result = project.runpytest(*args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["run cache: 0 run(s) loaded, 1 trained (*runs)"])
    result = project.runpytest(*args)
    result.stdout.fnmatch_lines(["run cache: 1 run(s) loaded, 0 trained (*runs)"])


SHARED_RUN = """
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def _run(finetune, digits, tiny):
    return finetune(tiny, digits, epochs=4, freeze="none", lr=1e-2, **GRAY)

def test_one(finetune, digits, tiny):
    assert_accuracy_above(_run(finetune, digits, tiny), 0.5)

def test_two(finetune, digits, tiny):
    assert_accuracy_above(_run(finetune, digits, tiny), 0.5)
"""


def test_xdist_workers_train_a_shared_run_once_and_report_their_counts(project):
    pytest.importorskip("xdist")
    project.makepyfile(test_shared=SHARED_RUN)
    args = (OPTION_ENABLE, "--modelgate-cache-dir=runs", "-n", "2")
    result = project.runpytest(*args)
    result.assert_outcomes(passed=2)
    # Each worker got one test; the second waited for the first worker's entry.
    result.stdout.fnmatch_lines(["run cache: 1 run(s) loaded, 1 trained (*runs)"])
    result = project.runpytest(*args)
    result.stdout.fnmatch_lines(["run cache: 2 run(s) loaded, 0 trained (*runs)"])


USER_ERRORS = """
import numpy as np
import pytest
from pytest_modelgate.data import from_folder
from conftest import GRAY

@pytest.fixture
def photos(tmp_path):
    (tmp_path / "train" / "ants").mkdir(parents=True)
    return from_folder(tmp_path)

def test_fixture_error(photos):
    pass

def test_call_error(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=0, **GRAY)
"""


def test_user_errors_show_the_users_line_not_the_package(project):
    project.makepyfile(test_errors=USER_ERRORS)
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1, errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*return from_folder(tmp_path)",
        "E *ModelGateError: class folder */train/ants holds no images*",
        "*run = finetune(tiny, digits, epochs=0, **GRAY)",
        "E *ModelGateError: epochs must be a positive integer, got 0",
    ])
    assert "pytest_modelgate/data/" not in out and "pytest_modelgate/train" not in out
    assert "pytest_modelgate/fixtures.py" not in out
    assert "images = array(" not in out and "data = Splits(" not in out
    # --full-trace still shows every frame.
    full = project.runpytest(OPTION_ENABLE, "--full-trace")
    assert "pytest_modelgate/data/" in full.stdout.str()
