"""Content-addressed cache of fine-tuning runs, so an unchanged ``pytest --modelgate``
retrains nothing.

The key hashes everything that decides a run: the sample ids and labels, the model's name
and initial weights, the training configuration (seed included), the device and the library
versions. A run is stored as JSON plus an ``.npz`` of arrays (predictions, probabilities,
train predictions, head weights), read back with ``allow_pickle=False``: no pickle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelGateWarning

if TYPE_CHECKING:
    import numpy as np

    from .run import FinetuneRun

FORMAT = 1


def library_versions(framework: dict[str, str]) -> dict[str, str]:
    """Versions of the libraries whose change can change a run's outcome: this package,
    numpy, and ``framework``'s own (``Framework.versions()``), so a TensorFlow upgrade
    leaves PyTorch runs cached, and the other way round."""
    from importlib.metadata import PackageNotFoundError, version

    from ._version import __version__

    out = {"pytest-modelgate": __version__}
    try:
        out["numpy"] = version("numpy")
    except PackageNotFoundError:
        pass
    return {**out, **framework}


def run_key(parts: dict[str, Any]) -> str:
    """A stable hash of JSON-ready key parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


# What a cut-short or damaged entry raises while it is read.
UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


class RunCache:
    """Runs on disk under ``directory/<key>/``; ``directory=None`` disables caching.

    ``hits`` counts runs loaded, ``stored`` runs trained and written; ``take_counts()``
    hands out what happened since its last call (the plugin attaches that to each test
    report, so the counts of pytest-xdist workers reach the controller).
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.hits = 0
        self.stored = 0
        self._taken = (0, 0)

    @classmethod
    def at(cls, location: str) -> RunCache:
        """The run cache at ``location``, as a shard recorded it."""
        return cls(Path(location.removeprefix("file://")))

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def take_counts(self) -> tuple[int, int]:
        """Runs (loaded, stored) since the previous call."""
        loaded, stored = self.hits - self._taken[0], self.stored - self._taken[1]
        self._taken = (self.hits, self.stored)
        return loaded, stored

    @contextlib.contextmanager
    def lock(self, key: str | None) -> Iterator[None]:
        """Hold ``key`` against other processes (pytest-xdist workers): a second process
        asking for a run the first is training waits, then loads the stored entry. No key
        or no cache: nothing to hold."""
        if self.directory is None or key is None:
            yield
            return
        # filelock: the lock file's OS lock dies with its process, so a killed worker
        # never leaves a key locked.
        from filelock import FileLock

        locks = self.directory / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(locks / f"{key}.lock")):
            yield

    def load(self, key: str, accept: Callable[[FinetuneRun], bool] | None = None
             ) -> FinetuneRun | None:
        """The cached run for ``key``, or None (missing, unreadable, or one ``accept``
        turns down: then it is retrained, and not counted as loaded)."""
        if self.directory is None:
            return None
        folder = self.directory / key
        if not (folder / "run.json").is_file():
            return None
        import numpy as np

        from .run import EpochStats, FinetuneRun

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
                # Empty: a race run cut at its budget, which has no train predictions.
                train_y_true=data["train_y_true"] if data["train_y_true"].size else None,
                train_y_pred=data["train_y_pred"] if data["train_y_pred"].size else None,
                cached=True,
            )
        except UNREADABLE as exc:
            warnings.warn(f"ignoring unreadable cached run {folder} ({type(exc).__name__}: "
                          f"{exc}); retraining it", ModelGateWarning, stacklevel=2)
            return None
        if accept is not None and not accept(run):
            return None
        self.hits += 1
        return run

    def save(self, key: str, run: FinetuneRun, head_state: dict[str, np.ndarray]) -> None:
        """Store ``run`` under ``key``: written to a temporary folder, then renamed."""
        if self.directory is None:
            return
        from datetime import datetime, timezone

        import numpy as np

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
                "probabilities": run.probabilities,
                **{k: np.zeros(0, np.int64) if v is None else v for k, v in (
                    ("train_y_true", run.train_y_true), ("train_y_pred", run.train_y_pred))},
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
        self.stored += 1

    def read_file(self, name: str) -> bytes | None:
        """A small plain file at the cache's root (``durations.json``), or None."""
        if self.directory is None:
            return None
        try:
            return (self.directory / name).read_bytes()
        except OSError:
            return None

    def write_file(self, name: str, data: bytes) -> None:
        """Write a small plain file at the cache's root, whole or not at all."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
