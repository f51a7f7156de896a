"""The process toolkit (``processes.py``): parallel_map, the fork-share-reap mechanism and
the read-ahead."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pytest_modelgate import processes
from pytest_modelgate.errors import ModelGateError

from .test_data import (
    _assert_reaped,
    _dead_children,
    _evict,
    _files_for_shared_decode,
    _record_forks,
    linux_page_cache,
)


def _square_or_fail(x):
    if x in (1500, 2200):
        raise ModelGateError(f"bad item {x}")
    return x * x


def test_parallel_map_keeps_order_and_raises_the_first_error(monkeypatch):
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    items = list(range(2500))
    good = [i for i in items if i not in (1500, 2200)]
    assert processes.parallel_map(_square_or_fail, good, chunk=500) == [i * i for i in good]
    with pytest.raises(ModelGateError, match="bad item 1500"):
        processes.parallel_map(_square_or_fail, items, chunk=500)
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "1")
    assert processes.parallel_map(_square_or_fail, good[:10]) == [i * i for i in good[:10]]


@linux_page_cache
def test_read_ahead_asks_only_for_files_not_in_memory(tmp_path):
    from pytest_modelgate.processes import in_page_cache, no_read_ahead, start_read_ahead

    _, paths = _files_for_shared_decode(tmp_path, n=20)
    assert in_page_cache(paths)  # just written
    assert start_read_ahead(paths, [0], lead=10) is no_read_ahead  # nothing to read
    _evict(paths)
    if in_page_cache(paths):
        pytest.skip("this file system keeps evicted pages (or refuses RWF_NOWAIT)")
    stop = start_read_ahead(paths, [len(paths)], lead=10)
    assert stop is not no_read_ahead
    stop()


@linux_page_cache
def test_read_ahead_stays_within_its_lead_and_stops(tmp_path, monkeypatch):
    import threading
    import time

    _, paths = _files_for_shared_decode(tmp_path, n=40)
    paths.insert(5, str(tmp_path / "gone.png"))  # a missing file: the decoder names it
    advised = []
    monkeypatch.setattr(processes, "in_page_cache", lambda _: False)
    monkeypatch.setattr(processes.os, "posix_fadvise", lambda fd, *_: advised.append(fd))
    where = [0]
    stop = processes.start_read_ahead(paths, where, lead=9)
    deadline = time.monotonic() + 10
    while len(advised) < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(advised) == 9  # rows 0..9 but the missing one, and no further
    where[0] = len(paths)
    while len(advised) < len(paths) - 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(advised) == len(paths) - 1
    stop()
    assert "modelgate-read-ahead" not in [t.name for t in threading.enumerate()]


@linux_page_cache
@pytest.mark.parametrize("workers", ["1", "2"])
def test_parallel_map_reads_ahead_in_the_pool_and_in_one_process(tmp_path, monkeypatch,
                                                                 workers):
    # The decode without array cache and the leakage scan of folders go through here.
    import threading
    from functools import partial

    from pytest_modelgate.data.decode import read_image

    x, paths = _files_for_shared_decode(tmp_path, n=600)
    _evict(paths)
    if processes.in_page_cache(paths):
        pytest.skip("this file system keeps evicted pages (or refuses RWF_NOWAIT)")
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", workers)
    started = []
    real = processes.start_read_ahead
    monkeypatch.setattr(processes, "start_read_ahead",
                        lambda *a, **k: started.append(real(*a, **k)) or started[-1])
    out = processes.parallel_map(partial(read_image, size=None), paths, chunk=100,
                                 read_ahead=paths)
    assert started[0] is not processes.no_read_ahead
    np.testing.assert_array_equal(np.stack(out), x)
    assert "modelgate-read-ahead" not in [t.name for t in threading.enumerate()]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_parallel_map_redoes_the_chunks_of_a_child_that_died(monkeypatch):
    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    started = _dead_children(monkeypatch, processes)
    assert processes.parallel_map(str, list(range(500)), chunk=50) == [str(x) for x in range(500)]
    assert len(started) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_ctrl_c_in_parallel_map_stops_the_children_and_leaves_no_folder(monkeypatch):
    import tempfile

    monkeypatch.setenv("MODELGATE_DECODE_WORKERS", "2")
    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **k: made.append(real_mkdtemp(**k)) or made[-1])
    parent = os.getpid()

    def interrupted_here(x):
        if x == 250 and os.getpid() == parent:  # chunk 2: this process's
            raise KeyboardInterrupt
        return x

    forked = _record_forks(monkeypatch, processes)
    with pytest.raises(KeyboardInterrupt):
        processes.parallel_map(interrupted_here, list(range(1000)), chunk=100)
    assert made and not os.path.exists(made[0])
    _assert_reaped(forked)

