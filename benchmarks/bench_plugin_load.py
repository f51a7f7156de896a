"""Plugin load cost (issue 8): a plain ``pytest`` run with the plugin against one without.

Runs ``pytest -q`` on one trivial test REPEAT times each way (``-p no:modelgate`` switches
the plugin off), interleaved, and prints the medians of wall and CPU time and their
difference; then the plugin's own import time from ``python -X importtime``. Target: under
50 ms over a bare pytest run.

    python benchmarks/bench_plugin_load.py [REPEAT]
"""

from __future__ import annotations

import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], cwd: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_plain.py").write_text("def test_plain():\n    assert True\n")
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        runs: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        for _ in range(repeat):
            runs["with"].append(timed(base, tmp))
            runs["without"].append(timed([*base, "-p", "no:modelgate"], tmp))
        out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                              "import pytest; import pytest_modelgate.plugin"],
                             capture_output=True, text=True, check=True).stderr
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in runs.items()}
    for k in ("without", "with"):
        print(f"pytest {k:<7} the plugin: wall {med[k][0] * 1000:6.0f} ms, "
              f"cpu {med[k][1] * 1000:6.0f} ms (median of {repeat})")
    print(f"difference: wall {(med['with'][0] - med['without'][0]) * 1000:+.0f} ms, "
          f"cpu {(med['with'][1] - med['without'][1]) * 1000:+.0f} ms (target < 50 ms)")
    own = [(int(m.group(2)), m.group(3).strip()) for m in
           re.finditer(r"import time:\s+(\d+) \|\s+(\d+) \|(.*)", out)
           if m.group(3).strip().startswith("pytest_modelgate")]
    top = [(us, name) for us, name in own if name == "pytest_modelgate.plugin"]
    print(f"python -X importtime: pytest_modelgate.plugin {top[0][0] / 1000:.1f} ms cumulative "
          "(after pytest itself is imported)" if top else "importtime: plugin not found")
    probe = subprocess.run([sys.executable, "-c", "import sys, pytest, pytest_modelgate.plugin; "
                            "print('numpy' in sys.modules)"], capture_output=True, text=True)
    print("numpy imported when the plugin loads:", probe.stdout.strip())


if __name__ == "__main__":
    main()
