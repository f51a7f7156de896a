"""A gate suite split over "runners" (--modelgate-shard, pytest-split, -k), merged by
``python -m pytest_modelgate merge`` into the verdict, report, JUnit file and baseline one
process running every test gives."""

from __future__ import annotations

import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET

import pytest

from pytest_modelgate.options import OPTION_ENABLE, OPTION_SHARD, OPTION_UPDATE

SUITE_A = """
from pytest_modelgate import assert_accuracy_above, assert_recall_above
from conftest import GRAY

def test_one(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)
    assert_accuracy_above(run, 0.5)

def test_same_run(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=3, freeze="none", lr=1e-2, **GRAY)
    assert_recall_above(run, 0.3, label="seven")

def test_plain():
    assert sum([1, 1]) == 2
"""
SUITE_B = """
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_other(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs={epochs}, freeze="none", lr={lr}, **GRAY)
    assert_accuracy_above(run, 0.0)

def test_fast(finetune, digits, linear_head_net):
    run = finetune(linear_head_net, digits, epochs=1, freeze="none", **GRAY)
    assert_accuracy_above(run, 0.0)
"""
GOOD_B = SUITE_B.format(epochs=3, lr=1e-2)
WORSE_B = SUITE_B.format(epochs=1, lr=1e-3)
CACHE = "--modelgate-cache-dir=cache"


def _merge(project, *args):
    return project.run(sys.executable, "-m", "pytest_modelgate", "merge", *map(str, args))


def _shards(project, *args, n=3, prefix="s"):
    for k in range(1, n + 1):
        result = project.runpytest(OPTION_ENABLE, f"{OPTION_SHARD}={k}/{n}", CACHE,
                                   f"--modelgate-report-dir={prefix}{k}", *args)
        assert result.ret in (0, 1), result.stdout.str()
    return [project.path / f"{prefix}{k}" for k in range(1, n + 1)]


TIMED = {"generated", "duration"}


def _untimed(value):
    """The report without its timings: when it was generated and how long each test took."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMED}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _report(folder):
    doc = json.loads((folder / "modelgate.json").read_text())
    shard = doc.pop("shard")
    for key in ("identity", "suite", "partition", "merged_from"):
        shard.pop(key)
    return _untimed(doc), _untimed(shard)


def _html(folder):
    text = (folder / "modelgate.html").read_text()
    text = re.sub(r"generated [^;.<]*", "generated", text)
    return re.sub(r"Test took [\d.]+ s", "Test took", text)


def test_three_shards_merge_to_what_one_process_reports(project, monkeypatch):
    project.makepyfile(test_a=SUITE_A, test_b=GOOD_B)
    assert project.runpytest(OPTION_UPDATE, CACHE).ret == 0
    project.makepyfile(test_b=WORSE_B)
    one = ("--modelgate-significance=off", "--modelgate-report-dir=one",
           "--junitxml=one.xml")
    project.runpytest(OPTION_ENABLE, CACHE, *one)  # trains the worse run once
    result = project.runpytest(OPTION_ENABLE, CACHE, *one)
    result.assert_outcomes(passed=4, failed=1)

    folders = _shards(project, "--modelgate-significance=off")
    merged = _merge(project, *folders, "--out", "merged")
    assert merged.ret == result.ret == 1
    merged.stdout.fnmatch_lines([
        "modelgate: merged 3 shard(s): *s1, *s2, *s3",
        "verdicts: 1 regressed, 3 passed (significance off: every drop beyond tolerance "
        "regresses)",
        "  REGRESSED  test_b.py::test_other: accuracy 0.* -> 0.*",
        "compared with baseline *modelgate-baseline.json",
        "run cache: 3 run(s) loaded, 0 trained (*cache)",
        "junit: *merged*junit.xml",
        "1 failed, 4 passed",
    ])
    # The merged report is the one-process report, timings apart.
    assert _report(project.path / "merged") == _report(project.path / "one")
    assert _html(project.path / "merged") == _html(project.path / "one")
    # One JUnit file: every test, the regressed one failing with its verdict and metrics.
    cases = {c.get("name"): c for c in ET.parse(project.path / "merged" / "junit.xml")
             .getroot().iter("testcase")}
    assert sorted(cases) == ["test_fast", "test_one", "test_other", "test_plain",
                             "test_same_run"]
    failure = cases["test_other"].find("failure")
    assert failure is not None and failure.get("message").startswith("regressed: accuracy")
    props = {p.get("name"): p.get("value") for p in cases["test_other"].iter("property")}
    assert props["modelgate.verdict"] == "regressed"
    assert cases["test_one"].find("failure") is None
    # The merge recorded each test's seconds and runs: the next split keeps the two tests
    # of one run together.
    durations = json.loads((project.path / "cache" / "durations.json").read_text())["tests"]
    assert durations["test_a.py::test_one"]["runs"] == durations["test_a.py::test_same_run"][
        "runs"]
    _shards(project, "--modelgate-significance=off", prefix="t")
    selected = [json.loads((project.path / f"t{k}" / "modelgate.json").read_text())["shard"]
                ["selected"] for k in (1, 2, 3)]
    holder = [s for s in selected if "test_a.py::test_one" in s]
    assert len(holder) == 1 and "test_a.py::test_same_run" in holder[0]


def test_merged_update_writes_the_baseline_one_process_writes_byte_for_byte(
        project, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764892800")
    project.makepyfile(test_a=SUITE_A, test_b=GOOD_B)
    baseline = project.path / "modelgate-baseline.json"
    assert project.runpytest(OPTION_UPDATE, CACHE).ret == 0
    project.makepyfile(test_b=WORSE_B)  # the change the new baseline records
    before = baseline.read_bytes()
    assert project.runpytest(OPTION_UPDATE, CACHE).ret == 0
    one_process = baseline.read_bytes()

    baseline.write_bytes(before)  # each runner checks out the committed baseline
    folders = _shards(project, OPTION_UPDATE, n=3, prefix="u")
    baseline.write_bytes(before)
    # Against shards that only compared: named, and the baseline is left alone.
    compared = _shards(project, n=3, prefix="c")
    refused = _merge(project, *compared, "--out", "m0", "--update-baseline", baseline)
    assert refused.ret == 2
    refused.stdout.fnmatch_lines(["error: *c1 ran without --modelgate-update-baseline*"])
    assert baseline.read_bytes() == before

    merged = _merge(project, *folders, "--out", "m1", "--update-baseline", baseline)
    assert merged.ret == 0, merged.stdout.str()
    merged.stdout.fnmatch_lines(["baseline written: *modelgate-baseline.json"])
    assert baseline.read_bytes() == one_process


def test_a_real_pytest_split_shard_keeps_the_entries_of_the_tests_it_did_not_run(project):
    pytest.importorskip("pytest_split")
    project.makepyfile(test_a=SUITE_A, test_b=GOOD_B)
    assert project.runpytest(OPTION_UPDATE, CACHE).ret == 0
    baseline = project.path / "modelgate-baseline.json"
    everyone = set(json.loads(baseline.read_text())["tests"])
    assert len(everyone) == 4

    groups = []
    for group in (1, 2):
        result = project.runpytest(OPTION_UPDATE, CACHE, "--splits", "2", "--group",
                                   str(group), f"--modelgate-report-dir=g{group}")
        assert result.ret == 0
        assert "did not run" not in result.stdout.str()  # its deselected tests are not owed
        doc = json.loads((project.path / f"g{group}" / "modelgate.json").read_text())
        assert doc["shard"]["identity"] == {"index": group, "count": 2, "by": "pytest-split"}
        groups.append(set(doc["shard"]["selected"]))
        assert set(json.loads(baseline.read_text())["tests"]) == everyone
    assert not groups[0] & groups[1] and groups[0] and groups[1]
    merged = _merge(project, "g1", "g2", "--out", "merged")
    assert merged.ret == 0
    merged.stdout.fnmatch_lines(["modelgate: merged 2 shard(s): g1, g2", "4 gate tests *"])
    alone = _merge(project, "g2", "--out", "alone")
    assert alone.ret == 2
    alone.stdout.fnmatch_lines(["error: shard(s) 1/2 missing: *"])


INTERRUPTS = """
def test_stops_the_runner():
    raise KeyboardInterrupt
"""


def test_missing_interrupted_or_unreadable_shards_are_errors_that_name_them(project):
    project.makepyfile(test_a=SUITE_A, test_stop=INTERRUPTS)
    assert project.runpytest(OPTION_ENABLE, CACHE, "-k", "test_a",
                             "--modelgate-report-dir=ka").ret == 0
    stopped = project.runpytest(OPTION_ENABLE, CACHE, "-k", "test_stop or test_plain",
                                "--modelgate-report-dir=kb")
    assert stopped.ret == pytest.ExitCode.INTERRUPTED

    result = _merge(project, "ka", "kb", "--out", "m")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["error: kb was interrupted*",
                                 "the merged verdict is incomplete: exit status 2, and no "
                                 "baseline is written"])
    html = (project.path / "m" / "modelgate.html").read_text()
    assert "not one whole run" in html and "kb was interrupted" in html

    result = _merge(project, "ka", "--out", "m", "--expect", "2")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["error: 1 shard(s) given, 2 expected (--expect)"])

    (project.path / "empty").mkdir()
    (project.path / "broken").mkdir()
    (project.path / "broken" / "modelgate.json").write_text('{"tests": [')
    shutil.copytree(project.path / "ka", project.path / "old")
    doc = json.loads((project.path / "old" / "modelgate.json").read_text())
    del doc["shard"]
    (project.path / "old" / "modelgate.json").write_text(json.dumps(doc))
    result = _merge(project, "ka", "gone", "empty", "broken", "old", "m", "--out", "m2")
    assert result.ret == 2
    result.stdout.fnmatch_lines([
        "error: gone: no such file or folder*",
        "error: empty: no modelgate.json in it: that shard wrote no report*",
        "error: broken: modelgate.json is unreadable*",
        "error: old: modelgate.json has no shard section of format 1*",
        "error: m: modelgate.json is a merged report; give the shards' own",
    ])
    result = _merge(project, "ka", "--out", "m3", "--expect", "0")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--expect 0: the number of shards is at least 1"])
    # An incomplete merge records no durations: they would unbalance the next split.
    assert not (project.path / "cache" / "durations.json").exists()
    # Nothing the user has is overwritten: not a shard's report, not a folder.
    result = _merge(project, "ka", "--out", "ka")
    assert result.ret == 4
    result.stdout.fnmatch_lines(["error: --out *ka would overwrite a shard's report*"])
    result = _merge(project, "ka", "--out", "m4", "--update-baseline", "empty")
    assert result.ret == 4
    result.stdout.fnmatch_lines(["error: --update-baseline empty is a folder: give the "
                                 "baseline file's path"])
    (project.path / "notes.json").write_text('{"my": "notes"}')
    result = _merge(project, "ka", "--out", "m5", "--update-baseline", "notes.json")
    assert result.ret == 4
    result.stdout.fnmatch_lines(["error: --update-baseline notes.json: *"])
    assert (project.path / "notes.json").read_text() == '{"my": "notes"}'


BROKEN = "import this_module_does_not_exist\n"


def test_a_module_a_shard_could_not_collect_fails_the_merge(project):
    project.makepyfile(test_a=SUITE_A, test_broken=BROKEN)
    result = project.runpytest(OPTION_ENABLE, CACHE, "--continue-on-collection-errors",
                               "--modelgate-report-dir=b1")
    assert result.ret == 1
    merged = _merge(project, "b1", "--out", "m")
    assert merged.ret == 2
    merged.stdout.fnmatch_lines(["error: *b1 could not collect test_broken.py: its tests "
                                 "there never ran"])
    cases = [c.get("name") for c in ET.parse(project.path / "m" / "junit.xml").getroot()
             .iter("testcase")]
    assert "test_broken.py" in cases and "shards" in cases
    stopped = project.runpytest(OPTION_ENABLE, CACHE, "--modelgate-report-dir=b2")
    assert stopped.ret == pytest.ExitCode.INTERRUPTED  # pytest stops on collection errors
    merged = _merge(project, "b2", "--out", "m2")
    assert merged.ret == 2
    merged.stdout.fnmatch_lines(["error: *b2 could not collect test_broken.py*"])


def test_shard_options_checked_and_an_empty_shard_is_green(project):
    project.makepyfile(test_a=SUITE_A)
    result = project.runpytest(OPTION_ENABLE, f"{OPTION_SHARD}=4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--modelgate-shard: '4/3': the shard must be 1 to 3 of 3*"])
    if pytest.importorskip("pytest_split"):
        result = project.runpytest(OPTION_ENABLE, f"{OPTION_SHARD}=1/2", "--splits", "2",
                                   "--group", "1")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--modelgate-shard and pytest-split's --splits both "
                                     "split the tests: use one of them"])
    result = project.runpytest(f"{OPTION_SHARD}=1/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--modelgate-shard splits a gate session*add --modelgate*"])
    # One module, three shards: the third gets nothing, and that is no failure.
    result = project.runpytest(OPTION_ENABLE, CACHE, f"{OPTION_SHARD}=3/3",
                               "--modelgate-report-dir=s3")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*3 deselected*"])
    if pytest.importorskip("xdist"):
        result = project.runpytest(OPTION_ENABLE, CACHE, f"{OPTION_SHARD}=3/3", "-n", "2",
                                   "--modelgate-report-dir=s3x")
        assert result.ret == 0


def test_xdist_workers_tell_the_controller_the_split(project):
    pytest.importorskip("xdist")
    project.makepyfile(test_a=SUITE_A, test_b=GOOD_B)
    result = project.runpytest(OPTION_ENABLE, CACHE, f"{OPTION_SHARD}=1/2", "-n", "2",
                               "--modelgate-report-dir=x1")
    assert result.ret == 0
    shard = json.loads((project.path / "x1" / "modelgate.json").read_text())["shard"]
    assert len(shard["suite"]) == 5 and shard["partition"]
    assert shard["identity"] == {"index": 1, "count": 2, "by": "--modelgate-shard"}
