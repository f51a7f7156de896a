"""Shared run-cache benchmark (issue 24): a warm run of the example suite with the run cache
on S3 against the same cache in a local folder, side by side.

Trains the example once into a local folder, copies that folder's entries to an S3 bucket
(the layout is the same on both), then times ``pytest --modelgate examples/ -q`` warm from
each, alternating, after one untimed run of each (which fills the leakage thumbnails and the
OS page cache). Prints each wall time, the medians and their ratio. Target: S3 within 1.5x
of local.

The bucket is moto's S3 server on 127.0.0.1 (``moto[server]``, as in the tests; MinIO is on
no package registry): s3fs and botocore go through their whole HTTP path, but the round
trip is a loopback one. A real bucket adds its latency per request, about two round trips
per cached run (the manifest, then the run's blobs together).

    KERAS_HOME=/tmp/kh python benchmarks/bench_shared_cache.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_cache import run_example  # noqa: E402
from tests.s3server import BUCKET, client_environment, s3_server  # noqa: E402


def run(cache: str, work: Path, env: dict[str, str]) -> tuple[float, str]:
    return run_example([f"--modelgate-cache={cache}", f"--modelgate-report-dir={work}/reports",
                        # Locks and thumbnails of the S3 run go here, not into the
                        # repository's cache.
                        "-o", f"cache_dir={work}/pytest-cache"], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp, s3_server() as endpoint:
        work = Path(tmp)
        env = {**os.environ, **client_environment(endpoint)}
        local, remote = str(work / "local"), f"s3://{BUCKET}/bench/modelgate"
        cold, line = run(local, work, env)
        print(f"cold, local folder (trains):  {cold:7.1f}s  {line}")
        os.environ.update(client_environment(endpoint))
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(remote)
        fs.put(f"{local}/runs", f"{root}/", recursive=True)
        fs.put(f"{local}/blobs", f"{root}/", recursive=True)
        times: dict[str, list[float]] = {"local": [], "s3": []}
        for r in range(rounds + 1):
            for name, cache in (("local", local), ("s3", remote)):
                seconds, line = run(cache, work, env)
                if r == 0:
                    print(f"warm-up, {name:5}: {seconds:6.1f}s  {line}")
                    continue
                times[name].append(seconds)
                print(f"round {r}, {name:5}: {seconds:6.1f}s  {line}")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median warm run: local folder {med['local']:.2f}s, S3 {med['s3']:.2f}s; "
          f"S3 / local = {med['s3'] / med['local']:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
