"""The GitHub Actions workflow in examples/ci/ is valid and does what README says."""

from __future__ import annotations

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
