"""Splitting a gate suite over CI runners (``--modelgate-shard=K/N``), and what the merge
step checks of the shards it is given.

Pure: no pytest, no heavy imports. The plugin hands ``partition`` the test ids it collected
and the durations the last merge recorded in the run cache; ``durations_from`` turns a
merged run into that file's content; ``check_shards`` says what is wrong with a set of
shards (missing, doubled, interrupted) before a verdict is drawn from them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median
from typing import Any

DURATIONS_FILE = "durations.json"  # at the run cache's root, written by the merge
DURATIONS_FORMAT = 1
SHARD_FORMAT = 1  # of the "shard" section of modelgate.json
MAX_SHARDS = 1000  # more runners than that is a typo


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: str) -> Shard:
    """``"2/3"`` -> Shard(2, 3).

    Raises:
        ValueError: not K/N with 1 <= K <= N (the message says what was wrong).
    """
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value, re.ASCII)
    if not found:
        raise ValueError(f"{value!r} is not K/N, like 2/3 (this runner's shard, 1-based, "
                         "of N shards)")
    k, n = int(found[1]), int(found[2])
    if n < 1:
        raise ValueError(f"{value!r}: N, the number of shards, is at least 1")
    if n > MAX_SHARDS:
        raise ValueError(f"{value!r}: at most {MAX_SHARDS} shards")
    if not 1 <= k <= n:
        raise ValueError(f"{value!r}: the shard must be 1 to {n} of {n} "
                         "(1-based, like 1/3, 2/3, 3/3)")
    return Shard(k, n)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class _Groups:
    """Union-find over test ids."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.parent = {i: i for i in ids}

    def find(self, i: str) -> str:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def read_durations(raw: bytes | None) -> dict[str, dict[str, Any]]:
    """The tests of a durations file (``{}`` when there is none or it is unreadable: the
    split is then by module, which is no error)."""
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
        tests = doc["tests"] if doc.get("format") == DURATIONS_FORMAT else {}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}
    if not isinstance(tests, dict):
        return {}
    # The file is not signed: anyone who can write the cache can write it. An entry that
    # is not what the merge writes is left out (that test then counts as unknown), so a
    # bad file can only unbalance the split, never stop it.
    return {k: {"seconds": v["seconds"], "runs": v["runs"]} for k, v in
            ((k, _entry(v)) for k, v in tests.items()) if v is not None}


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _entry(value: Any) -> dict[str, Any] | None:
    """A durations entry as the merge writes it, or None."""
    if not isinstance(value, dict) or _seconds(value.get("seconds")) is None:
        return None
    runs = value.get("runs", {})
    if not isinstance(runs, dict) or any(not isinstance(k, str) or _seconds(v) is None
                                         for k, v in runs.items()):
        return None
    return {"seconds": _seconds(value["seconds"]),
            "runs": {k: _seconds(v) for k, v in runs.items()}}


def partition(ids: list[str], shard: Shard, durations: dict[str, dict[str, Any]]
              ) -> tuple[list[str], str]:
    """The ids shard ``shard`` runs, in collection order, and a digest of the whole split
    (every shard that split the same ids on the same durations has the same digest, which
    the merge checks).

    Tests that used the same run last time (a run key in common in ``durations``) stay in
    one shard, so no run is trained on two runners; tests the durations do not know are kept
    with the other unknown tests of their module (tests of a module mostly share fixtures).
    Groups are placed heaviest first on the shard with the least work so far (ties: the
    lowest shard, then the first test id): deterministic, and within the largest group of
    the optimum (the longest-processing-time rule).

    A group's weight is its tests' seconds last time, plus the training seconds of each run
    no test of the group trained (loaded from the cache then, trained if the cache is cold).
    """
    groups = _Groups(ids)
    by_key: dict[str, str] = {}
    by_module: dict[str, str] = {}
    for i in ids:
        known = durations.get(i)
        if known is None:
            first = by_module.setdefault(_module(i), i)
            groups.join(first, i)
            continue
        for key in known.get("runs") or {}:
            groups.join(by_key.setdefault(key, i), i)
    known_seconds = [float(d.get("seconds", 0.0)) for i, d in durations.items()]
    default = median(known_seconds) if known_seconds else 1.0

    members: dict[str, list[str]] = {}
    for i in ids:
        members.setdefault(groups.find(i), []).append(i)
    weighted = []
    for root, tests in members.items():
        seconds = 0.0
        extra: dict[str, float] = {}
        for t in tests:
            known = durations.get(t)
            if known is None:
                seconds += default
                continue
            seconds += float(known.get("seconds", 0.0))
            for key, cold in (known.get("runs") or {}).items():
                extra[key] = min(extra.get(key, float(cold)), float(cold))
        weighted.append((seconds + sum(extra.values()), root, tests))
    weighted.sort(key=lambda w: (-w[0], w[1]))
    loads = [0.0] * shard.count
    owner: dict[str, int] = {}
    for weight, _, tests in weighted:
        target = min(range(shard.count), key=lambda s: (loads[s], s))
        loads[target] += weight
        for t in tests:
            owner[t] = target + 1
    digest = hashlib.sha256(json.dumps([shard.count, [owner[i] for i in ids], ids])
                            .encode()).hexdigest()[:16]
    return [i for i in ids if owner[i] == shard.index], digest


def durations_from(results: dict[str, dict[str, Any]], tests: list[dict[str, Any]],
                   written: str) -> bytes:
    """The durations file for the next split: each test's seconds (all phases) and, per
    run it used, the training seconds to add when no test of its group trains it (0 for a
    run it trained itself: that time is in its seconds already).

    ``results``: every test's ``outcome`` and ``duration`` by id; ``tests``: the gate tests'
    payloads (their ``record["runs"]`` carry ``cache_key``, ``cached`` and ``seconds``).
    """
    runs: dict[str, dict[str, float]] = {}
    for t in tests:
        for run in ((t.get("record") or {}).get("runs") or {}).values():
            key = run.get("cache_key")
            if not key:
                continue
            cold = float(run.get("seconds", 0.0)) + float(run.get("setup_seconds", 0.0)) \
                if run.get("cached") else 0.0
            mine = runs.setdefault(t["nodeid"], {})
            mine[key] = round(min(mine.get(key, cold), cold), 3)
    doc = {"format": DURATIONS_FORMAT, "written": written,
           "tests": {nodeid: {"seconds": round(float(r.get("duration", 0.0)), 3),
                              "runs": runs.get(nodeid, {})}
                     for nodeid, r in sorted(results.items())}}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def identity_of(options: dict[str, Any]) -> dict[str, Any] | None:
    """Which shard of how many a session is, from the splitting options it was given:
    ``--modelgate-shard``, pytest-split's ``--splits/--group`` or pytest-shard's
    ``--num-shards/--shard-id`` (0-based there). None for a selection with none of them
    (``-k``): the merge cannot tell then whether a shard is missing."""
    mine = options.get("modelgate_shard")
    if mine is not None:
        return {"index": mine.index, "count": mine.count, "by": "--modelgate-shard"}
    if options.get("splits") and options.get("group"):
        return {"index": int(options["group"]), "count": int(options["splits"]),
                "by": "pytest-split"}
    if options.get("num_shards") and options.get("shard_id") is not None:
        return {"index": int(options["shard_id"]) + 1, "count": int(options["num_shards"]),
                "by": "pytest-shard"}
    return None


def check_shards(shards: list[tuple[str, dict[str, Any]]], expect: int | None = None
                 ) -> list[str]:
    """What stops a verdict from these shards (``(name, shard section)`` each), one line
    per problem: a shard interrupted or ended by an error, shards of different splits,
    shard numbers missing or doubled, a test that ran in two shards, tests of a
    ``--modelgate-shard`` suite that no shard ran. Empty: the shards make one run."""
    problems = []
    for name, s in shards:
        broken = s.get("collection_errors") or []
        if broken:
            problems.append(f"{name} could not collect {', '.join(broken[:5])}"
                            f"{', ...' if len(broken) > 5 else ''}: its tests there never ran")
        if s.get("interrupted") and not broken:
            left = s.get("not_run") or []
            problems.append(f"{name} was interrupted" + (
                f": {len(left)} test(s) did not run or finish ({', '.join(left[:5])}"
                f"{', ...' if len(left) > 5 else ''})" if left else ""))
        elif int(s.get("exitstatus", 0)) not in (0, 1, 5):
            problems.append(f"{name} ended with pytest exit status {s.get('exitstatus')} "
                            "(an internal or usage error): its results are not whole")
    ids = [(name, s.get("identity")) for name, s in shards]
    declared = [(name, i) for name, i in ids if i]
    if declared and len(declared) < len(ids):
        bare = [name for name, i in ids if not i]
        problems.append(f"{', '.join(bare)} say(s) no shard number, unlike "
                        f"{declared[0][0]} ({declared[0][1]['by']}): merge the shards of one "
                        "split")
    counts = {i["count"] for _, i in declared}
    if len(counts) > 1:
        problems.append("the shards are of different splits: "
                        + ", ".join(f"{n} is {i['index']}/{i['count']}" for n, i in declared))
    recorded = counts.pop() if len(counts) == 1 else None
    if expect and recorded and expect != recorded:
        problems.append(f"--expect {expect}, but the shards say they are of {recorded} "
                        f"({declared[0][1]['by']})")
    total = recorded or expect
    if declared and total:
        seen: dict[int, str] = {}
        for name, i in declared:
            if i["index"] in seen:
                problems.append(f"shard {i['index']}/{i['count']} is given twice: "
                                f"{seen[i['index']]} and {name}")
            seen.setdefault(i["index"], name)
        missing = [k for k in range(1, total + 1) if k not in seen]
        if missing:
            problems.append(f"shard(s) {', '.join(f'{k}/{total}' for k in missing)} missing: "
                            "every shard's report folder (or modelgate.json) must be given; "
                            "a shard that did not finish wrote none")
    elif expect and len(shards) != expect:
        problems.append(f"{len(shards)} shard(s) given, {expect} expected (--expect)")
    owners: dict[str, str] = {}
    for name, s in shards:
        for nodeid in s.get("selected") or []:
            if nodeid in owners:
                problems.append(f"{nodeid} ran in two shards ({owners[nodeid]} and {name}): "
                                "the shards' selections overlap")
            owners.setdefault(nodeid, name)
    suites = {json.dumps(s["suite"]) for _, s in shards if s.get("suite") is not None}
    digests = {s.get("partition") for _, s in shards if s.get("partition")}
    if len(suites) > 1:
        problems.append("the --modelgate-shard shards collected different tests (other "
                        "arguments or another commit): run every shard with the same "
                        "arguments on the same commit")
    elif len(digests) > 1:
        problems.append("the --modelgate-shard shards split the suite differently: the "
                        "run cache's durations.json changed between them, a shard ran with "
                        "other cache options or could not read the cache, or a report is "
                        "left from an earlier run; rerun the shards")
    elif suites and not problems:
        unrun = [i for i in json.loads(suites.pop()) if i not in owners]
        if unrun:
            problems.append(f"{len(unrun)} test(s) of the suite ran in no shard: "
                            f"{', '.join(unrun[:5])}{', ...' if len(unrun) > 5 else ''}")
    return problems
