"""Baselines over several seeds (--modelgate-baseline-seeds) and --modelgate-inconclusive,
as users run them: update over three seeds, update again from the run cache, pass
unchanged, regress; replicas that fail, runs a fixture trained, Ctrl-C, pytest-xdist."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pytest_modelgate.options import (
    OPTION_BASELINE_SEEDS,
    OPTION_ENABLE,
    OPTION_INCONCLUSIVE,
    OPTION_UPDATE,
)

from .conftest import PROJECT_INI
from .test_verdicts_e2e import ARRAY_GATE, flipped, write_predictions

# MODELGATE_WORSE=1: a much worse recipe (one epoch at a tenth of the learning rate) that
# still passes its own floors.
GATE = """
import os
import pytest
from pytest_modelgate import assert_accuracy_above, assert_recall_above
from conftest import GRAY

WORSE = os.environ.get("MODELGATE_WORSE") == "1"

def test_gate(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=1 if WORSE else 3, freeze="none",
                   lr=1e-3 if WORSE else 1e-2, **GRAY)
    assert_accuracy_above(run, 0.0)
    assert_recall_above(run, 0.0, label="seven")

@pytest.mark.modelgate
def test_trains_nothing():
    assert_accuracy_above(([0, 1, 1, 0], [0, 1, 1, 0]), 0.5)
"""
GATE_NODE = "test_seeds.py::test_gate"
SEEDS_3 = (OPTION_UPDATE, f"{OPTION_BASELINE_SEEDS}=3", "--modelgate-cache-dir=runs")


def baseline(project, name="modelgate-baseline.json"):
    return json.loads((project.path / name).read_text())["tests"]


def report(project):
    return json.loads((project.path / "reports" / "modelgate.json").read_text())


def test_a_baseline_over_three_seeds_updates_from_the_cache_passes_and_regresses(
        project, monkeypatch):
    project.makepyfile(test_seeds=GATE)

    # 1. Record the baseline over three seeds: three trainings, one per seed.
    result = project.runpytest(*SEEDS_3, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        f"modelgate: {GATE_NODE}: seed replica 2 of 3 (each run's seed + 1)",
        f"modelgate: {GATE_NODE}: seed replica 3 of 3 (each run's seed + 2)",
    ])
    result.stdout.fnmatch_lines([
        f"  PASSED  {GATE_NODE} (baseline over 3 seeds)",
        "  PASSED  test_seeds.py::test_trains_nothing",
        "baseline written: *modelgate-baseline.json",
        "run cache: 0 run(s) loaded, 3 trained (*runs)",
    ])
    tests = baseline(project)
    entry = tests[GATE_NODE]
    assert entry["replicas"] == 3
    for name in ("accuracy", "recall[seven]"):
        m = entry["metrics"][name]
        assert len(m["seeds"]) == 3 and m["value"] == pytest.approx(np.mean(m["seeds"]))
        assert len(m["seed_samples"]) == 3 and m["seed_samples"][0] == m["samples"]
        assert set(m["seed_samples"]) <= set(entry["samples"])
    assert "replicas" not in tests["test_seeds.py::test_trains_nothing"]  # one seed
    assert "seeds" not in tests["test_seeds.py::test_trains_nothing"]["metrics"]["accuracy"]

    # 2. Unchanged, updated again: every seed's run comes from the cache.
    result = project.runpytest(*SEEDS_3)
    result.stdout.fnmatch_lines(["run cache: 3 run(s) loaded, 0 trained (*runs)"])
    assert baseline(project)[GATE_NODE]["metrics"] == entry["metrics"]

    # 3. Compared unchanged: passes, against the baseline over three seeds.
    result = project.runpytest(OPTION_ENABLE, "--modelgate-cache-dir=runs")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"  PASSED  {GATE_NODE} (baseline over 3 seeds)",
                                 "run cache: 1 run(s) loaded, 0 trained (*runs)"])
    assert report(project)["tests"][0]["baseline_seeds"] == 3

    # 4. A much worse recipe passes its floors and regresses against the seeds.
    monkeypatch.setenv("MODELGATE_WORSE", "1")
    result = project.runpytest(OPTION_ENABLE, "--modelgate-cache-dir=runs")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"  REGRESSED  {GATE_NODE} (baseline over 3 seeds): "
                                 "accuracy 0.*, baseline 0.* ± 0.* over 3 seeds (p=*)"])
    result.stdout.fnmatch_lines(["*prediction interval over 3 seeds*synthetic seeds*"])
    (test,) = [t for t in report(project)["tests"] if t["nodeid"] == GATE_NODE]
    assert test["verdict"] == "regressed"
    assert "(baseline over 3 seeds)" in (project.path / "reports" / "modelgate.html"
                                         ).read_text()


def _seeded_array_baseline(project):
    """An array gate's baseline, edited as an update over three seeds writes one."""
    project.makepyfile(test_arrays=ARRAY_GATE)
    y = np.repeat([0, 1], 500)
    write_predictions(project, y, y)
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    path = project.path / "modelgate-baseline.json"
    doc = json.loads(path.read_text())
    entry = doc["tests"]["test_arrays.py::test_gate"]
    accuracy = entry["metrics"]["accuracy"]
    accuracy.update(value=0.99, seeds=[0.98, 0.99, 1.0],
                    seed_samples=[accuracy["samples"]] * 3)
    entry["replicas"] = 3
    path.write_text(json.dumps(doc))
    return y


def test_a_regression_against_seeds_shows_the_band_in_the_message(project):
    y = _seeded_array_baseline(project)
    write_predictions(project, y, flipped(y, 300))
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r" +metric +baseline +current +allowed.*",
        r" +accuracy +0\.9900 ± 0\.0100 +0\.7000 .*regressed.*",
        r" +baseline: mean ± standard deviation over 3 seeds",
    ])
    result.stdout.fnmatch_lines([
        "  REGRESSED  test_arrays.py::test_gate (baseline over 3 seeds): accuracy 0.700, "
        "baseline 0.990 ± 0.010 over 3 seeds (p=*)"])


def test_inconclusive_fails_the_test_when_asked_and_keeps_its_verdict(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    y = np.repeat([0, 1], 500)
    write_predictions(project, y, y)
    project.runpytest(OPTION_UPDATE).assert_outcomes(passed=1)
    # 25 of 1,000 newly wrong: beyond the 0.02 tolerance, not shown to be: inconclusive.
    write_predictions(project, y, flipped(y, 25))
    result = project.runpytest(OPTION_ENABLE)
    result.assert_outcomes(passed=1)  # warn, the default

    result = project.runpytest(OPTION_ENABLE, f"{OPTION_INCONCLUSIVE}=fail",
                               "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*1 metric below tolerance against baseline *, but not significantly (inconclusive):",
        "This fails the test (--modelgate-inconclusive=fail): the test set is too small to "
        "show this drop exceeds the tolerance. Add test images, or let such drops warn: "
        "--modelgate-inconclusive=warn.",
    ])
    result.stdout.fnmatch_lines([
        "verdicts: 1 inconclusive (significance 0.05, Holm-corrected per test; inconclusive "
        "fails the build: --modelgate-inconclusive=fail)",
        "  INCONCLUSIVE  test_arrays.py::test_gate: accuracy 1.000 -> 0.975 (p=*)",
    ])
    result.stdout.no_fnmatch_line("*ModelGateWarning*inconclusive*")  # said once, as a failure
    result.stdout.no_fnmatch_line("*Traceback*")
    test = report(project)["tests"][0]
    assert (test["verdict"], test["outcome"]) == ("inconclusive", "failed")
    html = (project.path / "reports" / "modelgate.html").read_text()
    assert '<section id="verdict" class="red">' in html
    case = ET.parse(project.path / "junit.xml").getroot().find(".//testcase")
    assert case.find("failure") is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["modelgate.verdict"] == "inconclusive"

    # The same from the ini file; the command line wins over it.
    project.makeini(PROJECT_INI + "modelgate_inconclusive = fail\n")
    project.runpytest(OPTION_ENABLE).assert_outcomes(failed=1)
    project.runpytest(OPTION_ENABLE, f"{OPTION_INCONCLUSIVE}=warn").assert_outcomes(passed=1)


@pytest.mark.parametrize(("args", "message"), [
    ([OPTION_UPDATE, f"{OPTION_BASELINE_SEEDS}=0"],
     "*argument --modelgate-baseline-seeds: the baseline needs at least 1 seed, got 0"),
    ([OPTION_UPDATE, f"{OPTION_BASELINE_SEEDS}=-1"],
     "*argument --modelgate-baseline-seeds: the baseline needs at least 1 seed, got -1"),
    ([OPTION_UPDATE, f"{OPTION_BASELINE_SEEDS}=five"],
     "*argument --modelgate-baseline-seeds: 'five' is not a number of seeds, like 5"),
    ([OPTION_ENABLE, f"{OPTION_BASELINE_SEEDS}=5"],
     "*--modelgate-baseline-seeds=5 is used only when writing the baseline: add "
     "--modelgate-update-baseline to record the baseline over 5 seeds, or leave it out (a "
     "comparison uses the seeds the baseline holds)"),
    ([OPTION_ENABLE, f"{OPTION_INCONCLUSIVE}=error"],
     "*argument --modelgate-inconclusive: 'error' is not one of warn, fail*"),
    ([OPTION_UPDATE, "--modelgate-basline-seeds=3"],
     "*unrecognized arguments: --modelgate-basline-seeds=3*"),
])
def test_bad_seed_and_inconclusive_options_are_usage_errors(project, args, message):
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_the_ini_keys_are_checked_and_seeds_read_only_when_updating(project):
    project.makepyfile(test_arrays=ARRAY_GATE)
    write_predictions(project, [0, 1], [0, 1])
    project.makeini(PROJECT_INI + "modelgate_baseline_seeds = 0\n")
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option modelgate_baseline_seeds = '0': the baseline "
                                 "needs at least 1 seed, got 0*"])
    project.makeini(PROJECT_INI + "modelgate_inconclusive = maybe\n")
    result = project.runpytest(OPTION_ENABLE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option modelgate_inconclusive = 'maybe': 'maybe' is "
                                 "not one of warn, fail*"])
    # A project may keep the key set: a plain comparison run is no error.
    project.makeini(PROJECT_INI + "modelgate_baseline_seeds = 3\n")
    project.runpytest(OPTION_ENABLE).assert_outcomes(passed=1)


def test_help_lists_the_seed_and_inconclusive_options(project):
    result = project.runpytest("--help")
    result.stdout.fnmatch_lines([
        "*--modelgate-inconclusive=warn|fail*",
        "*--modelgate-baseline-seeds=K*",
    ])


REPLICA_CASES = """
import os, signal, time
import pytest
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

@pytest.fixture
def trained(finetune, digits, tiny):
    return finetune(tiny, digits, epochs=1, freeze="none", lr=1e-2, **GRAY)

def test_from_fixture(trained):
    assert_accuracy_above(trained, 0.0)

def test_flaky(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=1, freeze="none", lr=1e-2, **GRAY)
    assert_accuracy_above(run, 0.0)
    if os.environ.get("MODELGATE_INTERRUPT") and run.config["seed"] == 1:
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C in the second seed
        time.sleep(5)
    assert run.config["seed"] != 2, "accuracy = 0.810 < 0.850 required"
"""


def test_replicas_that_fail_or_do_not_take_the_seed_warn_and_ctrl_c_writes_nothing(
        project, monkeypatch):
    project.makepyfile(test_replicas=REPLICA_CASES)
    result = project.runpytest(*SEEDS_3)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*ModelGateWarning: test_replicas.py::test_from_fixture: recorded with one seed, not "
        "3: its run(s) * did not take the replica seeds, because they were trained before "
        "the test function ran (in a fixture)*Call finetune in the test body*",
    ])
    result.stdout.fnmatch_lines([
        "*ModelGateWarning: test_replicas.py::test_flaky: seed replica +2 (each run's seed "
        "+ 2) failed: accuracy = 0.810 < 0.850 required; the baseline keeps what it "
        "recorded before the failure. A gate that fails under another seed of the same "
        "recipe sits inside seed noise*",
    ])
    result.stdout.fnmatch_lines([
        "  PASSED  test_replicas.py::test_flaky (baseline over 3 seeds)",
        "  PASSED  test_replicas.py::test_from_fixture",
        "baseline written: *",
        "run cache: 0 run(s) loaded, 3 trained (*runs)",
    ])
    tests = baseline(project)
    flaky = tests["test_replicas.py::test_flaky"]
    assert flaky["replicas"] == 3
    assert len(flaky["metrics"]["accuracy"]["seeds"]) == 3  # recorded before it failed
    assert "replicas" not in tests["test_replicas.py::test_from_fixture"]

    path = project.path / "modelgate-baseline.json"
    before = path.read_bytes()
    monkeypatch.setenv("MODELGATE_INTERRUPT", "1")
    result = project.runpytest(*SEEDS_3)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert path.read_bytes() == before
    result.stdout.fnmatch_lines(["baseline not written, *modelgate-baseline.json left as it "
                                 "was: the session was interrupted*"])


XDIST = """
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_one(finetune, digits, tiny):
    assert_accuracy_above(finetune(tiny, digits, epochs=1, freeze="none", lr=1e-2, **GRAY), 0)

def test_two(finetune, digits, tiny):
    assert_accuracy_above(finetune(tiny, digits, epochs=2, freeze="none", lr=1e-2, **GRAY), 0)
"""


def test_xdist_workers_write_the_same_baseline_over_seeds(project):
    pytest.importorskip("xdist")
    project.makepyfile(test_xdist=XDIST)
    args = (OPTION_UPDATE, f"{OPTION_BASELINE_SEEDS}=3", "--modelgate-cache-dir=runs")
    project.runpytest(*args, "--modelgate-baseline=one.json").assert_outcomes(passed=2)
    result = project.runpytest(*args, "--modelgate-baseline=two.json", "-n", "2")
    result.assert_outcomes(passed=2)
    # The replicas ran on the workers: each seed's run, loaded from the cache.
    result.stdout.fnmatch_lines(["run cache: 6 run(s) loaded, 0 trained (*runs)"])
    one, two = baseline(project, "one.json"), baseline(project, "two.json")
    assert set(one) == set(two) == {"test_xdist.py::test_one", "test_xdist.py::test_two"}
    for nodeid in one:
        assert two[nodeid]["replicas"] == one[nodeid]["replicas"] == 3
        assert two[nodeid]["metrics"] == one[nodeid]["metrics"]
        assert two[nodeid]["samples"] == one[nodeid]["samples"]
