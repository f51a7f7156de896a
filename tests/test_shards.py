"""The split of --modelgate-shard and the merge's checks of a set of shards (pure logic)."""

from __future__ import annotations

import json

import pytest

from pytest_modelgate.shards import (
    Shard,
    check_shards,
    durations_from,
    identity_of,
    parse_shard,
    partition,
    read_durations,
)

IDS = [f"tests/test_{m}.py::test_{i}" for m in "abcd" for i in range(5)]


def _split(ids, n, durations):
    parts = [partition(ids, Shard(k, n), durations) for k in range(1, n + 1)]
    return [p[0] for p in parts], {p[1] for p in parts}


def test_every_test_runs_in_exactly_one_shard_and_every_shard_agrees_on_the_split():
    durations = {i: {"seconds": float(len(i) % 7), "runs": {}} for i in IDS}
    shards, digests = _split(IDS, 3, durations)
    assert sorted(sum(shards, [])) == sorted(IDS)
    assert len(digests) == 1  # the merge checks this digest across shards
    assert all(s == [i for i in IDS if i in s] for s in shards)  # collection order kept
    assert _split(IDS, 3, durations)[0] == shards  # deterministic


def test_tests_that_used_one_run_stay_together_and_the_load_is_balanced():
    durations = {i: {"seconds": 1.0, "runs": {}} for i in IDS}
    # Four tests judged one 60-second run (one trained it, three loaded it last time).
    shared = IDS[0:2] + IDS[7:9]
    for k, i in enumerate(shared):
        durations[i] = {"seconds": 20.0 if k == 0 else 0.5, "runs": {"key1": 0.0 if k == 0
                                                                      else 60.0}}
    shards, _ = _split(IDS, 3, durations)
    holder = [s for s in shards if shared[0] in s]
    assert len(holder) == 1 and all(i in holder[0] for i in shared)
    loads = []
    for s in shards:
        loads.append(sum(durations[i]["seconds"] for i in s))
    # The 21.5 s group alone on its shard; the 16 one-second tests split 8 and 8.
    assert sorted(loads) == [8.0, 8.0, 21.5]


def test_the_runs_no_test_of_a_group_trained_count_as_training_in_its_weight():
    # Two groups of equal test seconds; A's run was loaded (60 s to train cold), B's
    # trained within its test's seconds: A is the heavier group and goes first, to shard 1.
    durations = {"t.py::a": {"seconds": 1.0, "runs": {"ka": 60.0}},
                 "t.py::b": {"seconds": 1.0, "runs": {"kb": 0.0}}}
    first, _ = partition(["t.py::b", "t.py::a"], Shard(1, 2), durations)
    assert first == ["t.py::a"]


def test_without_durations_the_tests_of_a_module_stay_together():
    shards, _ = _split(IDS, 4, {})
    assert sorted(tuple(s) for s in shards) == sorted(
        tuple(i for i in IDS if f"test_{m}.py" in i) for m in "abcd")
    shards, _ = _split(IDS, 6, {})
    assert sum(1 for s in shards if not s) == 2  # fewer modules than shards


def test_durations_written_by_the_merge_read_back():
    tests = [{"nodeid": "t.py::a", "record": {"runs": {"r": {
        "cache_key": "k1", "cached": True, "seconds": 30.0, "setup_seconds": 2.0}}}},
        {"nodeid": "t.py::b", "record": {"runs": {"r": {
            "cache_key": "k1", "cached": False, "seconds": 30.0, "setup_seconds": 2.0}}}}]
    results = {"t.py::a": {"duration": 1.5}, "t.py::b": {"duration": 33.0},
               "t.py::plain": {"duration": 0.01}}
    raw = durations_from(results, tests, "2026-12-05T00:00:00+00:00")
    got = read_durations(raw)
    assert got["t.py::a"] == {"seconds": 1.5, "runs": {"k1": 32.0}}
    assert got["t.py::b"] == {"seconds": 33.0, "runs": {"k1": 0.0}}
    assert got["t.py::plain"] == {"seconds": 0.01, "runs": {}}
    assert read_durations(b"{not json") == {} and read_durations(None) == {}
    # Unsigned, so anyone who can write the cache can write it: entries unlike the merge's
    # are left out (those tests count as unknown), never a crash of every runner.
    bad = {"format": 1, "tests": {
        "t.py::a": {"seconds": "x", "runs": {}}, "t.py::b": {"seconds": None},
        "t.py::c": {"seconds": 1.0, "runs": [1, 2]}, "t.py::d": {"seconds": 1, "runs": {
            "k": "slow"}}, "t.py::e": {"seconds": -1}, "t.py::f": [1],
        "t.py::g": {"seconds": 2, "runs": {"k": 3}}}}
    assert read_durations(json.dumps(bad).encode()) == {"t.py::g": {"seconds": 2.0,
                                                                    "runs": {"k": 3.0}}}
    assert read_durations(b'{"format": 1, "tests": [1]}') == {}
    assert read_durations(json.dumps({"format": 99, "tests": {}}).encode()) == {}


@pytest.mark.parametrize(("value", "message"), [
    ("2", "is not K/N, like 2/3"), ("a/3", "is not K/N"), ("0/3", "must be 1 to 3 of 3"),
    ("4/3", "must be 1 to 3 of 3"), ("1/0", "N, the number of shards, is at least 1"),
    ("3/0", "N, the number of shards, is at least 1"), ("-1/3", "is not K/N"),
    ("\u0662/\u0663", "is not K/N"), ("1/10000000", "at most 1000 shards"),
])
def test_bad_shard_values_say_what_is_expected(value, message):
    with pytest.raises(ValueError, match=message):
        parse_shard(value)
    assert parse_shard(" 2/3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


def test_identity_from_each_splitting_plugin():
    assert identity_of({"modelgate_shard": Shard(2, 3)}) == {
        "index": 2, "count": 3, "by": "--modelgate-shard"}
    assert identity_of({"splits": 4, "group": 1}) == {"index": 1, "count": 4,
                                                      "by": "pytest-split"}
    assert identity_of({"num_shards": 2, "shard_id": 0}) == {"index": 1, "count": 2,
                                                             "by": "pytest-shard"}
    assert identity_of({"splits": None, "group": None}) is None


def _shard(k, n=3, **more):
    return (f"reports/shard-{k}", {"identity": {"index": k, "count": n, "by": "pytest-split"},
                                   "selected": [f"t.py::t{k}"], "exitstatus": 0, **more})


def test_a_whole_set_of_shards_has_no_problem():
    assert check_shards([_shard(1), _shard(2), _shard(3)]) == []


def test_missing_doubled_and_interrupted_shards_are_named():
    problems = check_shards([_shard(1), _shard(3, interrupted=True, not_run=["t.py::x"])])
    assert problems == [
        "reports/shard-3 was interrupted: 1 test(s) did not run or finish (t.py::x)",
        "shard(s) 2/3 missing: every shard's report folder (or modelgate.json) must be "
        "given; a shard that did not finish wrote none"]
    doubled = check_shards([_shard(1), _shard(2), _shard(2), _shard(3)])
    assert any("shard 2/3 is given twice" in p for p in doubled)
    assert any("t.py::t2 ran in two shards" in p for p in doubled)
    crashed = check_shards([_shard(1, n=1, exitstatus=3)])
    assert crashed == ["reports/shard-1 ended with pytest exit status 3 (an internal or "
                       "usage error): its results are not whole"]


def test_shards_of_different_splits_or_without_numbers():
    assert "different splits" in check_shards([_shard(1, n=2), _shard(2, n=3)])[0]
    bare = ("k-run", {"identity": None, "selected": ["t.py::z"], "exitstatus": 0})
    assert "say(s) no shard number" in check_shards([_shard(1, n=1), bare])[0]
    # -k shards carry no numbers: --expect is what catches a missing one.
    assert check_shards([bare], expect=2) == ["1 shard(s) given, 2 expected (--expect)"]
    assert check_shards([bare]) == []
    # --expect cannot hide a missing numbered shard: the shards' own count wins.
    two_of_three = [_shard(1), _shard(2)]
    assert check_shards(two_of_three, expect=2) == [
        "--expect 2, but the shards say they are of 3 (pytest-split)",
        "shard(s) 3/3 missing: every shard's report folder (or modelgate.json) must be "
        "given; a shard that did not finish wrote none"]


def test_a_shard_that_could_not_collect_a_module_is_named():
    broken = _shard(1, n=1, collection_errors=["t/test_bad.py"], interrupted=True)
    assert check_shards([broken]) == [
        "reports/shard-1 could not collect t/test_bad.py: its tests there never ran"]


def test_a_suite_test_no_shard_ran_is_named():
    suite = ["t.py::a", "t.py::b", "t.py::c"]
    ran = [("s1", {"identity": {"index": 1, "count": 2, "by": "--modelgate-shard"},
                   "selected": ["t.py::a"], "suite": suite, "partition": "d1"}),
           ("s2", {"identity": {"index": 2, "count": 2, "by": "--modelgate-shard"},
                   "selected": ["t.py::b"], "suite": suite, "partition": "d1"})]
    assert check_shards(ran) == ["1 test(s) of the suite ran in no shard: t.py::c"]
    ran[1][1]["partition"] = "d2"
    assert "split the suite differently" in check_shards(ran)[0]
