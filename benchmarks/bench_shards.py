"""Shards benchmark (issue 24): the example split in 3 shards sharing one run cache.

1. Cold: 3 shards one after another (on CI they run side by side on 3 runners) into an
   empty shared cache; counts the runs each trained, and the cache entries after them: every
   run trained once across all shards when the two agree and no key was trained twice.
2. The merge of the 3 shards: seconds, and the size of what it wrote.
3. Warm: the 3 shards again (now split by the durations the merge recorded) and one process
   running everything, from the same cache; side by side: the slowest shard (the wall time of
   the sharded job on 3 runners), the shards' sum, and the one process.
4. Cold again with the durations kept (a change that retrains every run): the 3 shards and
   one process, each from an emptied cache.

    python benchmarks/bench_shards.py

Prints one line per figure; BENCHMARKS.md records them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 3


def pytest(args: list[str], cwd: Path) -> tuple[float, str, int]:
    cmd = [sys.executable, "-m", "pytest", "--modelgate", "examples/", "-q",
           "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t0, out.stdout, out.returncode


def counts(stdout: str) -> tuple[int, int]:
    found = re.search(r"run cache: (\d+) run\(s\) loaded, (\d+) trained", stdout)
    if not found:
        sys.exit(f"no run cache line in:\n{stdout}")
    return int(found.group(1)), int(found.group(2))


def shards(cache: Path, reports: Path, tag: str) -> list[tuple[float, int, int, list[str]]]:
    out = []
    for k in range(1, SHARDS + 1):
        folder = reports / f"{tag}{k}"
        seconds, stdout, code = pytest([f"--modelgate-shard={k}/{SHARDS}",
                                        f"--modelgate-cache-dir={cache}",
                                        f"--modelgate-report-dir={folder}"], ROOT)
        if code not in (0, 1):
            sys.exit(f"shard {k} exited {code}:\n{stdout}")
        loaded, trained = counts(stdout)
        selected = json.loads((folder / "modelgate.json").read_text())["shard"]["selected"]
        out.append((seconds, loaded, trained, selected))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache, reports = Path(tmp) / "cache", Path(tmp) / "reports"
        cold = shards(cache, reports, "cold")
        for k, (seconds, loaded, trained, selected) in enumerate(cold, 1):
            print(f"cold shard {k}/{SHARDS}: {seconds:.1f} s, {trained} trained, {loaded} "
                  f"loaded, {len(selected)} tests")
        entries = len(list((cache / "runs").glob("*.json"))) if (cache / "runs").is_dir() \
            else len([p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")])
        trained = sum(c[2] for c in cold)
        print(f"cold: {trained} runs trained across the shards, {entries} entries in the "
              f"cache: {'every run trained once' if trained == entries else 'NOT once each'}")
        print(f"cold sharded wall time (slowest shard): {max(c[0] for c in cold):.1f} s; "
              f"sum {sum(c[0] for c in cold):.1f} s")

        t0 = time.perf_counter()
        merge = subprocess.run([sys.executable, "-m", "pytest_modelgate", "merge",
                                *[str(reports / f"cold{k}") for k in range(1, SHARDS + 1)],
                                "--out", str(reports / "merged")],
                               capture_output=True, text=True, cwd=ROOT)
        merge_seconds = time.perf_counter() - t0
        if merge.returncode != 0:
            sys.exit(f"merge exited {merge.returncode}:\n{merge.stdout}\n{merge.stderr}")
        sizes = {p.name: p.stat().st_size for p in (reports / "merged").iterdir()}
        shard_json = sum((reports / f"cold{k}" / "modelgate.json").stat().st_size
                         for k in range(1, SHARDS + 1))
        print(f"merge of {SHARDS} shards: {merge_seconds:.2f} s (python start-up included); "
              f"wrote " + ", ".join(f"{n} {s / 1024:.0f} kB" for n, s in sorted(sizes.items()))
              + f"; read {shard_json / 1024:.0f} kB of shard JSON")

        warm = shards(cache, reports, "warm")
        one_seconds, stdout, _ = pytest([f"--modelgate-cache-dir={cache}",
                                         f"--modelgate-report-dir={reports / 'one'}"], ROOT)
        one_loaded, one_trained = counts(stdout)
        for k, (seconds, loaded, trained, selected) in enumerate(warm, 1):
            print(f"warm shard {k}/{SHARDS}: {seconds:.1f} s, {trained} trained, {loaded} "
                  f"loaded, {len(selected)} tests")
        # Cold again, now split by the durations: a change that retrains every run (a
        # library upgrade, say) on 3 runners, against one process training them all.
        import shutil

        for sub in ("runs", "blobs"):
            shutil.rmtree(cache / sub, ignore_errors=True)
        again = shards(cache, reports, "again")
        for k, (seconds, _, trained, selected) in enumerate(again, 1):
            print(f"cold shard {k}/{SHARDS} split by durations: {seconds:.1f} s, {trained} "
                  f"trained, {len(selected)} tests")
        for sub in ("runs", "blobs"):
            shutil.rmtree(cache / sub, ignore_errors=True)
        cold_one, stdout, _ = pytest([f"--modelgate-cache-dir={cache}",
                                      f"--modelgate-report-dir={reports / 'cold-one'}"], ROOT)
        print(f"cold, split by durations: slowest shard {max(a[0] for a in again):.1f} s, "
              f"{sum(a[2] for a in again)} runs trained across the shards; one process "
              f"{cold_one:.1f} s ({counts(stdout)[1]} trained); slowest shard / one process "
              f"= {max(a[0] for a in again) / cold_one:.2f}x")
        slowest = max(w[0] for w in warm)
        print(f"warm: sharded wall time (slowest shard) {slowest:.1f} s, shards' sum "
              f"{sum(w[0] for w in warm):.1f} s, one process {one_seconds:.1f} s "
              f"({one_trained} trained, {one_loaded} loaded); slowest shard / one process "
              f"= {slowest / one_seconds:.2f}x")


if __name__ == "__main__":
    main()
