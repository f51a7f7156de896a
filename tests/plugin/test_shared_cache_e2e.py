"""The run cache shared by CI runners, as users run it: a gate suite against an S3 bucket
(moto's server on 127.0.0.1, see tests/s3server.py), signed entries and a forged one,
read-only jobs, and the options' usage errors. Credentials and the signing key come from
the environment and never show in any output."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from pytest_modelgate.options import (
    OPTION_CACHE,
    OPTION_CACHE_DIR,
    OPTION_CACHE_MAX_SIZE,
    OPTION_CACHE_READONLY,
    OPTION_ENABLE,
)

from ..s3server import SECRET_KEY

GATE_FILE = """
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_gate(finetune, digits, tiny):
    run = finetune(tiny, digits, epochs=1, freeze="none", lr=3e-3, **GRAY)
    assert_accuracy_above(run, 0.3)
"""

TWO_RUNS_FILE = """
from pytest_modelgate import assert_accuracy_above
from conftest import GRAY

def test_gate(finetune, digits, tiny):
    for seed in (0, 1):
        assert_accuracy_above(finetune(tiny, digits, epochs=1, freeze="none", seed=seed,
                                       **GRAY), 0.3)
"""

SIGNING_KEY = "trusted-branch-signing-key-0042"


def _store(url: str):
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    return fs, root


def _accuracy(project) -> float:
    report = json.loads((project.path / "reports" / "modelgate.json").read_text())
    (test,) = report["tests"]
    return next(m["value"] for m in test["metrics"] if m["name"] == "accuracy")


def _assert_no_secret(project, *results) -> None:
    """Neither the storage secret nor the signing key in any output or written file."""
    texts = [r.stdout.str() + r.stderr.str() for r in results]
    texts += [p.read_text(errors="replace") for p in project.path.rglob("*")
              if p.is_file() and p.suffix in (".html", ".json", ".xml", ".txt")]
    for text in texts:
        assert SECRET_KEY not in text and SIGNING_KEY not in text


def test_a_suite_shares_its_runs_through_s3(project, s3_cache_url):
    project.makepyfile(test_gates=TWO_RUNS_FILE)
    args = (OPTION_ENABLE, f"{OPTION_CACHE}={s3_cache_url}", "--junitxml=junit.xml")
    first = project.runpytest(*args)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines([f"run cache: 0 run(s) loaded, 2 trained ({s3_cache_url})"])
    fs, root = _store(s3_cache_url)
    assert len(fs.glob(f"{root}/runs/*.json")) == 2 and len(fs.glob(f"{root}/blobs/*/*")) == 4
    second = project.runpytest(*args)  # another runner would see the same
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines([f"run cache: 2 run(s) loaded, 0 trained ({s3_cache_url})"])
    _assert_no_secret(project, first, second)


def _plant_perfect_predictions(url: str) -> str:
    """Rewrite the one stored run's arrays with every prediction right (accuracy 1.0), as
    someone with write access to the bucket but without the signing key can: a new blob,
    and the manifest pointed at it with its genuine signature kept. The entry's path."""
    fs, root = _store(url)
    (path,) = fs.glob(f"{root}/runs/*.json")
    manifest = json.loads(fs.cat_file(path))
    sha = manifest["blobs"]["arrays.npz"]["sha256"]
    with np.load(io.BytesIO(fs.cat_file(f"{root}/blobs/{sha[:2]}/{sha}")),
                 allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files}
    assert (arrays["y_pred"] != arrays["y_true"]).any()  # a real run, some wrong
    arrays["y_pred"] = arrays["y_true"].copy()
    arrays["probabilities"] = np.eye(arrays["probabilities"].shape[1],
                                     dtype=arrays["probabilities"].dtype)[arrays["y_true"]]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    forged = hashlib.sha256(data).hexdigest()
    fs.pipe_file(f"{root}/blobs/{forged[:2]}/{forged}", data)
    manifest["blobs"]["arrays.npz"] = {"sha256": forged, "size": len(data)}
    fs.pipe_file(path, json.dumps(manifest).encode())
    return path


def test_a_forged_entry_is_rejected_and_the_real_accuracy_recorded(project, s3_cache_url,
                                                                   monkeypatch):
    project.makepyfile(test_gate=GATE_FILE)
    args = (OPTION_ENABLE, f"{OPTION_CACHE}={s3_cache_url}")
    monkeypatch.setenv("MODELGATE_CACHE_KEY", SIGNING_KEY)  # a trusted branch's job
    signed = project.runpytest(*args)
    signed.assert_outcomes(passed=1)
    signed.stdout.fnmatch_lines([f"run cache: 0 run(s) loaded, 1 trained ({s3_cache_url})"])
    real = _accuracy(project)
    assert 0.3 < real < 1.0

    path = _plant_perfect_predictions(s3_cache_url)
    key = path.rsplit("/", 1)[1].removesuffix(".json")
    # Without the key the planted run is read as it is: what the key protects against.
    monkeypatch.delenv("MODELGATE_CACHE_KEY")
    unkeyed = project.runpytest(*args)
    unkeyed.stdout.fnmatch_lines([f"run cache: 1 run(s) loaded, 0 trained ({s3_cache_url})"])
    assert _accuracy(project) == 1.0

    monkeypatch.setenv("MODELGATE_CACHE_KEY", SIGNING_KEY)
    rejected = project.runpytest(*args)
    rejected.assert_outcomes(passed=1)
    rejected.stdout.fnmatch_lines([
        f"*rejected cached run {s3_cache_url}/runs/{key}.json: its signature does not match "
        "MODELGATE_CACHE_KEY; with MODELGATE_CACHE_KEY set only entries signed with it are "
        "read; retraining it*",
        f"run cache: 0 run(s) loaded, 1 trained, 1 rejected (unsigned or forged) "
        f"({s3_cache_url})",
    ])
    assert _accuracy(project) == real

    again = project.runpytest(*args)  # the retrained run was stored, signed
    again.stdout.fnmatch_lines([f"run cache: 1 run(s) loaded, 0 trained ({s3_cache_url})"])
    assert _accuracy(project) == real
    _assert_no_secret(project, signed, unkeyed, rejected, again)


def test_a_read_only_job_writes_nothing(project, s3_cache_url, tmp_path):
    project.makepyfile(test_gate=GATE_FILE)
    result = project.runpytest(OPTION_ENABLE, f"{OPTION_CACHE}={s3_cache_url}",
                               OPTION_CACHE_READONLY)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"run cache: 0 run(s) loaded, 1 trained, not stored "
                                 f"(read-only cache) ({s3_cache_url})"])
    fs, root = _store(s3_cache_url)
    assert fs.find(root) == []
    # The ini key, on a local folder given as a file:// URL.
    folder = tmp_path / "shared"
    project.makeini("[pytest]\naddopts = -p no:cacheprovider\nmodelgate_device = cpu\n"
                    f"modelgate_cache = file://{folder}\nmodelgate_cache_readonly = true\n")
    result = project.runpytest(OPTION_ENABLE)
    result.stdout.fnmatch_lines([f"run cache: 0 run(s) loaded, 1 trained, not stored "
                                 f"(read-only cache) ({folder})"])
    assert not folder.exists() or list(folder.iterdir()) == []


FAKE_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


@pytest.mark.parametrize(("args", "ini", "message"), [
    ((f"{OPTION_CACHE_DIR}=runs", f"{OPTION_CACHE}=s3://bucket/runs"), "",
     "*--modelgate-cache-dir and --modelgate-cache are both given on the command line: give "
     "one (--modelgate-cache takes a folder too)"),
    ((f"{OPTION_CACHE}=s3://AKIAEXAMPLE:{FAKE_SECRET}@bucket/runs",), "",
     "*argument --modelgate-cache: the URL holds credentials (user:password@): they would "
     "show in process lists and CI logs; give the URL without them and set them in the "
     "environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, for s3://*"),
    ((), f"modelgate_cache = s3://AKIAEXAMPLE:{FAKE_SECRET}@bucket/runs",
     "*ini option modelgate_cache: the URL holds credentials*"),
    ((f"{OPTION_CACHE}=s3://bucket/runs", f"{OPTION_CACHE_MAX_SIZE}=2GB"), "",
     "*--modelgate-cache-max-size evicts from local folders only; an object store expires "
     "objects with its own lifecycle rules: give s3://bucket/runs a lifecycle rule*"),
    ((f"{OPTION_CACHE_MAX_SIZE}=2 gigs",), "",
     "*argument --modelgate-cache-max-size: '2 gigs' is not a size: use bytes or a number "
     "with KB, MB, GB or TB*"),
    ((f"{OPTION_CACHE}=nosuch://bucket/runs",), "",
     "*the run cache at nosuch://bucket/runs: *; use a folder, file://, s3://, gs:// or az://"),
])
def test_cache_options_usage_errors(pytester, args, ini, message):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest(OPTION_ENABLE, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert FAKE_SECRET not in result.stdout.str() + result.stderr.str()


def test_the_cache_options_are_in_the_help(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "  --modelgate-cache=URL",
        "*Run cache shared by CI runners: s3://bucket/prefix,",
        "  --modelgate-cache-readonly",
        "*Load cached runs, never store any (pull-request jobs)",
        "  --modelgate-cache-max-size=SIZE",
        "*modelgate_cache (string):*",
    ])
