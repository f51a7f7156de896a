from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_modelgate.baseline import (
    Tolerance,
    baseline_entry,
    compare,
    format_regressions,
    load_baseline,
    parse_tolerance,
    save_baseline,
)
from pytest_modelgate.errors import BaselineError
from pytest_modelgate.specs import INCONCLUSIVE


def metric(name, value, higher=True, n=100):
    return {"name": name, "value": value, "higher_is_better": higher, "n": n}


def test_parse_tolerance():
    assert parse_tolerance("0.05").for_metric("recall[cat]") == (0.05, False)
    # A bare number leaves speedup's relative default alone.
    assert parse_tolerance("0.05").for_metric("speedup") == (0.5, True)
    tol = parse_tolerance("recall=0.01, speedup=20%")
    assert tol.for_metric("recall[macro]") == (0.01, False)
    assert tol.for_metric("speedup") == (pytest.approx(0.2), True)
    assert tol.for_metric("accuracy") == (0.02, False)
    # A count has no upper bound: its absolute tolerance may exceed 1.
    assert parse_tolerance("leaked_pairs=3").for_metric("leaked_pairs") == (3.0, False)
    assert parse_tolerance("1").for_metric("accuracy") == (1.0, False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("abc", "'abc' is not a number"),
        ("recal=0.1", "unknown metric 'recal' in tolerance \\(did you mean 'recall'\\?\\)"),
        ("-0.1", "cannot be negative"),
        ("10%", "a bare tolerance is absolute"),
        # Each of these used to be accepted, and each let a degraded run pass.
        ("nan", r"tolerance: 'nan' is not a finite number \(read from 'nan'\); a tolerance of "
                "nan or inf would disable the regression check; expected a finite number"),
        ("inf", "'inf' is not a finite number"),
        ("recall=nan", "recall: 'nan' is not a finite number"),
        ("0,05", r"tolerance '0,05' holds 2 bare numbers \['0', '05'\].*if '0,05' means "
                 r"0\.05, write a decimal point"),
        ("recall=0,05", r"recall=0,05 reads as recall=0 and a bare 05; write a decimal point: "
                        r"recall=0\.05"),
        ("1.5", r"'1.5' is above 1, wider than the whole range of a 0-1 metric"),
        ("accuracy=2", r"accuracy: '2' is above 1"),
        ("accuracy=0.01,accuracy=0.5", "names accuracy twice; give each metric one amount"),
        ("0.01,0.5", r"holds 2 bare numbers \['0.01', '0.5'\]: give one for every metric"),
        ("speedup=150%", "relative tolerance of a higher-is-better metric is at most 100%"),
        ("", "tolerance '' is empty"),
        ("recall=0.01,,", "has an empty entry"),
        ("recall[defect]{camera=B}=0.3", r"a tolerance names a metric, and covers its every "
                                         r"class, average and slice; write recall=<amount>"),
    ],
)
def test_bad_tolerances(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tolerance(spec)


def entry(*metrics):
    return baseline_entry({"metrics": list(metrics)})


def test_compare_orients_by_direction():
    base = {"metrics": {"accuracy": {"value": 0.90}, "leaked_pairs": {"value": 0},
                        "speedup": {"value": 4.0}}}
    tol = parse_tolerance("speedup=50%")
    ok = [metric("accuracy", 0.885), metric("leaked_pairs", 0, higher=False),
          metric("speedup", 2.1)]
    assert compare(ok, base, tol) == []
    bad = [metric("accuracy", 0.87), metric("leaked_pairs", 1, higher=False),
           metric("speedup", 1.9), metric("recall[new]", 0.1)]
    # Timing ratios are only compared when a tolerance names them.
    assert [r.name for r in compare(bad, base, Tolerance())] == ["accuracy", "leaked_pairs"]
    regs = compare(bad, base, tol)
    assert [(r.name, r.allowed) for r in regs] == [
        ("accuracy", pytest.approx(0.88)), ("leaked_pairs", 0), ("speedup", 2.0)]
    text = format_regressions(regs, __import__("pathlib").Path("modelgate-baseline.json"))
    assert "3 metrics regressed beyond tolerance" in text
    assert "accuracy         0.9000     0.8700  >= 0.8800" in text
    assert "leaked_pairs          0          1  <= 0" in text
    assert regs[1].change() == "leaked_pairs 0 -> 1"  # the verdict reason's wording
    assert text.endswith("raise --modelgate-tolerance.")
    assert "--modelgate-update-baseline" in text


def test_a_lower_bound_is_stored_as_one_and_never_regresses_for_moving():
    """A race stopped at its verdict gives a lower bound (the true speedup is larger): it
    passes at or above the allowed value, decides nothing below it, and a measured value
    against a bound baseline is held to the bound."""
    bound = dict(metric("speedup", 2.311625), lower_bound=True)
    entry = baseline_entry({"metrics": [bound]})
    assert entry["metrics"]["speedup"]["lower_bound"] is True
    measured = baseline_entry({"metrics": [metric("speedup", 2.53)]})
    assert "lower_bound" not in measured["metrics"]["speedup"]  # old files read the same

    tol = parse_tolerance("speedup=5%")
    # A bound against a bound: 2.53 then 2.31 moved with the machine's timing, no more.
    assert compare([bound], {"metrics": {"speedup": {"value": 2.53, "lower_bound": True}}},
                   tol) == []
    # A bound below a measured baseline's allowed value says nothing about the true figure.
    assert compare([bound], {"metrics": {"speedup": {"value": 6.0}}}, tol) == []
    # A measurement below a bound baseline's allowed value is below the true one's too.
    (reg,) = compare([metric("speedup", 1.5)],
                     {"metrics": {"speedup": {"value": 2.53, "lower_bound": True}}}, tol)
    assert reg.name == "speedup" and reg.baseline_lower_bound and not reg.current_lower_bound
    text = format_regressions([reg], __import__("pathlib").Path("modelgate-baseline.json"))
    assert "speedup    >2.5300     1.5000  >= 2.4035" in text
    assert reg.change() == "speedup >2.530 -> 1.500"


def test_save_and_load_round_trip_merges_and_sorts(tmp_path):
    path = tmp_path / "sub" / "modelgate-baseline.json"
    save_baseline(path, {"t.py::b": entry(metric("recall[x]", 0.5)),
                         "t.py::a": entry(metric("accuracy", 0.7))})
    text = path.read_text()
    doc = json.loads(text)
    assert doc["schema"] == "pytest-modelgate-baseline" and doc["version"] == 3
    assert "python" in doc["environment"] and doc["provenance"]["written"]
    assert text.index('"t.py::a"') < text.index('"t.py::b"')
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)
    save_baseline(path, {"t.py::a": entry(metric("accuracy", 0.8))},
                  previous=load_baseline(path))
    tests = load_baseline(path)
    assert tests["t.py::a"]["metrics"]["accuracy"]["value"] == 0.8
    assert tests["t.py::b"]["metrics"]["recall[x]"]["value"] == 0.5   # kept: not run this time
    assert [p.name for p in path.parent.iterdir()] == ["modelgate-baseline.json"]


def test_missing_baseline_is_none(tmp_path):
    assert load_baseline(tmp_path / "nope.json") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not readable JSON"),
        ('{"hello": 1}', "is not a pytest-modelgate baseline"),
        ('{"schema": "pytest-modelgate-baseline", "version": 99, "tests": {}}',
         "schema version 99"),
        ('{"schema": "pytest-modelgate-baseline", "version": 1, "tests": {"a": {"m": 1}}}',
         "malformed 'tests' table"),
        ('{"schema": "pytest-modelgate-baseline", "version": 2, "tests": {"a": {"m": {}}}}',
         "malformed 'tests' table"),
    ],
)
def test_corrupt_or_foreign_baselines(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message):
        load_baseline(path)
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    if "not a pytest-modelgate baseline" in message:
        # A foreign file is never overwritten: the advice is another path.
        assert not info.value.replaceable
        assert "never overwritten; point --modelgate-baseline" in str(info.value)
    else:
        assert info.value.replaceable
        assert (f"restore it from version control (git checkout -- {path}), or replace it "
                "with this run's metrics: --modelgate-update-baseline") in str(info.value)


def test_a_version_1_baseline_is_read_without_samples(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"schema": "pytest-modelgate-baseline", "version": 1,
                                "tests": {"t.py::a": {"accuracy": {"value": 0.9, "n": 50}}}}))
    tests = load_baseline(path)
    assert tests == {"t.py::a": {"metrics": {"accuracy": {"value": 0.9, "n": 50}},
                                 "samples": {}, "env": {}}}


def test_the_committed_example_baseline_is_small_and_paired():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "modelgate-baseline.json"
    assert path.stat().st_size < 100_000  # over 5 seeds, still reviewable in a pull request
    tests = load_baseline(path)
    head_only = tests["examples/test_digits.py::test_head_only_digit_classifier"]
    assert head_only["replicas"] == 5 and len(head_only["samples"]) == 5
    for packed in head_only["samples"].values():
        assert packed["n"] == 539 and packed["ids"] == "content"
    assert head_only["env"]["device"] == "cpu"
    for m in head_only["metrics"].values():
        assert m.get("samples") and len(m["seeds"]) == len(m["seed_samples"]) == 5


def test_counts_are_worded_in_the_singular_and_plural():
    base = {"metrics": {"accuracy": {"value": 0.90}, "leaked_pairs": {"value": 0}}}
    path = __import__("pathlib").Path("b.json")
    one = format_regressions(compare([metric("accuracy", 0.8)], base, Tolerance()), path)
    assert one.startswith("1 metric regressed beyond tolerance against baseline b.json")
    two = format_regressions(compare([metric("accuracy", 0.8),
                                      metric("leaked_pairs", 3, higher=False)], base,
                                     Tolerance()), path)
    assert two.startswith("2 metrics regressed beyond tolerance")
    # A count shows as one: 3 leaked pairs, not 3.0000.
    assert "leaked_pairs          0          3  <= 0\n" in two + "\n"


# --- baselines over several seeds (--modelgate-baseline-seeds) --------------------------

def seeded(name, value, key=None, **extra):
    return dict(metric(name, value, n=10), samples=key, interval=[value - 0.1, value],
                **extra)


def packed(tag):
    return {"test_hash": "h", "n": 10, "classes": ["a", "b"], "y_pred": tag}


SEEDED_RECORD = {
    "metrics": [seeded("accuracy", 0.90, "k0"), seeded("recall[b]", 0.80, "k0"),
                dict(metric("speedup", 3.0), lower_bound=False)],
    "samples": {"k0": packed("0"), "unused": packed("u")},
    "replicas": [
        {"offset": 1, "metrics": [seeded("accuracy", 0.80, "k1"), seeded("recall[b]", 0.70, "k1"),
                                  dict(metric("speedup", 2.0), lower_bound=True)],
         "samples": {"k1": packed("1")}},
        # Failed after its accuracy gate: no recall, no speedup.
        {"offset": 2, "metrics": [seeded("accuracy", 0.85, "k0")], "samples": {"k0": packed("0")},
         "error": "recall[b] = 0.6 < 0.7 required"},
    ],
}


def test_an_entry_over_seeds_keeps_the_mean_each_seeds_value_and_predictions():
    entry = baseline_entry(SEEDED_RECORD, {"device": "cpu"})
    assert entry["replicas"] == 3
    acc = entry["metrics"]["accuracy"]
    assert acc["value"] == pytest.approx(0.85)  # the mean over the seeds
    assert acc["seeds"] == [0.90, 0.80, 0.85]  # replica order
    assert acc["seed_samples"] == ["k0", "k1", "k0"]
    # The test's own run's predictions, n and interval.
    assert acc["samples"] == "k0" and acc["n"] == 10 and acc["interval"] == [0.8, 0.9]
    recall = entry["metrics"]["recall[b]"]  # two seeds recorded it
    assert recall["value"] == pytest.approx(0.75) and recall["seeds"] == [0.80, 0.70]
    speedup = entry["metrics"]["speedup"]  # a bound in one seed: the mean is a bound
    assert speedup["seeds"] == [3.0, 2.0] and speedup["lower_bound"] is True
    assert "seed_samples" not in speedup  # no predictions behind it
    assert entry["samples"] == {"k0": packed("0"), "k1": packed("1")}
    assert entry["env"] == {"device": "cpu"}
    json.dumps(entry)


def test_an_entry_with_one_seed_is_as_it_always_was():
    plain = dict(SEEDED_RECORD, replicas=[])
    entry = baseline_entry(plain)
    assert set(entry) == {"metrics", "samples", "env"}
    assert entry == baseline_entry({k: v for k, v in SEEDED_RECORD.items() if k != "replicas"})
    assert entry["metrics"]["accuracy"] == {"value": 0.9, "higher_is_better": True, "n": 10,
                                            "interval": [0.8, 0.9], "confidence": 0.95,
                                            "samples": "k0"}
    # A metric only the test's own run recorded has no seeds either.
    only = baseline_entry({"metrics": [seeded("accuracy", 0.9, "k0"), metric("mcc", 0.5)],
                           "samples": {"k0": packed("0")},
                           "replicas": [{"metrics": [seeded("accuracy", 0.8, "k0")]}]})
    assert "seeds" not in only["metrics"]["mcc"] and only["metrics"]["mcc"]["value"] == 0.5
    assert only["metrics"]["accuracy"]["seeds"] == [0.9, 0.8]


def test_a_baseline_over_seeds_round_trips(tmp_path):
    path = tmp_path / "b.json"
    save_baseline(path, {"t.py::a": baseline_entry(SEEDED_RECORD)})
    assert json.loads(path.read_text())["version"] == 3
    tests = load_baseline(path)
    assert tests["t.py::a"]["metrics"]["accuracy"]["seeds"] == [0.9, 0.8, 0.85]
    assert tests["t.py::a"]["replicas"] == 3


def test_a_version_2_baseline_still_reads_as_one_seed(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("""{
  "environment": {"python": "3.11.9"},
  "provenance": {"by": "pytest --modelgate-update-baseline",
                 "written": "2025-01-01T00:00:00+00:00"},
  "schema": "pytest-modelgate-baseline",
  "tests": {
    "t.py::a": {
      "env": {"device": "cpu", "torch": "2"},
      "metrics": {
        "accuracy": {"confidence": 0.95, "higher_is_better": true, "interval": [0.8, 0.95],
                     "n": 40, "samples": "0123456789ab", "value": 0.9}
      },
      "samples": {
        "0123456789ab": {"classes": ["a", "b"], "correct": "AAAAAAA=", "ids": "positions",
                         "n": 40, "test_hash": "feedfacecafebeef", "y_pred": "", "y_true": ""}
      }
    }
  },
  "version": 2
}
""")
    (entry,) = load_baseline(path).values()
    assert "replicas" not in entry
    from pytest_modelgate.baseline import seed_band, seed_values

    assert seed_values(entry["metrics"]["accuracy"]) == [0.9]
    assert seed_band(entry["metrics"]["accuracy"]) == (0.9, None, 1)


def _seeded_file(path, entry_edit=None, metric_edit=None):
    entry = baseline_entry(SEEDED_RECORD)
    if entry_edit:
        entry.update(entry_edit)
    if metric_edit:
        entry["metrics"]["accuracy"].update(metric_edit)
    path.write_text(json.dumps({"schema": "pytest-modelgate-baseline", "version": 3,
                                "tests": {"t.py::a": entry}}))


@pytest.mark.parametrize(("entry_edit", "metric_edit", "message"), [
    (None, {"seeds": "0.9,0.8"}, "t.py::a: accuracy's 'seeds' is not a list of two or more "
                                 "numbers"),
    (None, {"seeds": [0.9, "0.8", 0.85]}, "accuracy's 'seeds' is not a list"),
    (None, {"seeds": [0.9, True, 0.85]}, "accuracy's 'seeds' is not a list"),
    (None, {"seeds": [0.9]}, "accuracy's 'seeds' is not a list of two or more"),
    (None, {"seeds": [0.9, float("nan")]}, "accuracy's 'seeds' is not a list"),
    (None, {"seed_samples": ["k0", "k1"]}, "accuracy's 'seed_samples' does not name one of "
                                           "the entry's samples per seed"),
    (None, {"seed_samples": ["k0", "k1", "gone"]}, "accuracy's 'seed_samples' does not"),
    (None, {"seed_samples": "k0"}, "accuracy's 'seed_samples' does not"),
    ({"replicas": "3"}, None, "t.py::a: 'replicas' is '3', not a number of seeds"),
    ({"replicas": 0}, None, "'replicas' is 0, not a number of seeds"),
])
def test_malformed_seed_fields_are_a_baseline_error_not_a_crash(tmp_path, entry_edit,
                                                                 metric_edit, message):
    path = tmp_path / "b.json"
    _seeded_file(path, entry_edit, metric_edit)
    with pytest.raises(BaselineError, match=r"malformed 'tests' table \(.*") as info:
        load_baseline(path)
    assert message in str(info.value)
    assert info.value.replaceable and "--modelgate-update-baseline" in str(info.value)


def test_a_seed_samples_list_without_seeds_is_malformed(tmp_path):
    path = tmp_path / "b.json"
    _seeded_file(path, metric_edit={"seeds": None})
    with pytest.raises(BaselineError, match="accuracy's 'seed_samples' does not name"):
        load_baseline(path)


def test_a_regression_against_seeds_shows_the_band():
    from pathlib import Path

    from pytest_modelgate.baseline import Regression

    over = Regression("accuracy", 0.952, 0.931, 0.932, seeds=5, seed_sd=0.0061)
    assert over.change() == "accuracy 0.931, baseline 0.952 ± 0.006 over 5 seeds"
    one = Regression("accuracy", 0.952, 0.931, 0.932)
    assert one.change() == "accuracy 0.952 -> 0.931"  # one seed: as before
    count = Regression("leaked_pairs", 1.0, 4.0, 1.0, seeds=3, seed_sd=0.5)
    assert count.change() == "leaked_pairs 4, baseline 1 ± 0.5 over 3 seeds"

    text = format_regressions([over, one], Path("b.json"))
    assert text.splitlines()[1:5] == [
        "  metric           baseline    current    allowed",
        "  accuracy  0.9520 ± 0.0061     0.9310  >= 0.9320",
        "  accuracy           0.9520     0.9310  >= 0.9320",
        "  baseline: mean ± standard deviation over 5 seeds",
    ]
    # Without seeds, the table is as it was.
    assert format_regressions([one], Path("b.json")).splitlines()[1:3] == [
        "  metric     baseline    current    allowed",
        "  accuracy     0.9520     0.9310  >= 0.9320",
    ]


def test_an_inconclusive_drop_that_fails_says_how_to_pass():
    from pathlib import Path

    from pytest_modelgate.baseline import Regression
    from pytest_modelgate.specs import INCONCLUSIVE

    drop = Regression("accuracy", 0.95, 0.92, 0.93, verdict=INCONCLUSIVE, p=0.2, level=0.05)
    warned = format_regressions([drop], Path("b.json"))
    assert warned.splitlines()[-1].startswith("Not a red build")
    failed = format_regressions([drop], Path("b.json"), inconclusive_fails=True)
    assert "not significantly (inconclusive)" in failed.splitlines()[0]
    assert failed.splitlines()[-1] == (
        "This fails the test (--modelgate-inconclusive=fail): the test set is too small to "
        "show this drop exceeds the tolerance. Add test images, or let such drops warn: "
        "--modelgate-inconclusive=warn.")


def test_compare_fills_the_seed_band_of_a_baseline_over_seeds():
    base = {"metrics": {"accuracy": {"value": 0.95, "seeds": [0.94, 0.95, 0.96], "n": 100,
                                     "higher_is_better": True}}}
    (reg,) = compare([metric("accuracy", 0.5)], base, Tolerance())
    assert reg.seeds == 3 and reg.seed_sd == pytest.approx(0.01)


def _seeded(values, keys):
    return {"metrics": {"accuracy": {"value": sum(values) / len(values), "seeds": values,
                                     "seed_samples": keys, "samples": keys[0], "n": 50,
                                     "higher_is_better": True}}}


def test_the_baselines_own_seed_unchanged_is_no_drop():
    """The comparison run trains the baseline's first seed: unchanged, its predictions are
    that seed's (the same samples key), and it passes even where that seed sits more than
    the tolerance below the seeds' mean."""
    base = _seeded([0.90, 0.95, 0.96], ["k0", "k1", "k2"])
    same = dict(metric("accuracy", 0.90), samples="k0")
    assert compare([same], base, Tolerance(), alpha=0.05) == []
    moved = dict(metric("accuracy", 0.90), samples="other")
    assert [r.name for r in compare([moved], base, Tolerance(), alpha=0.05)] == ["accuracy"]


def test_an_inconclusive_drop_against_seeds_asks_for_seeds_not_only_images():
    base = _seeded([0.90, 0.95, 0.96], ["k0", "k1", "k2"])
    found = compare([metric("accuracy", 0.905)], base, Tolerance(), alpha=0.05)
    assert [r.verdict for r in found] == [INCONCLUSIVE]
    text = format_regressions(found, Path("b.json"))
    assert text.endswith("Not a red build: the baseline's seeds vary about as much as this "
                         "drop, so it may be retraining noise. More seeds "
                         "(--modelgate-update-baseline --modelgate-baseline-seeds) or test "
                         "images would settle it.")
    failing = format_regressions(found, Path("b.json"), inconclusive_fails=True)
    assert "This fails the test (--modelgate-inconclusive=fail): the baseline's seeds" in failing
