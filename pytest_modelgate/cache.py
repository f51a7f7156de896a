"""Cache of fine-tuning runs, so an unchanged ``pytest --modelgate`` retrains nothing, on
this machine or on any CI runner that shares the cache.

The key hashes everything that decides a run: the sample ids and labels, the model's name
and initial weights, the training configuration (seed included), the device and the library
versions. A run is stored as JSON plus an ``.npz`` of arrays (predictions, probabilities,
train predictions, head weights), read back with ``allow_pickle=False``: no pickle. Where
and how the two are stored (a local folder or object storage, content-addressed, checked
and optionally signed) is ``cache_store.py``'s business.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .cache_store import EntryError, EntryRejected, is_remote
from .errors import ModelGateError, ModelGateWarning, user_error_frames

if TYPE_CHECKING:
    import numpy as np

    from .cache_store import BlobStore
    from .run import FinetuneRun

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

FORMAT = 1  # of run.json; the manifest's is cache_store.MANIFEST_FORMAT
ARRAYS = ("y_true", "y_pred", "probabilities", "train_y_true", "train_y_pred")


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


class CacheCounts(NamedTuple):
    """Runs loaded from the cache, trained (and stored, unless the cache is read-only),
    and entries rejected for a missing or wrong signature."""

    loaded: int = 0
    trained: int = 0
    rejected: int = 0


class RunCache:
    """Fine-tuning runs stored at ``location``; ``location=None`` disables caching.

    ``location`` is a local folder (a path or ``file:///path``) or any fsspec URL
    (``s3://bucket/prefix``, ``gs://``, ``az://``), its credentials taken from that
    filesystem's own environment. ``local`` is the folder of this machine that holds the
    lock files and leakage thumbnails of a remote cache (default: one under the temporary
    folder, named after the URL); a local cache keeps them in its own folder.
    ``readonly`` loads and never writes; ``max_size`` (bytes, local caches only) evicts
    the least recently used entries after each save; ``signing_key`` signs every entry
    written and rejects every entry read without a valid signature.

    ``hits`` counts runs loaded, ``trained`` runs trained, ``stored`` those written and
    ``rejected`` entries refused for their signature; ``take_counts()`` hands out what
    happened since its last call (the plugin attaches that to each test report, so the
    counts of pytest-xdist workers reach the controller).

    Example:
        >>> cache = RunCache("s3://ci-cache/modelgate", readonly=True)  # doctest: +SKIP
        >>> cache.location, cache.remote  # doctest: +SKIP
        ('s3://ci-cache/modelgate', True)

    Raises:
        ModelGateError: fsspec knows no such protocol, or its package is not installed.
    """

    def __init__(self, location: str | Path | None, *, local: Path | None = None,
                 readonly: bool = False, max_size: int | None = None,
                 signing_key: bytes | None = None) -> None:
        self.readonly = readonly
        self.max_size = max_size
        self.hits = self.trained = self.stored = self.rejected = 0
        self._taken = CacheCounts()
        self.store: BlobStore | None = None
        self.directory: Path | None = None  # this machine's folder: locks, thumbnails
        if location is None:
            return
        url = str(location)
        if max_size is not None and is_remote(url):
            raise ModelGateError("max_size evicts from local folders only: an object store "
                                 "expires objects with its own lifecycle rules")
        self.store = _open_store(url, signing_key, readonly)
        # Leakage thumbnails and lock files are not signed: they stay on this machine for a
        # remote cache, and for a folder this session only reads or must trust by
        # signature (another machine may write a shared folder).
        if self.store.remote or readonly or signing_key:
            # Named after the URL and the user, so that xdist workers find the same
            # folder and another user's folder is never in the way.
            owner = f"{url}\0{os.getuid() if hasattr(os, 'getuid') else ''}"
            self.directory = (local if self.store.remote else None) or Path(
                tempfile.gettempdir()) / (
                "modelgate-cache-" + hashlib.sha256(owner.encode()).hexdigest()[:12])
        else:
            self.directory = Path(self.store.root)

    @property
    def enabled(self) -> bool:
        return self.store is not None

    @property
    def remote(self) -> bool:
        """Whether the runs live elsewhere than a local folder (object storage)."""
        return self.store is not None and self.store.remote

    @property
    def location(self) -> str:
        """Where the runs are, as it may be shown: a local folder's path, or the URL with no
        credentials and no query; empty when caching is off."""
        return self.store.location if self.store is not None else ""

    def take_counts(self) -> CacheCounts:
        """Runs loaded, trained and rejected since the previous call."""
        now = CacheCounts(self.hits, self.trained, self.rejected)
        taken, self._taken = self._taken, now
        return CacheCounts(*(a - b for a, b in zip(now, taken, strict=True)))

    @contextlib.contextmanager
    def lock(self, key: str | None) -> Iterator[None]:
        """Hold ``key`` against other processes of this machine (pytest-xdist workers): a
        second process asking for a run the first is training waits, then loads the stored
        entry. No key, no cache or a read-only one (nothing stored to wait for, and its
        folder may be read-only): nothing to hold. Runners sharing a remote cache do not
        wait for each other: both train, and both leave a valid entry."""
        if self.directory is None or key is None or self.readonly:
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
        """The cached run for ``key``, or None (missing, unreadable, rejected for its
        signature, or one ``accept`` turns down: then it is retrained, and not counted as
        loaded). An unusable entry is a ``ModelGateWarning`` naming it, never an error."""
        if self.store is None:
            return None
        entry = self.store.shown(self.store.manifest_path(key))
        try:
            payloads = self.store.read_entry(key)
            if payloads is None:
                return None
            run = decode_run(payloads)
        except EntryRejected as exc:
            self.rejected += 1
            warnings.warn(f"rejected cached run {exc.entry}: {exc.why}; with "
                          "MODELGATE_CACHE_KEY set only entries signed with it are read; "
                          "retraining it", ModelGateWarning, stacklevel=2)
            return None
        except (EntryError, *UNREADABLE) as exc:
            why = exc.why if isinstance(exc, EntryError) else f"{type(exc).__name__}: {exc}"
            warnings.warn(f"ignoring unreadable cached run {entry} ({why}); retraining it",
                          ModelGateWarning, stacklevel=2)
            return None
        if accept is not None and not accept(run):
            return None
        self.hits += 1
        return run

    def save(self, key: str, run: FinetuneRun, head_state: dict[str, np.ndarray]) -> None:
        """Count ``run`` as trained and store it under ``key`` (unless the cache is
        read-only); a store that cannot be written is a warning. With ``max_size``, the
        least recently used entries are then evicted."""
        if self.store is None:
            return
        self.trained += 1
        if self.readonly:
            return
        try:
            self.store.write_entry(key, encode_run(run, head_state))
        except OSError as exc:
            warnings.warn(f"run not stored in the run cache at {self.location} "
                          f"({type(exc).__name__}: {exc}); it is trained again next time",
                          ModelGateWarning, stacklevel=2)
            return
        self.stored += 1
        if self.max_size is not None:
            with self.lock("evict"):
                self.store.evict(self.max_size, keep=key)

    def read_file(self, name: str) -> bytes | None:
        """The plain file ``name`` at the cache's root (``durations.json``, say), None when
        it is missing, unreadable (a warning) or caching is off. Not signed: keep nothing
        there that decides a verdict."""
        if self.store is None:
            return None
        try:
            return self.store.read_file(name)
        except OSError as exc:
            warnings.warn(f"{name} not read from the run cache at {self.location} "
                          f"({type(exc).__name__}: {exc})", ModelGateWarning, stacklevel=2)
            return None

    def write_file(self, name: str, data: bytes) -> None:
        """Write the plain file ``name`` at the cache's root, whole (a local file through a
        temporary file and a rename); nothing when caching is off or read-only, a warning
        when the store cannot be written."""
        if self.store is None or self.readonly:
            return
        try:
            self.store.write_file(name, data)
        except OSError as exc:
            warnings.warn(f"{name} not written to the run cache at {self.location} "
                          f"({type(exc).__name__}: {exc})", ModelGateWarning, stacklevel=2)


def _open_store(url: str, signing_key: bytes | None, readonly: bool) -> BlobStore:
    from .cache_store import BlobStore, credential_free

    try:
        return BlobStore(url, signing_key=signing_key, readonly=readonly)
    except ImportError as exc:
        raise ModelGateError(f"the run cache at {credential_free(url)} needs a filesystem "
                             f"package: {exc} (pip install 'pytest-modelgate[cache]' for "
                             "s3://; gcsfs for gs://, adlfs for az://)") from None
    except ValueError as exc:
        raise ModelGateError(f"the run cache at {credential_free(url)}: {exc}; use a folder, "
                             "file://, s3://, gs:// or az://") from None


def encode_run(run: FinetuneRun, head_state: dict[str, np.ndarray]) -> dict[str, bytes]:
    """A run's ``run.json`` (its record) and ``arrays.npz`` (predictions, probabilities,
    train predictions, the trained head's weights) as bytes. A multilabel run's arrays are
    (n, classes) matrices, stored as they are, and its thresholds go in ``run.json``."""
    from datetime import datetime, timezone

    import numpy as np

    meta = {
        "format": FORMAT, "model": run.model, "class_names": list(run.class_names),
        "history": [asdict(h) for h in run.history], "seconds": run.seconds,
        "setup_seconds": run.setup_seconds, "device": run.device,
        "freeze": run.freeze, "pretrained": run.pretrained, "config": run.config,
        "notes": list(run.notes),
        # A multilabel run's per-class thresholds (its arrays are (n, classes) matrices).
        **({} if run.thresholds is None else {"thresholds": list(run.thresholds)}),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    arrays: dict[str, Any] = {
        "y_true": run.y_true, "y_pred": run.y_pred, "probabilities": run.probabilities,
        **{k: np.zeros(0, np.int64) if v is None else v for k, v in (
            ("train_y_true", run.train_y_true), ("train_y_pred", run.train_y_pred))},
        **{f"head.{k}": v for k, v in head_state.items()},
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return {"run.json": json.dumps(meta, indent=1, sort_keys=True).encode(),
            "arrays.npz": buffer.getvalue()}


def decode_run(payloads: dict[str, bytes]) -> FinetuneRun:
    """The run ``encode_run`` stored, marked cached.

    Raises:
        One of ``UNREADABLE``: a payload is missing, cut short or of another format (an
            object array, which would need pickle, included).
    """
    import numpy as np

    from .run import EpochStats, FinetuneRun

    meta = json.loads(payloads["run.json"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r}")
    with np.load(io.BytesIO(payloads["arrays.npz"]), allow_pickle=False) as arrays:
        data = {k: arrays[k] for k in ARRAYS}
    return FinetuneRun(
        model=meta["model"], class_names=tuple(meta["class_names"]),
        y_true=data["y_true"], y_pred=data["y_pred"], probabilities=data["probabilities"],
        history=tuple(EpochStats(**h) for h in meta["history"]),
        seconds=meta["seconds"], setup_seconds=meta["setup_seconds"],
        device=meta["device"], freeze=meta["freeze"], pretrained=meta["pretrained"],
        config=meta["config"],
        notes=(*meta["notes"], f"cached: trained {meta['written']}, not retrained"),
        # Empty: a race run cut at its budget, which has no train predictions.
        train_y_true=data["train_y_true"] if data["train_y_true"].size else None,
        train_y_pred=data["train_y_pred"] if data["train_y_pred"].size else None,
        cached=True,
        thresholds=None if meta.get("thresholds") is None else
        tuple(float(t) for t in meta["thresholds"]),
    )
