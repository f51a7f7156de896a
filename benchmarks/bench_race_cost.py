"""What a cold `--modelgate` run costs with a race that stops at its verdict (issue 11).

A new user's suite in the shape of the issue's ants-versus-bees one: 244 training photos of
two classes and 153 for testing, at 224 px, on the CPU; ImageNet-pretrained
EfficientNet-Lite0 fine-tuned head-only, gated by accuracy and by
``assert_faster_than_scratch(min_speedup=2.0)``. The photos are CIFAR-10's airplanes and
ships (``../shared/data/cifar10-jpg``, read with ``from_folder``; the hymenoptera photos
are not on this machine). The suite runs twice through pytest, cache off, one after the
other: with ``modelgate_full_race=true`` (scratch trains to the target or its last epoch,
as before) and with the default (scratch stops once the verdict is decided). Target: the
default run at least 5x cheaper, with the same verdicts.

    python benchmarks/bench_race_cost.py [--epochs 15]
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg"
CLASSES = ("airplane", "ship")
TRAIN, TEST = 122, 76   # per class: 244 and 152 photos

SUITE = '''
import pytest
from pytest_modelgate import assert_accuracy_above, assert_faster_than_scratch
from pytest_modelgate.data import from_folder

EPOCHS = {epochs}


@pytest.fixture(scope="session")
def photos():
    return from_folder("{root}", cache=False)


def test_pretrained_gate(finetune, photos):
    run = finetune("efficientnet_lite0", photos, epochs=EPOCHS, freeze="backbone",
                   image_size=224)
    assert_accuracy_above(run, 0.80)
    assert_faster_than_scratch(run, target_accuracy=0.80, min_speedup=2.0)
'''


def build(root: Path) -> None:
    for split, count in (("train", TRAIN), ("test", TEST)):
        for name in CLASSES:
            target = root / split / name
            target.mkdir(parents=True)
            source = sorted((CIFAR / split / name).iterdir())[:count]
            for path in source:
                shutil.copy(path, target / path.name)


def run_suite(folder: Path, full: bool) -> tuple[float, str, str]:
    args = [sys.executable, "-m", "pytest", "--modelgate", "--modelgate-no-cache", "-q",
            "-p", "no:cacheprovider", "-o", f"modelgate_full_race={'true' if full else 'false'}",
            "--modelgate-device=cpu", "--modelgate-report-dir", str(folder / "report"),
            str(folder / "test_photos.py")]
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - t0
    outcome = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    speed = re.findall(r'"speedup": ([0-9.e+-]+)', (folder / "report" / "modelgate.json")
                       .read_text()) if (folder / "report" / "modelgate.json").exists() else []
    return wall, outcome, ", ".join(f"{float(s):.2f}x" for s in speed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    if not CIFAR.is_dir():
        sys.exit(f"no CIFAR-10 photos at {CIFAR}: this benchmark needs ../shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder / "photos")
        (folder / "test_photos.py").write_text(
            SUITE.format(epochs=args.epochs, root=folder / "photos"))
        print(f"{platform.machine()}, python {platform.python_version()}; "
              f"{2 * TRAIN} train and {2 * TEST} test photos ({' vs '.join(CLASSES)}), "
              f"224 px, EfficientNet-Lite0 head-only, {args.epochs} epochs, race 2x to 0.80")
        results = {}
        for full in (True, False):
            wall, outcome, speedup = run_suite(folder, full)
            results[full] = wall
            label = "full race" if full else "stops at the verdict"
            print(f"{label}: {wall:.1f} s wall; {outcome}; speedup recorded {speedup}")
        print(f"cold run cheaper by {results[True] / results[False]:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
