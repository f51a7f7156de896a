"""Seed replicas: a baseline written with ``--modelgate-baseline-seeds=K`` reruns each gate
test that trains with K - 1 more seeds, so the baseline knows how far its metrics move
between two trainings of the same recipe.

Pure: no pytest. The plugin reruns the test's function with ``GateContext.replica`` set,
the ``finetune`` fixture derives each run's seed with ``replica_seed``, and what a replica
recorded is cut down with ``replica_record`` for ``baseline.baseline_entry``.
"""

from __future__ import annotations

from typing import Any

from .errors import ModelGateError, user_error_frames

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


def replica_seed(seed: int, replica: int) -> int:
    """The seed a run trains with in seed replica ``replica``: ``seed + replica``.

    Replica 0 is the test's own run with its own seed: the run a plain ``--modelgate``
    session trains, so a baseline update shares it through the run cache. Replica r
    shifts the seed of every run of the test by r, a ``seed=`` given to ``finetune``
    included: the K replicas are K seeds of one recipe, and since the run cache keys on
    the seed, an unchanged update loads all K runs and trains none.

    Args:
        seed: the run's seed as resolved without replicas (the call's ``seed=``, the
            marker's, ``--modelgate-seed``, the ini key or 0).
        replica: 0 for the test's own run, 1 to K - 1 for the replicas.

    Example:
        >>> [replica_seed(7, r) for r in range(3)]
        [7, 8, 9]
    """
    for name, value, fix in (("seed", seed, "as --modelgate-seed takes"),
                             ("replica", replica, "(0 is the test's own run)")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelGateError(f"{name} must be a non-negative integer {fix}, got {value!r}")
    return seed + replica


def unseeded_runs(first: dict[str, Any], replica: dict[str, Any]) -> list[str]:
    """The runs a replica recorded that are replica 0's very runs (the same id and the same
    configuration, seed included): their ``finetune`` calls did not see the replica's seed,
    as when a fixture trained them before the test's call, which a replica does not rerun.
    """
    before = first.get("runs") or {}
    return sorted(rid for rid, run in (replica.get("runs") or {}).items()
                  if rid in before and run.get("config") == before[rid].get("config"))


def replica_record(record: dict[str, Any], offset: int, error: str | None = None
                   ) -> dict[str, Any]:
    """What the baseline keeps of one replica's record (JSON-ready): its metrics without
    their report details (curves, leaked pairs' thumbnails), the packed test predictions
    they were computed on, each run's seed, and ``error``, the first line of what stopped
    the replica (None when it ran through)."""
    metrics = [{k: v for k, v in m.items() if k != "detail"} for m in record.get("metrics", [])]
    used = {m.get("samples") for m in metrics}
    samples = {k: v for k, v in (record.get("samples") or {}).items() if k in used}
    runs = {rid: {"seed": (run.get("config") or {}).get("seed"),
                  "cached": bool(run.get("cached")), "seconds": run.get("seconds")}
            for rid, run in (record.get("runs") or {}).items()}
    return {"offset": offset, "metrics": metrics, "samples": samples, "runs": runs,
            "error": error}


def replica_failed(nodeid: str, offset: int, error: str) -> str:
    """The warning of a replica that raised: the baseline keeps what it recorded first."""
    return (f"{nodeid}: seed replica +{offset} (each run's seed + {offset}) failed: {error}; "
            "the baseline keeps what it recorded before the failure. A gate that fails "
            "under another seed of the same recipe sits inside seed noise: its threshold "
            "is closer to the model's figure than two trainings differ")


def runs_without_seeds(nodeid: str, runs: list[str], seeds: int) -> str:
    """The warning of a test whose runs did not take the replica seeds."""
    return (f"{nodeid}: recorded with one seed, not {seeds}: its run(s) {', '.join(runs)} "
            "did not take the replica seeds, because they were trained before the test "
            "function ran (in a fixture), and a replica reruns only the test function. "
            "Call finetune in the test body, or have the fixture return a function that "
            "the test calls, to record them over several seeds")
