"""from_folder on the 60,000 CIFAR-10 JPEGs (issue 9): decode on all cores, and the
decoded-array cache.

Each measurement runs in a fresh process (its peak resident memory is the figure), the JPEG
files already in the OS file cache:

- ``one core``: the decode loop in one process (``MODELGATE_DECODE_WORKERS=1``), no array
  cache: what ``from_folder`` did before;
- ``all cores, cold``: every core decodes, the array cache empty (the first load writes it);
- ``from the cache``: the same call again: the arrays are memory-mapped, no image file is
  read; the run touches every image once (a sum over the pixels), as a gate would.

    python benchmarks/bench_from_folder.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg"

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from pytest_modelgate.data import from_folder
cache = sys.argv[2]
splits = from_folder(sys.argv[1], cache=False if cache == "off" else cache)
total = int(splits.train.images.sum(dtype="uint64")) + int(splits.test.images.sum(dtype="uint64"))
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "images": len(splits.train) + len(splits.test), "checksum": total}))
"""


def measure(cache: str, threads: str | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["MODELGATE_DECODE_WORKERS"] = threads
    out = subprocess.run([sys.executable, "-c", CHILD, str(CIFAR), cache], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if not CIFAR.exists():
        sys.exit(f"{CIFAR} is absent: the images come from ../shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("one core, no array cache", measure("off", "1")),
                (f"all {os.cpu_count()} cores, cold (writes the cache)", measure(tmp, None)),
                ("from the cache (memory-mapped)", measure(tmp, None))]
    base = rows[0][1]["seconds"]
    assert len({r["checksum"] for _, r in rows}) == 1, "the three loads differ"
    for label, r in rows:
        print(f"{label:40s} {r['seconds']:6.1f} s  {base / r['seconds']:5.1f}x  "
              f"peak {r['peak_mb']:6.0f} MB  ({r['images']} images)")


if __name__ == "__main__":
    main()
