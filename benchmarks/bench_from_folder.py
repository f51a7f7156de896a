"""from_folder on the 60,000 CIFAR-10 JPEGs (issue 9): decode on all cores, and the
decoded-array cache.

Each measurement runs in a fresh process (its peak resident memory is the figure), the JPEG
files already in the OS file cache:

- ``one core``: the decode loop in one process (``MODELGATE_DECODE_WORKERS=1``), no array
  cache: what ``from_folder`` did before;
- ``all cores, cold``: every core decodes, the array cache empty (the first load writes it);
- ``from the cache``: the same call again: the arrays are memory-mapped, no image file is
  read; the run touches every image once (a sum over the pixels), as a gate would.

    python benchmarks/bench_from_folder.py [--cold-files]

``--cold-files`` (root) also measures each load with the OS page cache emptied first, the
files (and the array cache) read from disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROUNDS = 3
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


def drop_file_cache() -> bool:
    """Empty the OS page cache (root only), so the next load reads from disk."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def measure(cache: str, threads: str | None, cold_files: bool = False) -> dict:
    if cold_files and not drop_file_cache():
        sys.exit("--cold-files needs root: it empties the OS page cache before each load")
    env = dict(os.environ)
    if threads:
        env["MODELGATE_DECODE_WORKERS"] = threads
    out = subprocess.run([sys.executable, "-c", CHILD, str(CIFAR), cache], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if not CIFAR.exists():
        sys.exit(f"{CIFAR} is absent: the images come from ../shared/data")
    for cold in (False, True) if "--cold-files" in sys.argv else (False,):
        print("files on disk, OS page cache emptied before each load" if cold else
              "files in the OS page cache")
        if not cold:  # read every file once, so no round reads from disk
            for path in CIFAR.rglob("*.jpg"):
                path.read_bytes()
        # Three rounds, the three loads side by side in each; the median of each load.
        runs: dict[str, list[dict]] = {}
        for _ in range(ROUNDS):
            with tempfile.TemporaryDirectory() as tmp:
                for label, args in (("one core, no array cache", ("off", "1")),
                                    (f"all {os.cpu_count()} cores, cold (writes the cache)",
                                     (tmp, None)),
                                    ("from the cache (memory-mapped)", (tmp, None))):
                    runs.setdefault(label, []).append(measure(*args, cold))
        rows = [(label, sorted(r, key=lambda x: x["seconds"])[len(r) // 2])
                for label, r in runs.items()]
        base = rows[0][1]["seconds"]
        assert len({r["checksum"] for rs in runs.values() for r in rs}) == 1, "loads differ"
        for label, r in rows:
            spread = ", ".join(f"{x['seconds']:.2f}" for x in runs[label])
            print(f"  {label:40s} {r['seconds']:6.2f} s  {base / r['seconds']:5.1f}x  "
                  f"peak {r['peak_mb']:6.0f} MB  ({r['images']} images; runs {spread} s)")


if __name__ == "__main__":
    main()
