"""The gate suite under ``torchrun``: every rank runs the session, each fine-tune is one
data-parallel job over the world, rank 0 alone writes the reports, and the world ends with
one exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pytest_modelgate.options import OPTION_ENABLE

GATES = """
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_learns(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=2, freeze="none", lr=1e-2, batch_size=32, **GRAY)
    assert (run.config["workers"], run.config["ranks"]) == (2, "torchrun")
    assert_accuracy_above(run, 0.5)

def test_asks_too_much(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=2, freeze="none", lr=1e-2, batch_size=32, **GRAY)
    assert_accuracy_above(run, 0.9999)
"""


def _torchrun(project, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "-m", "pytest",
         OPTION_ENABLE, "--junitxml=junit.xml", "--modelgate-cache-dir=runs", *args],
        cwd=project.path, capture_output=True, text=True, timeout=600, env=env)
    return result.returncode, result.stdout + result.stderr


def test_torchrun_runs_the_gates_over_its_world_with_one_report_and_one_status(project):
    project.makepyfile(test_gates=GATES)
    for session, cache_line in (("trained", "run cache: 0 run(s) loaded, 1 trained*"),
                                ("cached", "run cache: 1 run(s) loaded, 0 trained*")):
        status, out = _torchrun(project)
        assert status == 1, out
        # Both ranks ran the same session and agree: the same outcome on each.
        finals = [line for line in out.splitlines()
                  if line.startswith("=") and "1 failed, 1 passed" in line]
        assert len(finals) == 2, out
        assert "AttributeError" not in out and "RuntimeError" not in out, out
        assert pytest.LineMatcher(out.splitlines()).fnmatch_lines([cache_line]) is None
        report = json.loads((project.path / "reports" / "modelgate.json").read_text())
        tests = {t["nodeid"].rpartition("::")[2]: t for t in report["tests"]}
        assert tests["test_learns"]["outcome"] == "passed"
        assert tests["test_asks_too_much"]["outcome"] == "failed"
        runs = [run for t in tests.values() for run in t["runs"]]
        assert {(r["config"]["workers"], r["config"]["backend"], r["config"]["ranks"])
                for r in runs} == {(2, "gloo", "torchrun")}, session
        assert {r["world"] for r in runs} == {"2 ranks (gloo, torchrun)"}
        assert (project.path / "junit.xml").is_file()


def test_xdist_under_torchrun_is_refused_with_the_reason(project, monkeypatch):
    pytest.importorskip("xdist")
    project.makepyfile(test_gates=GATES)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    result = project.runpytest(OPTION_ENABLE, "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*-n under torchrun: every torchrun rank runs the whole "
                                 "session*"])


def test_the_option_sets_workers_and_a_marker_overrides_it(project):
    project.makepyfile(test_gates="""
        import pytest
        from conftest import GRAY

        @pytest.mark.modelgate(workers=1)
        def test_marked(finetune, digits, tiny):
            run = finetune(tiny, digits, epochs=1, freeze="none", batch_size=30, **GRAY)
            assert "ranks" not in run.config

        def test_by_option(finetune, digits, tiny):
            run = finetune(tiny, digits, epochs=1, freeze="none", batch_size=32, **GRAY)
            assert (run.config["workers"], run.config["ranks"]) == (2, "spawn")
    """)
    project.runpytest(OPTION_ENABLE, "--modelgate-workers=2").assert_outcomes(passed=2)
