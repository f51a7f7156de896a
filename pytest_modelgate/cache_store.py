"""Where the run cache keeps its entries: a content-addressed store on any fsspec
filesystem, a local folder, a shared mount or object storage (``s3://``, ``gs://``,
``az://``), one layout for all.

Under the store's root::

    blobs/<sha256[:2]>/<sha256>   a payload (a run's run.json or arrays.npz), written once
    runs/<key>.json               the manifest: {format, key, blobs: {name: {sha256, size}},
                                  written[, signature]}

Blobs are written first and the manifest last, each object whole (a local file through a
temporary file and ``os.replace``, an object store's PUT is atomic per object), so a reader
sees a whole entry or none, and every blob it reads is checked against the manifest's hash.
Two writers of one key both leave a valid entry: each manifest names blobs that exist, and
the last manifest written wins.

With a signing key (``MODELGATE_CACHE_KEY``) every manifest written carries an HMAC-SHA256
of its key, format and blob hashes, and a manifest read must carry a valid one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MANIFEST_FORMAT = 2
SIGNING_KEY_ENV = "MODELGATE_CACHE_KEY"
# An unreferenced blob younger than this may be one a concurrent writer has just written
# and is about to name in its manifest: eviction leaves it for a later pass.
ORPHAN_GRACE_SECONDS = 3600
# Azure's URLs name the container before the account (abfs://container@account...): that
# user part is a path, not a credential.
CONTAINER_AT_ACCOUNT = frozenset({"abfs", "abfss", "az", "adl"})
PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_PROTOCOL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


class EntryError(Exception):
    """A cached entry that cannot be used: a damaged manifest, a missing blob, a blob whose
    content does not match its hash."""

    def __init__(self, entry: str, why: str) -> None:
        super().__init__(f"{entry}: {why}")
        self.entry = entry
        self.why = why


class EntryRejected(EntryError):
    """An entry whose manifest is unsigned or signed with another key, read while a
    signing key is set."""


def protocol_of(url: str) -> str:
    """``s3`` for ``s3://bucket/prefix``; ``file`` for a plain path or ``file://``."""
    found = _PROTOCOL.match(url)
    return found[1].lower() if found else "file"


def is_remote(url: str) -> bool:
    """Whether ``url`` names a store other than a local folder (``file://`` or a path)."""
    return protocol_of(url) not in ("file", "local")


def local_path(url: str) -> Path:
    """The folder a local ``url`` (a path or ``file:///path``) names."""
    for prefix in ("file://", "local://"):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    return Path(url)


def credentials_in(url: str) -> bool:
    """Whether ``url`` carries credentials in its user part (``s3://KEY:SECRET@bucket``,
    ``file://user:pw@/path``); Azure's ``container@account`` is a path."""
    if not is_remote(url):
        return url.startswith("file://") and "@" in urlsplit(url).netloc
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    return bool(at) and (":" in userinfo or protocol_of(url) not in CONTAINER_AT_ACCOUNT)


def credential_free(url: str) -> str:
    """``url`` as it may be shown: no user part (but Azure's container) and no query.

    Example:
        >>> credential_free("s3://KEY:SECRET@bucket/runs?token=abc")
        's3://bucket/runs'
    """
    if not is_remote(url):
        return url
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    keep = at and ":" not in userinfo and protocol_of(url) in CONTAINER_AT_ACCOUNT
    return urlunsplit((parts.scheme, f"{userinfo}@{host}" if keep else host, parts.path,
                       "", ""))


def signing_key_from_env() -> bytes | None:
    """The key entries are signed and checked with: ``$MODELGATE_CACHE_KEY``, None when
    unset or empty (CI systems hand an empty string to jobs that may not see a secret)."""
    value = os.environ.get(SIGNING_KEY_ENV, "")
    return value.encode() if value else None


def signature(signing_key: bytes, manifest: dict[str, Any]) -> str:
    """HMAC-SHA256 over the canonical JSON of what a manifest vouches for: its format, key
    and blob hashes and sizes (not its time of writing)."""
    signed = {k: manifest.get(k) for k in ("format", "key", "blobs")}
    body = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(signing_key, body, hashlib.sha256).hexdigest()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class _Manifest:
    path: str
    mtime: float
    blobs: frozenset[str]


class BlobStore:
    """Entries (named payloads under a key) and small plain files at ``url``.

    Remote filesystems come from ``fsspec.core.url_to_fs``, their credentials from their
    own environment (``AWS_*``, ``~/.aws``, ``FSSPEC_S3_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
    ``AZURE_STORAGE_*``); a local folder is written through temporary files and
    ``os.replace``.

    Raises:
        ImportError: the filesystem's package (s3fs, gcsfs, adlfs) is not installed.
        ValueError: fsspec knows no such protocol.
    """

    def __init__(self, url: str, *, signing_key: bytes | None = None,
                 readonly: bool = False) -> None:
        from fsspec.core import url_to_fs

        self.remote = is_remote(url)
        self.signing_key = signing_key
        self.readonly = readonly  # reads leave the store as it was: no access times
        if self.remote:
            self.fs, self.root = url_to_fs(url)
            self.root = self.root.rstrip("/")
            self.location = credential_free(url)
        else:
            folder = local_path(url).resolve()
            self.fs, _ = url_to_fs(str(folder))
            self.root = str(folder)
            self.location = str(folder)
        # Blobs that failed their hash check here: rewritten, never skipped as present.
        self._suspect: set[str] = set()

    def manifest_path(self, key: str) -> str:
        return f"{self.root}/runs/{key}.json"

    def blob_path(self, sha: str) -> str:
        return f"{self.root}/blobs/{sha[:2]}/{sha}"

    def shown(self, path: str) -> str:
        """``path`` as a message names it: under the credential-free location."""
        return self.location + path[len(self.root):]

    # -- entries --------------------------------------------------------------------------

    def read_entry(self, key: str) -> dict[str, bytes] | None:
        """The payloads stored under ``key``, each checked against its hash; None when no
        manifest is stored. A local manifest's modification time is set to now: eviction
        drops the least recently used entries first.

        Raises:
            EntryRejected: a signing key is set and the manifest's signature is missing or
                wrong.
            EntryError: the manifest is unreadable or names a missing or altered blob.
            OSError: the store cannot be read.
        """
        path = self.manifest_path(key)
        entry = self.shown(path)
        try:
            raw = self._cat(path)
        except FileNotFoundError:
            return None
        manifest = self._parse_manifest(raw, entry)
        if manifest.get("key") != key:
            raise EntryError(entry, f"the manifest is that of key {manifest.get('key')!r}")
        self._check_signature(manifest, entry)
        blobs = manifest["blobs"]
        # One request per blob, all at once where the filesystem is asynchronous (s3fs,
        # gcsfs, adlfs): an entry costs two round trips to a bucket, not three.
        fetched = self._cat_many([self.blob_path(b["sha256"]) for b in blobs.values()])
        payloads = {name: self._checked(data, blob, entry, name)
                    for (name, blob), data in zip(blobs.items(), fetched, strict=True)}
        if not self.remote and not self.readonly:
            with contextlib.suppress(OSError):
                os.utime(path)
        return payloads

    def _parse_manifest(self, raw: bytes, entry: str) -> dict[str, Any]:
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            raise EntryError(entry, f"garbled manifest ({exc})") from None
        blobs = manifest.get("blobs") if isinstance(manifest, dict) else None
        if not isinstance(blobs, dict) or manifest.get("format") != MANIFEST_FORMAT or not all(
                isinstance(b, dict) and isinstance(b.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", b["sha256"]) and isinstance(b.get("size"), int)
                for b in blobs.values()):
            raise EntryError(entry, f"not a format-{MANIFEST_FORMAT} manifest")
        return manifest

    def _check_signature(self, manifest: dict[str, Any], entry: str) -> None:
        if self.signing_key is None:
            return  # no key: entries are read unchecked (README: who gets the key)
        given = manifest.get("signature")
        if not isinstance(given, str):
            raise EntryRejected(entry, "unsigned")
        if not hmac.compare_digest(given, signature(self.signing_key, manifest)):
            raise EntryRejected(entry, "its signature does not match MODELGATE_CACHE_KEY")

    def _checked(self, data: bytes | Exception, blob: dict[str, Any], entry: str,
                 name: str) -> bytes:
        """A fetched blob's bytes, once they match the manifest's hash and size."""
        sha = blob["sha256"]
        if isinstance(data, FileNotFoundError):
            raise EntryError(entry, f"its {name} blob {sha[:12]} is missing")
        if isinstance(data, Exception):
            raise OSError(f"{type(data).__name__}: {data}") from data
        if len(data) != blob["size"] or _digest(data) != sha:
            self._suspect.add(sha)
            raise EntryError(entry, f"its {name} blob {sha[:12]} does not match its hash "
                                    f"({len(data)} bytes, {blob['size']} expected)")
        return data

    def write_entry(self, key: str, payloads: dict[str, bytes]) -> None:
        """Store ``payloads`` under ``key``: each blob unless stored already, then the
        manifest (signed when a signing key is set).

        Raises:
            OSError: the store cannot be written.
        """
        from datetime import datetime, timezone

        blobs = {}
        for name, data in payloads.items():
            sha = _digest(data)
            blobs[name] = {"sha256": sha, "size": len(data)}
            self._write_blob(sha, data)
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT, "key": key, "blobs": blobs,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if self.signing_key is not None:
            manifest["signature"] = signature(self.signing_key, manifest)
        self._put(self.manifest_path(key), json.dumps(manifest, indent=1, sort_keys=True).encode())

    def _write_blob(self, sha: str, data: bytes) -> None:
        path = self.blob_path(sha)
        if sha not in self._suspect and self._size(path) == len(data):
            if not self.remote:  # young again: eviction's grace covers the manifest to come
                with contextlib.suppress(OSError):
                    os.utime(path)
            return
        self._put(path, data)
        self._suspect.discard(sha)

    # -- plain files ----------------------------------------------------------------------

    def read_file(self, name: str) -> bytes | None:
        """The bytes of the plain file ``name`` at the root, None when there is none."""
        try:
            return self._cat(self._plain(name))
        except FileNotFoundError:
            return None

    def write_file(self, name: str, data: bytes) -> None:
        """Write the plain file ``name`` at the root, whole."""
        self._put(self._plain(name), data)

    def _plain(self, name: str) -> str:
        if not PLAIN_FILE_NAME.fullmatch(name) or name in ("runs", "blobs"):
            raise ValueError(f"{name!r} is not a plain file name for the run cache's root "
                             "(letters, digits, '.', '_', '-'; not runs or blobs)")
        return f"{self.root}/{name}"

    # -- eviction (local folders) ---------------------------------------------------------

    def evict(self, max_size: int, *, keep: str | None = None) -> int:
        """Drop the least recently used entries until the blobs the others reference take
        at most ``max_size`` bytes, never the entry ``keep``; then delete every blob no
        entry references that is older than ``ORPHAN_GRACE_SECONDS``. Returns the number of
        entries dropped. Local folders only: object stores expire objects by their own
        lifecycle rules."""
        if self.remote:
            raise ValueError("eviction is for local folders: an object store expires objects "
                             "with its own lifecycle rules")
        root = Path(self.root)
        manifests = sorted(self._manifests(root), key=lambda m: m.mtime)
        files: dict[Path, tuple[int, float]] = {}  # blobs and cut-short temporary files
        now = time.time()
        for path in root.glob("blobs/*/*"):
            with contextlib.suppress(OSError):
                stat = path.stat()
                files[path] = (stat.st_size, now - stat.st_mtime)
        sizes = {path.name: size for path, (size, _) in files.items()}
        refs = Counter(sha for m in manifests for sha in m.blobs)
        used = sum(sizes.get(sha, 0) for sha in refs)
        kept = self.manifest_path(keep) if keep is not None else None
        dropped = 0
        for m in manifests:
            if used <= max_size:
                break
            if m.path == kept:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(m.path)
            dropped += 1
            for sha in m.blobs:
                refs[sha] -= 1
                if refs[sha] == 0:
                    used -= sizes.get(sha, 0)
        for path, (_, age) in files.items():
            if refs[path.name] <= 0 and age > ORPHAN_GRACE_SECONDS:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return dropped

    def _manifests(self, root: Path) -> Iterator[_Manifest]:
        """Every manifest with its blobs; one that cannot be read names none (it is
        dropped first)."""
        for path in root.glob("runs/*.json"):
            try:
                mtime = path.stat().st_mtime
                blobs = json.loads(path.read_bytes())["blobs"]
                shas = frozenset(b["sha256"] for b in blobs.values())
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                mtime, shas = 0.0, frozenset()
            yield _Manifest(str(path), mtime, shas)

    # -- I/O ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        """Every client error is an ``OSError``: a remote filesystem's client raises its
        own types as well (botocore's ``NoCredentialsError`` is no ``OSError``), and a
        store that cannot be reached must cost a retrain, never a failed gate."""
        try:
            yield
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - see the docstring
            raise OSError(f"{type(exc).__name__}: {exc}") from exc

    def _cat(self, path: str) -> bytes:
        with self._io():
            return self.fs.cat_file(path)

    def _cat_many(self, paths: list[str]) -> list[bytes | Exception]:
        """Each path's bytes, or the exception reading it raised."""
        with self._io():
            found = self.fs.cat(paths, on_error="return")
        return [found.get(p, FileNotFoundError(p)) for p in paths]

    def _size(self, path: str) -> int | None:
        with self._io():
            try:
                return int(self.fs.info(path)["size"])
            except FileNotFoundError:
                return None

    def _put(self, path: str, data: bytes) -> None:
        if self.remote:
            with self._io():
                self.fs.pipe_file(path, data)
            return
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as a plain write would leave it, not 0600
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # whole or not at all
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
