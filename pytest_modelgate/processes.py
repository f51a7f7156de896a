"""Work on every core by forking: ``parallel_map``, the fork-share-reap mechanism under it
(``with_children``), and the read-ahead that keeps the disk ahead of the workers.

The folder decode (``data/``) and the leakage scan of folders (``leakage/``) use it. Forked
processes, not threads: for small images the per-file Python work holds the GIL.

Example:
    >>> parallel_map(abs, [-1, 2, -3])
    [1, 2, 3]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def worker_count() -> int:
    """Processes to decode with: ``$MODELGATE_DECODE_WORKERS``, else every core; 1 where
    the platform cannot fork (only Linux forks here)."""
    import sys

    if not sys.platform.startswith("linux"):
        return 1
    return max(1, int(os.environ.get("MODELGATE_DECODE_WORKERS") or os.cpu_count() or 1))


def _kill(children: list[int]) -> None:
    """SIGKILL forked children (still to be reaped by the caller)."""
    import signal

    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def with_children(workers: int, share: Callable[[int], None],
                  start_reading: Callable[[], Callable[[], None]]) -> None:
    """``share(k)`` in ``workers - 1`` forked children (k = 1, 2, ...) and in this process
    (k = 0); the children are reaped before this returns or raises. The read-ahead starts
    after the forks, so no child inherits its thread. A Ctrl-C (or any error) that reaches
    only this process kills the children. A child's exit code is not read: the caller
    finds what a dead child left undone and does it itself."""
    children: list[int] = []
    stop_reading = no_read_ahead
    try:
        for k in range(1, workers):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                code = 1
                try:
                    share(k)
                    code = 0
                finally:
                    os._exit(code)  # never back into the caller's code (pytest's)
            children.append(pid)
        stop_reading = start_reading()
        share(0)
    except BaseException:
        _kill(children)
        raise
    finally:
        stop_reading()
        for pid in children:
            os.waitpid(pid, 0)


def parallel_map(fn: Any, items: list, *, chunk: int = 1000,
                 read_ahead: Sequence[str | Path] | None = None) -> list:
    """``[fn(x) for x in items]`` on every core: this process and forked children take
    interleaved chunks (on Linux; elsewhere, or for few items, this process alone). Threads
    do not help here: for small images the per-file Python work holds the GIL, and two
    threads decoded CIFAR's 50,000 JPEGs in 16.8 s against 8.5 s on one; two processes took
    5.2 s. ``$MODELGATE_DECODE_WORKERS`` caps the processes (1: no children). The first
    error, in order, is raised. ``read_ahead``: the file each item reads, in order, for
    ``start_read_ahead``.

    No ``ProcessPoolExecutor``: Ctrl-C during its ``map`` could leave the interpreter
    waiting forever on its workers at exit (its manager thread died on a cancelled future,
    ``InvalidStateError``; one in about ten tries of a 60,000-file load here). A child
    pickles each chunk's results into a private temporary folder that this process reads
    back and deletes; a chunk that raised in a child, or that a dead child left undone, is
    done again here, so its error is raised in order."""
    workers = min(worker_count(), -(-len(items) // chunk))
    where = [0]
    if workers <= 1 or len(items) < 2 * chunk:
        stop_reading = start_read_ahead(read_ahead or (), where, lead=chunk)
        try:
            out = []
            for i, x in enumerate(items):
                where[0] = i
                out.append(fn(x))
            return out
        finally:
            stop_reading()
    import pickle
    import shutil
    import tempfile

    starts = range(0, len(items), chunk)
    parts: list[list | None] = [None] * len(starts)
    folder = tempfile.mkdtemp(prefix="modelgate-map-")  # 0700: only this user reads it

    def run(c: int) -> list:
        return [fn(x) for x in items[starts[c]:starts[c] + chunk]]

    def share(k: int) -> None:
        for c in range(k, len(starts), workers):
            if k == 0:
                where[0] = starts[c]
            try:
                part = run(c)
            except Exception:  # noqa: BLE001 - done again below, raised in order
                continue
            if k == 0:
                parts[c] = part
                continue
            name = os.path.join(folder, str(c))
            with open(name + ".part", "wb") as f:
                pickle.dump(part, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.rename(name + ".part", name)

    try:
        # The children's chunks lie at most ``workers`` chunks past this process's.
        with_children(workers, share, lambda: start_read_ahead(
            read_ahead or (), where, lead=2 * workers * chunk))
        results: list = []
        for c in range(len(starts)):
            part: list | None = parts[c]
            parts[c] = None
            if part is None:
                name = os.path.join(folder, str(c))
                if os.path.exists(name):
                    with open(name, "rb") as done:
                        part = pickle.load(done)  # written by a child of this call
                else:
                    part = run(c)  # raised in a child, or left by a dead one
            results += part
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def no_read_ahead() -> None:
    """What ``start_read_ahead`` returns when it starts nothing: a stop that does nothing."""


def in_page_cache(paths: Sequence[str | Path], samples: int = 8) -> bool:
    """Whether the first byte of a few files spread over ``paths`` is in the OS page cache
    (a read that may not wait, ``RWF_NOWAIT``); True where that cannot be asked."""
    if not hasattr(os, "RWF_NOWAIT"):
        return True
    probe = bytearray(1)
    for path in paths[:: max(1, len(paths) // samples)]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # the decoder names it
        try:
            os.preadv(fd, [probe], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True  # the flag is refused here (an older kernel, another file system)
        finally:
            os.close(fd)
    return True


def start_read_ahead(paths: Sequence[str | Path], where: list[int], *,
                     lead: int) -> Callable[[], None]:
    """Ask the kernel to read ``paths`` into the page cache ahead of the decoders
    (``posix_fadvise(WILLNEED)``, in order, from a thread, at most ``lead`` files past
    ``where[0]`` so a dataset larger than memory is not read twice), unless the files are
    cached already. Returns the function that stops it.

    A file read on demand waits for the disk each time; told of the files ahead, the
    kernel reads many at once: CIFAR-10's 60,000 JPEGs with the page cache emptied took
    5.7 s to read one after another and 1.9 s after a WILLNEED pass
    (``benchmarks/bench_from_folder.py --cold-files``)."""
    import threading

    if not hasattr(os, "posix_fadvise") or in_page_cache(paths):
        return no_read_ahead
    stop = threading.Event()

    def advise() -> None:
        for i, path in enumerate(paths):
            while i > where[0] + lead:
                if stop.wait(0.005):
                    return
            if stop.is_set():
                return
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # the decoder names it
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass  # advice only
            finally:
                os.close(fd)

    thread = threading.Thread(target=advise, name="modelgate-read-ahead", daemon=True)
    thread.start()

    def stop_reading() -> None:
        stop.set()
        thread.join()

    return stop_reading
