"""Run-cache benchmark (issue 3): the example suite twice with nothing changed.

Runs ``pytest --modelgate examples/`` into a fresh, temporary cache directory, then again;
prints both wall times and their ratio. Target: the second run at least 20x faster.

    python benchmarks/bench_cache.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cache: str, report: str) -> tuple[float, str]:
    return run_example([f"--modelgate-cache-dir={cache}", f"--modelgate-report-dir={report}"])


def run_example(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """``pytest --modelgate examples/ -q`` with ``args``: its wall time and its summary's
    ``run cache:`` line (bench_shared_cache.py times the same run against S3)."""
    cmd = [sys.executable, "-m", "pytest", "--modelgate", "examples/", "-q", *args]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"pytest failed:\n{out.stdout}\n{out.stderr}")
    line = next((x for x in out.stdout.splitlines() if x.startswith("run cache:")), "?")
    return elapsed, line


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first, line1 = run(f"{tmp}/cache", f"{tmp}/reports")
        second, line2 = run(f"{tmp}/cache", f"{tmp}/reports")
    print(f"first run (trains):   {first:7.1f}s  {line1}")
    print(f"second run (cached):  {second:7.1f}s  {line2}")
    print(f"ratio first/second: {first / second:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
