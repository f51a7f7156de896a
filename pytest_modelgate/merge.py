"""``python -m pytest_modelgate merge SHARD... --out DIR``: the shards of a gate suite that
CI split over runners, turned into the one verdict a single machine would have given.

Each shard's ``modelgate.json`` keeps, besides its report, a ``shard`` section (see
``ModelGateSession.shard_section``): which shard it was, what it selected and ran, how it
ended, every test's result, the gate tests' records and the baseline entries they were
compared with. The merge checks the shards make one whole run (``shards.check_shards``),
then hands their records to a ``ModelGateSession`` as if one session had collected them,
which writes the HTML and JSON report and, with ``--update-baseline``, the baseline, by the
code a single session uses. It writes one JUnit XML file and prints the terminal summary.

Exit status, as pytest's for the same tests on one machine: 0 every test passed, 1 a test
failed (a gate failed, regressed, or was inconclusive under
``--modelgate-inconclusive=fail``), 5 no test ran; 2 (pytest's "interrupted") when the
shards do not make a whole run: one missing, interrupted or unreadable, a test run twice;
4 (a usage error) for arguments the merge cannot follow.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from .shards import DURATIONS_FILE, SHARD_FORMAT, check_shards, durations_from

OK, TESTS_FAILED, INCOMPLETE, USAGE, NO_TESTS = 0, 1, 2, 4, 5
REPORT_NAME = "modelgate.json"


class MergeError(Exception):
    """A shard that cannot be read: the message names it and says what to do."""


class _Parser(argparse.ArgumentParser):
    """argparse, exiting with pytest's usage-error status (4): 2 means an incomplete set of
    shards here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pytest_modelgate",
        description="One verdict from the shards of a gate suite split over CI runners.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="merge",
                                parser_class=_Parser)
    merge = sub.add_parser(
        "merge", help="merge the shards' reports into one report, JUnit file and exit status",
        description="Read each shard's modelgate.json (a shard's report folder, or the file "
                    "itself) and write one HTML report, one modelgate.json and one JUnit XML "
                    "file into --out; exit non-zero exactly when one machine running every "
                    "shard's tests would have.")
    merge.add_argument("shards", nargs="+", metavar="SHARD",
                       help="a shard's report folder (with modelgate.json) or its JSON file")
    merge.add_argument("--out", required=True, metavar="DIR",
                       help="where modelgate.html, modelgate.json and junit.xml go")
    merge.add_argument("--junitxml", metavar="PATH", default=None,
                       help="the JUnit XML file (default DIR/junit.xml)")
    merge.add_argument("--update-baseline", metavar="PATH", default=None,
                       help="write the baseline at PATH from the shards' records, as one "
                            "machine running every test with --modelgate-update-baseline "
                            "would (the shards must have run with it)")
    merge.add_argument("--expect", metavar="N", type=int, default=None,
                       help="the number of shards the split has: needed to catch a missing "
                            "shard when the shards were selected by -k (no shard numbers)")
    merge.add_argument("--cache", metavar="URL", default=None,
                       help="the shards' run cache, where the merge records each test's "
                            "duration for the next --modelgate-shard split (default: the "
                            "shards' own, when it is a URL or a folder this machine has)")
    return parser


def read_shard(path: Path) -> tuple[str, dict[str, Any]]:
    """A shard's name (its folder, as given) and its whole ``modelgate.json``.

    Raises:
        MergeError: no such file or folder, no report in it, not JSON, or no shard section.
    """
    name = str(path)
    file = path / REPORT_NAME if path.is_dir() else path
    if not path.exists():
        raise MergeError(f"{name}: no such file or folder (a shard that did not run, or a "
                         "download that failed)")
    if not file.is_file():
        raise MergeError(f"{name}: no {REPORT_NAME} in it: that shard wrote no report (it did "
                         "not start its tests, stopped on a usage error, or wrote its report "
                         "elsewhere: --modelgate-report-dir)")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MergeError(f"{name}: {file.name} is unreadable ({exc}): the shard was cut off "
                         "while writing it, or it is not a pytest-modelgate report") from None
    section = doc.get("shard") if isinstance(doc, dict) else None
    if not isinstance(section, dict) or section.get("format") != SHARD_FORMAT:
        raise MergeError(f"{name}: {file.name} has no shard section of format {SHARD_FORMAT}: "
                         "it was written by another pytest-modelgate version, or it is "
                         "already a merged report; run the shards and the merge with one "
                         "version")
    if section.get("merged_from"):
        raise MergeError(f"{name}: {file.name} is a merged report; give the shards' own")
    return name, section


def _junit(path: Path, results: dict[str, dict], gates: dict[str, dict],
           problems: list[str]) -> None:
    """One JUnit XML file over every test the shards ran, in pytest's layout (a classname
    from the module path and classes, the function as name), with each gate test's metrics
    and verdict as properties."""
    import xml.etree.ElementTree as ET

    from .baseline import atomic_write_text
    from .specs import junit_properties

    suite = ET.Element("testsuite", name="pytest")
    totals = {"failed": 0, "error": 0, "skipped": 0}
    seconds = 0.0
    for nodeid in sorted(results):
        result = results[nodeid]
        parts = nodeid.split("::")
        module = parts[0].replace("/", ".").removesuffix(".py")
        case = ET.SubElement(suite, "testcase", classname=".".join([module, *parts[1:-1]]),
                             name=parts[-1], time=f"{float(result['duration']):.3f}")
        seconds += float(result["duration"])
        gate = gates.get(nodeid)
        if gate is not None:
            props = ET.SubElement(case, "properties")
            for key, value in junit_properties(gate.get("record") or {"metrics": []},
                                               gate.get("verdict") or result["outcome"]):
                ET.SubElement(props, "property", name=key, value=str(value))
        outcome = result["outcome"]
        if outcome in totals:
            totals[outcome] += 1
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}[outcome]
            message = result.get("message") or ""
            if gate is not None and gate.get("reason") and outcome != "skipped":
                message = f"{gate.get('verdict')}: {gate['reason']}"
            ET.SubElement(case, tag, message=message).text = message
    if problems:  # an incomplete merge is no green check, whatever ran
        case = ET.SubElement(suite, "testcase", classname="pytest_modelgate.merge",
                             name="shards", time="0.000")
        ET.SubElement(case, "error", message=problems[0]).text = "\n".join(problems)
        totals["error"] += 1
    suite.set("tests", str(len(results) + bool(problems)))
    suite.set("failures", str(totals["failed"]))
    suite.set("errors", str(totals["error"]))
    suite.set("skipped", str(totals["skipped"]))
    suite.set("time", f"{seconds:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    atomic_write_text(path, '<?xml version="1.0" encoding="utf-8"?>\n'
                      + ET.tostring(root, encoding="unicode") + "\n")


def _exit_status(problems: list[str], results: dict[str, dict],
                 sections: list[dict]) -> int:
    if problems:
        return INCOMPLETE
    if any(r["outcome"] in ("failed", "error") for r in results.values()) or \
            any(int(s.get("exitstatus", 0)) == TESTS_FAILED for s in sections):
        return TESTS_FAILED
    return OK if results else NO_TESTS


def _read_shards(shard_paths: list[str], out: Path, junitxml: Path | None,
                 update_baseline: Path | None, expect: int | None
                 ) -> tuple[list[tuple[str, dict]], list[str]]:
    """The shards that could be read, and every problem that stops a whole verdict.

    Raises:
        MergeError: an output would overwrite a shard's report (a usage error).
    """
    inputs = {Path(p).resolve() for p in shard_paths}
    for given, what in ((out, "--out"), (junitxml, "--junitxml")):
        if given is None:
            continue
        clash = [p for p in inputs if given == p or given == p / REPORT_NAME
                 or (p.is_file() and given == p.parent) or given in p.parents]
        if clash:
            raise MergeError(f"{what} {given} would overwrite a shard's report "
                             f"({clash[0]}): write the merge elsewhere")
    shards, problems = [], []
    for given in shard_paths:
        try:
            shards.append(read_shard(Path(given)))
        except MergeError as exc:
            problems.append(str(exc))
    problems += check_shards(shards, expect)
    if update_baseline is not None:
        problems += [f"{name} ran without --modelgate-update-baseline: its gates were "
                     "compared, not recorded (and with one seed); run every shard with "
                     "--modelgate-update-baseline to write the baseline from them"
                     for name, s in shards if not s.get("update_baseline")]
        seeds = {int(s.get("baseline_seeds") or 1) for _, s in shards}
        if len(seeds) > 1:
            shown = ", ".join(map(str, sorted(seeds)))
            problems.append(f"the shards recorded different seeds ({shown}): run every "
                            "shard with the same --modelgate-baseline-seeds")
    return shards, problems


def _session(shards: list[tuple[str, dict]], problems: list[str], out: Path,
             update_baseline: Path | None) -> Any:
    """A ``ModelGateSession`` holding what the shards recorded, as one session would.

    Raises:
        MergeError: ``update_baseline`` names a file that is not a baseline.
    """
    import pytest

    from .session import ModelGateSession
    from .settings import GateSettings

    sections = [s for _, s in shards]
    first = sections[0]
    compared = any(s.get("baseline") is not None for s in sections)
    path = update_baseline or Path(first.get("baseline_path") or "modelgate-baseline.json")
    if update_baseline is not None and update_baseline.is_dir():
        raise MergeError(f"--update-baseline {update_baseline} is a folder: give the "
                         "baseline file's path")
    settings = GateSettings(
        enabled=True, update_baseline=update_baseline is not None,
        baseline_path=Path(path).resolve() if update_baseline else Path(path),
        report_dir=out, cache_dir=None,
        significance=first.get("significance"),
        inconclusive=first.get("inconclusive") or "warn",
        baseline_seeds=int(first.get("baseline_seeds") or 1))
    try:
        ms = ModelGateSession(settings, controller=True)  # reads --update-baseline's file
    except pytest.UsageError as exc:
        raise MergeError(f"--update-baseline {update_baseline}: {exc}") from None
    if update_baseline is None:
        ms.baseline = {k: v for s in sections for k, v in (s.get("baseline") or {}).items()} \
            if compared else None
    ms.tests = {g["nodeid"]: g for s in sections for g in s.get("gates") or []}
    ms.results = {k: v for s in sections for k, v in (s.get("results") or {}).items()}
    ms.selected = sorted(i for s in sections for i in s.get("selected") or [])
    ran = {i for s in sections for i in s.get("selected") or []}
    unrun = {i for s in sections for i in s.get("suite") or [] if i not in ran}
    ms.expected = {i for s in sections for i in s.get("expected") or []} | unrun
    ms.finished = ms.expected - unrun - {i for s in sections for i in s.get("not_run") or []}
    ms.shard_problems = problems
    ms.expected_are_gates = not unrun and all(s.get("not_run_are_gates", True)
                                              for s in sections)
    ms.failed = [i for s in sections for i in s.get("failed") or []]
    ms.cache_counts = [sum(int((s.get("cache") or {}).get(k, 0)) for s in sections)
                       for k in ("loaded", "trained", "rejected")]
    ms.merged_readonly = any((s.get("cache") or {}).get("readonly") for s in sections)
    locations = sorted({(s.get("cache") or {}).get("location") or "off" for s in sections})
    ms.merged_cache = ", ".join(locations) if locations != ["off"] else None
    ms.merged_from = [name for name, _ in shards]
    environments = [s.get("environment") for s in sections if s.get("environment")]
    ms.environment = environments[0] if environments else None
    return ms


def merge(shard_paths: list[str], out: Path, *, junitxml: Path | None = None,
          update_baseline: Path | None = None, expect: int | None = None,
          cache: str | None = None, write=print) -> int:
    """Merge the shards at ``shard_paths`` into ``out``; return the exit status (see the
    module). ``write`` prints a line of the terminal output."""
    try:
        shards, problems = _read_shards(shard_paths, out, junitxml, update_baseline, expect)
        if not shards:
            for line in problems:
                write(f"error: {line}")
            write("no shard could be read: nothing merged")
            return INCOMPLETE
        ms = _session(shards, problems, out, update_baseline)
    except MergeError as exc:
        write(f"error: {exc}")
        return USAGE
    sections = [s for _, s in shards]
    write(f"modelgate: merged {len(shards)} shard(s): " + ", ".join(ms.merged_from))
    if any(s.get("environment") != ms.environment for s in sections):
        write("warning: the shards ran in different environments (python, platform or "
              "library versions); the report and baseline show the first shard's")
    status = _exit_status(problems, ms.results, sections)
    ms.finish(status)
    junitxml = junitxml or out / "junit.xml"
    unfinished = {i for s in sections for i in s.get("not_run") or []}
    _junit(junitxml, {k: v for k, v in ms.results.items() if k not in unfinished}, ms.tests,
           problems)
    if not problems:
        _record_durations(ms, sections, ms.results, cache, write)
    for line in problems:
        write(f"error: {line}")
    if problems:
        write("the merged verdict is incomplete: exit status 2, and no baseline is written")
    for line in ms.summary_lines():
        write(line)
    write(f"junit: {junitxml}")
    counts: dict[str, int] = {}
    for r in ms.results.values():
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    write(", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no tests ran")
    return status


def _record_durations(ms: Any, sections: list[dict], results: dict[str, dict],
                      cache: str | None, write) -> None:
    """Write each test's seconds and runs to the shards' run cache for the next split, when
    the cache is one this machine reaches and the shards could write it."""
    from .baseline import written_at
    from .cache import RunCache

    if cache is None:
        locations = {(s.get("cache") or {}).get("location") for s in sections}
        location = locations.pop() if len(locations) == 1 else None
        if location is None or any((s.get("cache") or {}).get("readonly")
                                   for s in sections):
            return
        if "://" not in location and not Path(location).is_dir():
            return  # each runner's own folder: nothing shared to record into
        cache = location
    data = durations_from(results, list(ms.tests.values()), written_at())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = RunCache(cache)
            store.write_file(DURATIONS_FILE, data)
        if caught:
            raise OSError(str(caught[0].message))
        shown = store.location
    # fsspec backends raise their own errors (botocore, azure): none may fail the merge.
    except Exception as exc:  # noqa: BLE001 - a note for the next split, never the verdict
        write(f"warning: durations not recorded for the next --modelgate-shard split "
              f"({type(exc).__name__}: {exc}); it will keep each module together")
        return
    write(f"durations recorded for the next split: {shown}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.expect is not None and args.expect < 1:
        _parser().error(f"--expect {args.expect}: the number of shards is at least 1")
    return merge(args.shards, Path(args.out).resolve(), junitxml=Path(args.junitxml).resolve()
                 if args.junitxml else None,
                 update_baseline=Path(args.update_baseline) if args.update_baseline else None,
                 expect=args.expect, cache=args.cache)
