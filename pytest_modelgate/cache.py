"""Content-addressed cache of fine-tuning runs, so an unchanged ``pytest --modelgate``
retrains nothing.

The key hashes everything that decides a run: the sample ids and labels, the model's name
and initial weights, the training configuration (seed included), the device and the library
versions. A run is stored as JSON plus an ``.npz`` of arrays (predictions, probabilities,
train predictions, head weights), read back with ``allow_pickle=False``: no pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelGateWarning
from .run import EpochStats, FinetuneRun

FORMAT = 1


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose change can change a run's outcome."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"pytest-modelgate": __version__}
    for dist in ("torch", "torchvision", "numpy", "timm"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def run_key(parts: dict[str, Any]) -> str:
    """A stable hash of JSON-ready key parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class RunCache:
    """Runs on disk under ``directory/<key>/``; ``directory=None`` disables caching."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def load(self, key: str) -> FinetuneRun | None:
        """The cached run for ``key``, or None (missing or unreadable: then it is retrained)."""
        if self.directory is None:
            return None
        folder = self.directory / key
        if not (folder / "run.json").is_file():
            self.misses += 1
            return None
        try:
            meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
                data = {k: arrays[k] for k in ("y_true", "y_pred", "probabilities",
                                               "train_y_true", "train_y_pred")}
            run = FinetuneRun(
                model=meta["model"], class_names=tuple(meta["class_names"]),
                y_true=data["y_true"], y_pred=data["y_pred"],
                probabilities=data["probabilities"],
                history=tuple(EpochStats(**h) for h in meta["history"]),
                seconds=meta["seconds"], setup_seconds=meta["setup_seconds"],
                device=meta["device"], freeze=meta["freeze"], pretrained=meta["pretrained"],
                config=meta["config"],
                notes=(*meta["notes"], f"cached: trained {meta['written']}, not retrained"),
                train_y_true=data["train_y_true"], train_y_pred=data["train_y_pred"],
                cached=True,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"ignoring unreadable cached run {folder} ({exc}); retraining",
                          ModelGateWarning, stacklevel=2)
            self.misses += 1
            return None
        self.hits += 1
        return run

    def save(self, key: str, run: FinetuneRun, head_state: dict[str, np.ndarray]) -> None:
        """Store ``run`` under ``key``: written to a temporary folder, then renamed."""
        if self.directory is None:
            return
        from datetime import datetime, timezone

        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.directory, prefix=f".{key}."))
        try:
            meta = {
                "format": FORMAT, "model": run.model, "class_names": list(run.class_names),
                "history": [asdict(h) for h in run.history], "seconds": run.seconds,
                "setup_seconds": run.setup_seconds, "device": run.device,
                "freeze": run.freeze, "pretrained": run.pretrained, "config": run.config,
                "notes": list(run.notes),
                "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            (tmp / "run.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            arrays: dict[str, Any] = {
                "y_true": run.y_true, "y_pred": run.y_pred,
                "probabilities": run.probabilities, "train_y_true": run.train_y_true,
                "train_y_pred": run.train_y_pred,
                **{f"head.{k}": v for k, v in head_state.items()},
            }
            np.savez(tmp / "arrays.npz", **arrays)
            final = self.directory / key
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

