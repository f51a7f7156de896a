"""The run cache's store: layout, hash checks, concurrent writers, signatures, eviction and
display, on a local folder and on a real S3 server (tests/s3server.py). No training here:
tests/test_cache.py stores real runs."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from pytest_modelgate.cache_store import (
    MANIFEST_FORMAT,
    ORPHAN_GRACE_SECONDS,
    BlobStore,
    EntryError,
    EntryRejected,
    credential_free,
    credentials_in,
    is_remote,
    local_path,
    signature,
)

KEY = "0123456789abcdef0123456789abcdef"
PAYLOADS = {"run.json": b'{"format": 1}', "arrays.npz": bytes(range(256)) * 40}


@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path) -> str:
    """A store's URL: a local folder, then a prefix on the S3 test server."""
    if request.param == "local":
        return str(tmp_path / "cache")
    return request.getfixturevalue("s3_cache_url")


def _raw(store: BlobStore, path: str) -> bytes:
    return store.fs.cat_file(path)


def _plant(store: BlobStore, path: str, data: bytes) -> None:
    """Write an object as someone with write access to the store would."""
    store.fs.makedirs(store.fs._parent(path), exist_ok=True)
    store.fs.pipe_file(path, data)


def _manifest(store: BlobStore, key: str = KEY) -> dict:
    return json.loads(_raw(store, store.manifest_path(key)))


def test_an_entry_round_trips_in_the_content_addressed_layout(url):
    store = BlobStore(url)
    assert store.read_entry(KEY) is None  # nothing stored: a miss, no warning
    store.write_entry(KEY, PAYLOADS)
    assert store.read_entry(KEY) == PAYLOADS
    manifest = _manifest(store)
    assert manifest["format"] == MANIFEST_FORMAT and manifest["key"] == KEY
    assert "signature" not in manifest and manifest["written"].endswith("+00:00")
    for name, data in PAYLOADS.items():
        sha = manifest["blobs"][name]["sha256"]
        assert manifest["blobs"][name]["size"] == len(data)
        assert store.blob_path(sha).endswith(f"/blobs/{sha[:2]}/{sha}")
        assert _raw(store, store.blob_path(sha)) == data  # the payload, byte for byte
    assert store.remote == url.startswith("s3://")


def test_a_blob_is_written_once(tmp_path):
    store = BlobStore(str(tmp_path))
    store.write_entry(KEY, PAYLOADS)
    sha = _manifest(store)["blobs"]["arrays.npz"]["sha256"]
    blob = Path(store.blob_path(sha))
    inode = blob.stat().st_ino
    store.write_entry("f" * 32, PAYLOADS)  # another key, the same arrays
    assert blob.stat().st_ino == inode  # not rewritten
    assert len(list(tmp_path.glob("blobs/*/*"))) == 2


def _damage(store: BlobStore, how: str) -> str:
    """Damage the stored entry ``how``; the reason its read gives."""
    manifest = _manifest(store)
    sha = manifest["blobs"]["arrays.npz"]["sha256"]
    blob = store.blob_path(sha)
    data = _raw(store, blob)
    if how == "flipped byte":
        store.fs.pipe_file(blob, data[:100] + bytes([data[100] ^ 1]) + data[101:])
        return f"its arrays.npz blob {sha[:12]} does not match its hash"
    if how == "truncated blob":
        store.fs.pipe_file(blob, data[: len(data) // 2])
        return rf"does not match its hash \({len(data) // 2} bytes, {len(data)} expected\)"
    if how == "missing blob":
        store.fs.rm_file(blob)
        return f"its arrays.npz blob {sha[:12]} is missing"
    if how == "garbled manifest":
        store.fs.pipe_file(store.manifest_path(KEY), b'{"format": 2, "blobs": ')
        return "garbled manifest"
    if how == "old manifest format":
        store.fs.pipe_file(store.manifest_path(KEY), json.dumps({**manifest, "format": 1})
                           .encode())
        return "not a format-2 manifest"
    # A manifest copied from another key's entry: the payloads answer another question.
    store.fs.pipe_file(store.manifest_path(KEY), json.dumps({**manifest, "key": "a" * 32})
                       .encode())
    return "the manifest is that of key 'aaaa"


@pytest.mark.parametrize("how", ["flipped byte", "truncated blob", "missing blob",
                                 "garbled manifest", "old manifest format", "another key"])
def test_a_damaged_entry_is_an_error_and_the_next_write_heals_it(url, how):
    store = BlobStore(url)
    store.write_entry(KEY, PAYLOADS)
    why = _damage(store, how)
    with pytest.raises(EntryError, match=why) as raised:
        store.read_entry(KEY)
    assert raised.value.entry == f"{store.location}/runs/{KEY}.json"
    assert not isinstance(raised.value, EntryRejected)
    # The retrained run is written again: a blob found damaged is rewritten, not skipped
    # because an object of its name and size exists.
    store.write_entry(KEY, PAYLOADS)
    assert store.read_entry(KEY) == PAYLOADS


def test_concurrent_writers_of_one_key_leave_one_valid_entry(url):
    writers = 6
    # Each writer's run differs (timings, GPU nondeterminism): different blobs, one key.
    payloads = [{"run.json": b'{"writer": %d}' % i,
                 "arrays.npz": bytes([i]) * (20_000 + i)} for i in range(writers)]
    stores = [BlobStore(url) for _ in range(writers)]
    start = threading.Barrier(writers)
    errors = []

    def write(i: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                stores[i].write_entry(KEY, payloads[i])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    read = BlobStore(url).read_entry(KEY)  # every blob checked against its hash
    assert read in payloads
    manifest = _manifest(stores[0])
    assert {n: b["size"] for n, b in manifest["blobs"].items()} == \
        {n: len(d) for n, d in read.items()}
    if not url.startswith("s3://"):  # no temporary file left behind
        assert not [p for p in Path(url).rglob(".tmp-*")]


def test_signed_entries_load_with_the_key_and_anything_else_is_rejected(url):
    key = b"ci-signing-key-42"
    signed = BlobStore(url, signing_key=key)
    signed.write_entry(KEY, PAYLOADS)
    manifest = _manifest(signed)
    assert manifest["signature"] == signature(key, manifest)
    assert b"ci-signing-key-42" not in _raw(signed, signed.manifest_path(KEY))
    assert signed.read_entry(KEY) == PAYLOADS
    assert BlobStore(url).read_entry(KEY) == PAYLOADS  # no key: read unchecked

    with pytest.raises(EntryRejected, match="does not match MODELGATE_CACHE_KEY"):
        BlobStore(url, signing_key=b"another key").read_entry(KEY)
    BlobStore(url).write_entry(KEY, PAYLOADS)  # an unsigned writer (a job without the key)
    with pytest.raises(EntryRejected, match=f"runs/{KEY}.json: unsigned"):
        signed.read_entry(KEY)


def test_a_forgery_keeping_the_genuine_signature_is_rejected(url):
    """New arrays under the genuine manifest's signature: the signature covers the blob
    hashes, so pointing the manifest elsewhere breaks it."""
    key = b"ci-signing-key-42"
    store = BlobStore(url, signing_key=key)
    store.write_entry(KEY, PAYLOADS)
    manifest = _manifest(store)
    planted = b"planted predictions" * 100
    sha = hashlib.sha256(planted).hexdigest()
    _plant(store, store.blob_path(sha), planted)
    manifest["blobs"]["arrays.npz"] = {"sha256": sha, "size": len(planted)}
    _plant(store, store.manifest_path(KEY), json.dumps(manifest).encode())
    with pytest.raises(EntryRejected, match="its signature does not match"):
        store.read_entry(KEY)
    assert BlobStore(url).read_entry(KEY)["arrays.npz"] == planted  # what no key reads


def test_plain_files_at_the_root(url):
    store = BlobStore(url)
    assert store.read_file("durations.json") is None
    store.write_file("durations.json", b'{"a": 1.5}')
    store.write_file("durations.json", b'{"a": 2.5}')
    assert store.read_file("durations.json") == b'{"a": 2.5}'
    for bad in ("../x", "a/b", ".hidden", "runs", ""):
        with pytest.raises(ValueError, match="is not a plain file name"):
            store.write_file(bad, b"")


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_eviction_drops_the_least_recently_used_and_keeps_young_orphans(tmp_path):
    store = BlobStore(str(tmp_path))
    keys = [c * 32 for c in "abcd"]
    for i, key in enumerate(keys):  # a, b, c, d: oldest first, each 10 kB of its own
        store.write_entry(key, {"arrays.npz": bytes([i]) * 10_000})
        _age(Path(store.manifest_path(key)), 1000 - i)
    store.read_entry(keys[0])  # a is used again: now the most recent
    blobs = {k: Path(store.blob_path(_manifest(store, k)["blobs"]["arrays.npz"]["sha256"]))
             for k in keys}
    _age(blobs[keys[1]], ORPHAN_GRACE_SECONDS + 60)  # b's blob is old; c's is young

    assert store.evict(25_000, keep=keys[3]) == 2  # b, then c: a and d fit in 25 kB
    assert sorted(p.stem[0] for p in tmp_path.glob("runs/*.json")) == ["a", "d"]
    assert not blobs[keys[1]].exists()  # unreferenced and old: deleted
    assert blobs[keys[2]].exists()  # unreferenced but young: a writer may be about to name it
    assert store.read_entry(keys[0]) is not None and store.read_entry(keys[3]) is not None

    # The entry just saved stays, even alone over the limit.
    assert store.evict(1, keep=keys[3]) == 1
    assert [p.stem[0] for p in tmp_path.glob("runs/*.json")] == ["d"]


def test_an_old_orphan_and_a_cut_short_temporary_file_go_young_ones_stay(tmp_path):
    store = BlobStore(str(tmp_path))
    store.write_entry(KEY, PAYLOADS)
    folder = tmp_path / "blobs" / "ab"
    folder.mkdir()
    old, young, tmp = folder / ("ab" + "1" * 62), folder / ("ab" + "2" * 62), folder / ".tmp-x"
    for path in (old, young, tmp):
        path.write_bytes(b"x" * 10)
    _age(old, ORPHAN_GRACE_SECONDS + 1)
    _age(tmp, ORPHAN_GRACE_SECONDS + 1)
    assert store.evict(10**9) == 0
    assert not old.exists() and not tmp.exists() and young.exists()
    assert store.read_entry(KEY) == PAYLOADS


def test_eviction_is_for_local_folders(s3_cache_url):
    with pytest.raises(ValueError, match="object store expires objects with its own "
                                         "lifecycle rules"):
        BlobStore(s3_cache_url).evict(10)


@pytest.mark.parametrize(("url", "shown", "secret"), [
    ("s3://KEY:SECRET@bucket/runs", "s3://bucket/runs", True),
    ("s3://AKIAONLY@bucket/runs", "s3://bucket/runs", True),
    ("gs://bucket/runs?access_token=SECRET", "gs://bucket/runs", False),
    ("abfs://container@account.dfs.core.windows.net/runs",
     "abfs://container@account.dfs.core.windows.net/runs", False),
    ("az://container:SECRET@account/runs", "az://account/runs", True),
    ("s3://bucket/prefix", "s3://bucket/prefix", False),
    ("/srv/cache", "/srv/cache", False),
])
def test_what_is_shown_of_a_location_holds_no_credentials(url, shown, secret):
    assert credential_free(url) == shown
    assert credentials_in(url) is secret


def test_local_and_remote_locations():
    assert not is_remote("/srv/cache") and not is_remote("file:///srv/cache")
    assert not is_remote("relative/cache") and is_remote("s3://b/p") and is_remote("gs://b")
    assert local_path("file:///srv/cache") == Path("/srv/cache")
    assert local_path("runs") == Path("runs")
    assert BlobStore("file://" + "/tmp").location == str(Path("/tmp").resolve())
