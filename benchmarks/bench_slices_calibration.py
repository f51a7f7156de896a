"""What slices and calibration add to a cached run of the example (issue 25).

The example's head-only gate (``test_head_only_digit_classifier``) runs warm, from the run
cache, with and without ``test_head_only_by_ink_and_calibrated``: the same cached run,
gated on the manifest's ``ink`` slices (``where=`` and ``slice=``) and by
``assert_calibrated``, recorded, compared with the example's baseline (5 seeds) and drawn
in the report. Both are timed as whole ``pytest --modelgate`` processes, alternating, and
the difference is what the new gates cost. A second table times each new assertion alone
on the loaded run, in this process, without recording.

    python benchmarks/bench_slices_calibration.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAIN = "examples/test_digits.py::test_head_only_digit_classifier"
SLICED = "examples/test_digits.py::test_head_only_by_ink_and_calibrated"


def pytest_run(tests: list[str], tmp: str) -> float:
    cmd = [sys.executable, "-m", "pytest", "--modelgate", *tests, "-q", "-p", "no:randomly",
           f"--modelgate-cache-dir={tmp}/cache", f"--modelgate-report-dir={tmp}/reports"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"pytest failed:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    return elapsed


def in_process(tmp: str, repeat: int = 5) -> list[tuple[str, float]]:
    """Each new assertion on the cached run, median seconds over ``repeat`` calls."""
    sys.path.insert(0, str(ROOT / "examples"))
    import conftest  # the example's digits fixture: PNG files and a manifest
    import test_digits

    from pytest_modelgate import assert_calibrated, assert_f1_above, assert_recall_above
    from pytest_modelgate.cache import RunCache
    from pytest_modelgate.train import run_finetune

    class Factory:
        def mktemp(self, name: str) -> Path:
            return Path(tempfile.mkdtemp(dir=tmp, prefix=name))

    digits = conftest.digits.__wrapped__(Factory())
    cache = RunCache(Path(tmp) / "cache")
    run = run_finetune(test_digits.MODEL, digits, epochs=10, freeze="backbone",
                       cache=cache, **test_digits.RECIPE)
    assert run.cached, "the run should come from the cache the pytest runs filled"
    calls = {
        'assert_recall_above(run, 0.90, where={"ink": "light"})':
            lambda: assert_recall_above(run, 0.90, where={"ink": "light"}),
        'assert_f1_above(run, 0.85, slice="ink")': lambda: assert_f1_above(run, 0.85,
                                                                          slice="ink"),
        "assert_calibrated(run, max_ece=0.05)": lambda: assert_calibrated(run, max_ece=0.05),
        "assert_recall_above(run, 0.80, label='8') (for scale)":
            lambda: assert_recall_above(run, 0.80, label="8"),
    }
    out = []
    for name, call in calls.items():
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out.append((name, statistics.median(times)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pytest_run([PLAIN, SLICED], tmp)          # trains the run once, fills the cache
        pytest_run([PLAIN, SLICED], tmp)          # page cache, thumbnails
        plain, sliced = [], []
        for _ in range(args.rounds):
            plain.append(pytest_run([PLAIN], tmp))
            sliced.append(pytest_run([PLAIN, SLICED], tmp))
        for label, times in (("head-only gate alone", plain),
                             ("  + slices and calibration gate", sliced)):
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(f"{label:34s} median {statistics.median(times):6.2f}s  ({shown})")
        added = statistics.median(sliced) - statistics.median(plain)
        print(f"added by the slice and calibration gate: {added:+.2f}s "
              f"({statistics.median(sliced) / statistics.median(plain):.2f}x)")
        print("\neach assertion alone on the cached run (median of 5, not recorded):")
        for name, seconds in in_process(tmp):
            print(f"  {seconds * 1000:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
