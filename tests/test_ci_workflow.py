"""The GitHub Actions workflow in examples/ci/ is valid and does what README says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOW = Path(__file__).resolve().parent.parent / "examples" / "ci" / "modelgate.yml"


def test_workflow_runs_the_gates_caches_and_uploads_the_report():
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the workflow")
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in doc[True]  # YAML 1.1 reads the key "on" as True
    steps = doc["jobs"]["gates"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert any(u.startswith("actions/setup-python") for u in uses)
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == ".modelgate-cache"
    assert "pytest --modelgate --modelgate-cache-dir=.modelgate-cache" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    # Inconclusive is a warning: nothing may turn warnings into errors.
    assert "-W error" not in runs


# --- the sharded workflow: three shard jobs and a merge job -----------------------------

SHARDED = WORKFLOW.parent / "modelgate-shards.yml"
REPO = WORKFLOW.parents[2]
INI = "[pytest]\ntestpaths = examples\nmodelgate_baseline = examples/modelgate-baseline.json\n"


def _step(job: dict, needle: str) -> str:
    (run,) = [s["run"] for s in job["steps"] if needle in s.get("run", "")]
    assert "${{" not in run.replace("${{ matrix.shard }}", ""), \
        "run lines take values from env:, so a test can set them"
    return run


def _bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1200)


def _verdicts(folder: Path) -> dict:
    """A report as the merge must reproduce it: every test's verdict, metrics and deltas,
    not when it ran, how long it took, whether its runs came from the cache, or the
    number of pytest's temporary folder the example's photos were written to (each session
    has its own, two one-process runs as well)."""
    doc = json.loads((folder / "modelgate.json").read_text())
    doc.pop("shard")

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("generated", "duration", "cached", "notes")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str):
            return re.sub(r"/pytest-\d+/", "/pytest-N/", value)
        return value
    return strip(doc)


def test_sharded_workflow_runs_three_shards_and_a_merge_on_the_example(tmp_path):
    """The workflow's own commands, run here on the example: three shard jobs sharing a
    run cache, the merge job; its verdict, report and baseline are one process's."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the workflow")
    pytest.importorskip("torch", reason="the example fine-tunes a PyTorch model")
    pytest.importorskip("sklearn", reason="the example's data are scikit-learn's digits")
    doc = yaml.safe_load(SHARDED.read_text())
    shard_job, merge_job = doc["jobs"]["shard"], doc["jobs"]["merge"]
    assert shard_job["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert shard_job["strategy"]["fail-fast"] is False
    assert merge_job["needs"] == "shard" and merge_job["if"] == "always()"
    uploads = [s for s in merge_job["steps"] if s.get("uses", "").startswith(
        "actions/upload-artifact")]
    assert uploads and uploads[-1]["if"] == "always()"
    shard_cmd, merge_cmd = _step(shard_job, "--modelgate-shard"), _step(merge_job, "merge")

    work = tmp_path / "repo"
    shutil.copytree(REPO / "examples", work / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", "reports", "ci"))
    (work / "pytest.ini").write_text(INI)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SHARDS": str(doc["env"]["SHARDS"]), "MODELGATE_CACHE": f"file://{tmp_path}/cache",
           "READONLY": "", "MODELGATE_CACHE_KEY": "", "SOURCE_DATE_EPOCH": "1764892800"}
    env.pop("PYTEST_ADDOPTS", None)
    codes = []
    for k in (1, 2, 3):
        done = _bash(shard_cmd.replace("${{ matrix.shard }}", str(k)), work, env)
        codes.append(done.returncode)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        # upload-artifact in the shard job, download-artifact in the merge job
        shutil.copytree(work / "reports" / f"shard-{k}", work / "shards" / f"modelgate-shard-{k}")
    merged = _bash(merge_cmd, work, env)
    assert merged.returncode == max(codes) == 0, merged.stdout + merged.stderr
    assert "merged 3 shard(s)" in merged.stdout
    assert (work / "reports" / "junit.xml").is_file()
    assert "durations recorded for the next split" in merged.stdout

    one = _bash("pytest --modelgate --modelgate-cache=\"$MODELGATE_CACHE\" -p no:cacheprovider "
                "--modelgate-report-dir=reports/one", work, env)
    assert one.returncode == merged.returncode, one.stdout
    assert _verdicts(work / "reports") == _verdicts(work / "reports" / "one")

    # The baseline: shards that record it, merged, against one process recording it.
    baseline = work / "examples" / "modelgate-baseline.json"
    committed = baseline.read_bytes()
    update = "--modelgate-update-baseline --modelgate-baseline-seeds=1"
    for k in (1, 2, 3):
        baseline.write_bytes(committed)  # each runner checks out the committed file
        done = _bash(shard_cmd.replace("${{ matrix.shard }}", str(k)).replace(
            "--modelgate-report-dir=reports/shard-", f"{update} --modelgate-report-dir=u/"),
            work, env)
        assert done.returncode == 0, done.stdout + done.stderr
    baseline.write_bytes(committed)
    merged = _bash(f"python -m pytest_modelgate merge u/1 u/2 u/3 --out u/all "
                   f"--update-baseline {baseline}", work, env)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    from_shards = baseline.read_bytes()
    baseline.write_bytes(committed)
    one = _bash(f"pytest {update} --modelgate-cache=\"$MODELGATE_CACHE\" -p no:cacheprovider "
                "--modelgate-report-dir=u/one", work, env)
    assert one.returncode == 0, one.stdout
    assert baseline.read_bytes() == from_shards
    assert "trained" in one.stdout and ", 0 trained" in one.stdout  # all from the cache
