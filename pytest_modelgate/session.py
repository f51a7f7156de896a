"""ModelGateSession: the one object that reads pytest's config; lives in config.stash."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baseline import (
    DEFAULT_BASELINE,
    INCONCLUSIVE,
    REGRESSED,
    baseline_entry,
    compare,
    format_regressions,
    load_baseline,
    save_baseline,
)
from .errors import BaselineError, ModelGateError
from .options import (
    INI_PARSERS,
    OPTION_BASELINE_SEEDS,
    OPTION_CACHE,
    OPTION_CACHE_DIR,
    OPTION_CACHE_MAX_SIZE,
    OPTION_INCONCLUSIVE,
    OPTION_UPDATE,
    SECRET_INI,
)
from .settings import GateSettings, resolve
from .shards import SHARD_FORMAT
from .specs import VERDICTS
from .wording import counted

if TYPE_CHECKING:
    from .cache import RunCache


def _ini(config: pytest.Config, name: str) -> Any:
    """The ini file's value of a setting, parsed as its option is (None: not set)."""
    raw = config.getini(name)
    if raw in (None, ""):
        return None
    parse = INI_PARSERS.get(name)
    try:
        return parse(raw) if parse else raw
    except argparse.ArgumentTypeError as exc:
        shown = f"ini option {name}" if name in SECRET_INI else f"ini option {name} = {raw!r}"
        raise pytest.UsageError(f"{shown}: {exc}") from None


def _option(config: pytest.Config, name: str, default: Any = None) -> Any:
    """A setting from the command line, else the ini file, else ``default``. The ini file
    is read only when the command line leaves the setting open: a bad ini value that the
    command line overrides is no error."""
    cli = config.getoption(name)
    return resolve(cli, _ini(config, name) if cli is None else None, default=default)


def settings_from_config(config: pytest.Config) -> GateSettings:
    root = config.rootpath
    baseline = _option(config, "modelgate_baseline") or DEFAULT_BASELINE
    report_dir = _option(config, "modelgate_report_dir")
    tolerance = _option(config, "modelgate_tolerance")
    device = _option(config, "modelgate_device", default="auto")
    update = bool(config.getoption("modelgate_update_baseline"))
    seed = _option(config, "modelgate_seed", default=0)
    significance = _option(config, "modelgate_significance")
    baseline_env = _option(config, "modelgate_baseline_env", default="same")
    inconclusive = _option(config, "modelgate_inconclusive", default="warn")
    seeds = _baseline_seeds(config, update)
    workers = _option(config, "modelgate_workers", default=1)
    ray = _option(config, "modelgate_ray")
    cache_dir, cache_url = _cache_location(config)
    kwargs: dict[str, Any] = {}
    if tolerance is not None:
        kwargs["tolerance"] = tolerance
    if significance is not None:
        kwargs["significance"] = significance or None  # 0.0: off
    return GateSettings(
        enabled=bool(config.getoption("modelgate")) or update,
        update_baseline=update,
        baseline_path=(root / baseline).resolve(),
        report_dir=(root / (report_dir or "reports")).resolve(),
        device=device,
        cache_dir=cache_dir,
        cache_url=cache_url,
        cache_readonly=bool(config.getoption("modelgate_cache_readonly")
                            or config.getini("modelgate_cache_readonly")),
        cache_max_size=_cache_max_size(config, cache_url),
        seed=seed,
        baseline_env=baseline_env,
        inconclusive=inconclusive,
        baseline_seeds=seeds,
        full_race=bool(config.getini("modelgate_full_race")),
        workers=workers,
        ray=ray,
        **kwargs,
    )


def _cache_location(config: pytest.Config) -> tuple[Path | None, str | None]:
    """The run cache's local folder and, for a remote cache, its URL. The command line's
    --modelgate-cache-dir or --modelgate-cache wins over the ini file's; a local folder
    (either option) is resolved from the rootdir; a remote cache keeps its lock files and
    thumbnails in pytest's cache directory.

    Raises:
        pytest.UsageError: both options on the command line, or both keys in the ini file.
    """
    if config.getoption("modelgate_no_cache"):
        return None, None

    def pytest_cache() -> Path | None:
        # pytest's own cache directory; with -p no:cacheprovider, no default cache.
        cache = getattr(config, "cache", None)
        return cache.mkdir("modelgate") if cache is not None else None

    where = [config.getoption("modelgate_cache_dir"), config.getoption("modelgate_cache")]
    source = "on the command line"
    if not any(where):
        where = [_ini(config, "modelgate_cache_dir"), _ini(config, "modelgate_cache")]
        source = "in the ini file"
    folder, url = where
    if folder and url:
        raise pytest.UsageError(
            f"{OPTION_CACHE_DIR} and {OPTION_CACHE} are both given {source}: give one "
            f"({OPTION_CACHE} takes a folder too)")
    from .cache_store import is_remote, local_path

    if url and is_remote(url):
        return pytest_cache(), url
    chosen = local_path(url) if url else folder
    return ((config.rootpath / chosen).resolve() if chosen else pytest_cache()), None


def _cache_max_size(config: pytest.Config, url: str | None) -> int | None:
    """The size a local run cache is held to. The ini key applies to local caches only (a
    project may keep one for its developers' machines while CI names a bucket); on the
    command line with a remote cache it is a mistake.

    Raises:
        pytest.UsageError: --modelgate-cache-max-size with a remote cache.
    """
    given = config.getoption("modelgate_cache_max_size")
    if given is not None and url is not None:
        from .cache_store import credential_free

        raise pytest.UsageError(
            f"{OPTION_CACHE_MAX_SIZE} evicts from local folders only; an object store "
            f"expires objects with its own lifecycle rules: give {credential_free(url)} a "
            "lifecycle rule (an S3 or GCS expiration on the prefix, an Azure management "
            f"policy) and drop {OPTION_CACHE_MAX_SIZE}")
    size = _option(config, "modelgate_cache_max_size")  # a bad ini value errs
    return None if url is not None else size


def open_run_cache(settings: GateSettings) -> RunCache:
    """The session's run cache, as ``settings`` place it (off unless --modelgate), with
    ``$MODELGATE_CACHE_KEY`` as its signing key.

    Raises:
        pytest.UsageError: fsspec knows no such protocol, or its package is missing.
    """
    from .cache import RunCache
    from .cache_store import signing_key_from_env

    location = settings.cache_url or settings.cache_dir
    if not settings.enabled or location is None:
        return RunCache(None)
    try:
        return RunCache(location, local=settings.cache_dir, readonly=settings.cache_readonly,
                        max_size=settings.cache_max_size, signing_key=signing_key_from_env())
    except ModelGateError as exc:
        raise pytest.UsageError(str(exc)) from None


def _baseline_seeds(config: pytest.Config, update: bool) -> int:
    """The seeds a baseline update trains with. The ini key applies only to updates (a
    project may keep it set); on the command line without an update it is a mistake: it
    would change nothing, and the user meant something by it.

    Raises:
        pytest.UsageError: --modelgate-baseline-seeds without --modelgate-update-baseline.
    """
    given = config.getoption("modelgate_baseline_seeds")
    if given is not None and not update:
        raise pytest.UsageError(
            f"{OPTION_BASELINE_SEEDS}={given} is used only when writing the baseline: add "
            f"{OPTION_UPDATE} to record the baseline over {counted(given, 'seed')}, or leave "
            "it out (a "
            "comparison uses the seeds the baseline holds)")
    seeds = _option(config, "modelgate_baseline_seeds", default=1)  # a bad ini value errs
    return seeds if update else 1


def progress_line(config: pytest.Config, line: str) -> None:
    """Write ``line`` to the terminal at once, past output capturing, when pytest runs
    verbose (``-v``): how training and seed replicas show their progress."""
    if config.get_verbosity() <= 0:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)



@dataclass
class Outcome:
    """A gate test's verdict, what its report carries, the failure message of a regression
    (or of an inconclusive drop under ``--modelgate-inconclusive=fail``), whether the test
    fails with it, and the warnings to issue (inconclusive drops, an environment
    mismatch)."""

    verdict: str
    payload: dict[str, Any]
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    fails: bool = False  # the test fails: regressed, or inconclusive under fail


def device_class(device: str) -> str:
    """``cuda:1`` -> ``cuda``: the class of device a result depends on."""
    return str(device).split(":", 1)[0]


def environment_class(record: dict) -> dict[str, str]:
    """The environment class of a gate test's runs: device class and the major version of
    each framework they ran on (by adapter name: torch, keras). Empty when the test trained
    nothing (plain arrays, leakage checks)."""
    runs = record.get("runs", {}).values()
    devices = sorted({device_class(r.get("device", "cpu")) for r in runs})
    if not devices:
        return {}
    env = {"device": "+".join(devices)}
    from .frameworks import DEFAULT, named

    for framework in sorted({(r.get("config") or {}).get("framework", DEFAULT) for r in runs}):
        installed = named(framework).versions().get(framework)
        if installed is not None:
            env[framework] = installed.split(".")[0]
    return env


def env_mismatch(baseline: dict[str, str], current: dict[str, str]) -> str | None:
    """How the baseline's environment class differs from this run's, or None."""
    differ = [k for k in current if k in baseline and baseline[k] != current[k]]
    if not differ:
        return None

    def say(env: dict[str, str]) -> str:
        return ", ".join(f"{k} {env[k]}" if k != "device" else env[k] for k in differ)
    return f"{say(baseline)}, and this run is on {say(current)}"


def _changes(regressions: list) -> str:
    """``accuracy 0.843 -> 0.720 (p=0.0005)``: the first three drops the verdict rests on
    (the regressed ones, else the inconclusive ones)."""
    shown = [r for r in regressions if r.verdict == REGRESSED] or regressions
    return "; ".join(r.change() + (f" (p={r.p:.3g})" if r.p is not None else "")
                     for r in shown[:3]) + (" ..." if len(shown) > 3 else "")


class ModelGateSession:
    """Settings, the loaded baseline and every gate test's record for one pytest session."""

    def __init__(self, settings: GateSettings, *, controller: bool) -> None:
        self.settings = settings
        self.controller = controller
        self.tests: dict[str, dict[str, Any]] = {}
        self.baseline: dict[str, dict] | None = None
        self.report_paths: tuple[Path, Path] | None = None
        # Why an unreadable baseline is being replaced (--modelgate-update-baseline).
        self.replacing: str | None = None
        # Cached runs (loaded, trained, rejected) as the test reports tell them, xdist
        # workers' too.
        self.cache_counts = [0, 0, 0]
        # Gate tests collected here; under xdist, every test the workers collected.
        self.expected: set[str] = set()
        self.expected_are_gates = True
        self.finished: set[str] = set()
        self.failed: list[str] = []
        self.interrupted = False
        self.not_run: list[str] = []
        self.baseline_note: str | None = None  # why an update wrote no baseline
        # Every test this session runs (gates or not), after every plugin's selection.
        self.selected: list[str] = []
        # Every test's outcome, seconds (all phases) and first line of failure, by id.
        self.results: dict[str, dict[str, Any]] = {}
        # Which shard of how many this session is (shards.identity_of), and under
        # --modelgate-shard the tests it was split from and the split's digest.
        self.identity: dict[str, Any] | None = None
        self.suite: list[str] | None = None
        self.partition: str | None = None
        self.split_sent = False  # an xdist worker has told the controller the split
        self.split_note: str | None = None  # "shard 1/3: 4 of 7 test(s), split by ..."
        # Where the runs ran (baseline.environment()); the merge sets the shards'.
        self.environment: dict[str, str] | None = None
        self.merged_from: list[str] | None = None  # the shards a merge read
        self.merged_cache: str | None = None  # and the run cache they shared
        self.shard_problems: list[str] = []  # why the merged shards are not one whole run
        self.merged_readonly = False  # a shard read its cache only
        self.collection_errors: list[str] = []  # modules (or classes) not collected
        self.cache = open_run_cache(settings)
        if settings.enabled:
            try:
                self.baseline = load_baseline(settings.baseline_path)
            except BaselineError as exc:
                if not (settings.update_baseline and exc.replaceable):
                    raise pytest.UsageError(str(exc)) from None
                self.replacing = str(exc).split(";")[0]

    def payload(self, record: dict, verdict: str, reason: str | None,
                regressions: list[dict] | None = None, changes: dict | None = None,
                note: str | None = None, seeds: int = 1) -> dict[str, Any]:
        """What a gate test's report carries to the controller (JSON-ready). ``seeds``:
        the seeds of the baseline it was compared with, or that this update records."""
        out = {"record": record, "verdict": verdict, "reason": reason,
               "regressions": regressions or [], "changes": changes,
               "env": environment_class(record), "baseline_note": note}
        if seeds > 1:
            out["baseline_seeds"] = seeds
        return out

    def _seeds(self, record: dict, entry: dict | None) -> int:
        """The seeds behind a gate test's baseline: those this update records (the test's
        own run and its replicas), or those of the ``entry`` it is compared with."""
        if self.settings.update_baseline:
            return 1 + len(record.get("replicas") or [])
        replicas = (entry or {}).get("replicas")
        return replicas if isinstance(replicas, int) and replicas > 1 else 1

    def _entry(self, nodeid: str) -> dict | None:
        """The baseline entry this run compares ``nodeid`` with, if any."""
        if self.settings.update_baseline or self.baseline is None:
            return None
        return self.baseline.get(nodeid)

    def unfinished(self, nodeid: str, record: dict, verdict: str, reason: str) -> dict:
        """The payload of a gate test whose call raised (``failed``, ``error``,
        ``skipped``). A failed gate is compared with its baseline too, so its line shows
        what moved (``accuracy 0.843 -> 0.720``) beside the floor it missed."""
        entry = self._entry(nodeid) if verdict == "failed" and record["metrics"] else None
        if entry is None or (env_mismatch(entry.get("env") or {}, environment_class(record))
                             and self.settings.baseline_env != "any"):
            return self.payload(record, verdict, reason)
        regressions = compare(record["metrics"], entry, self.settings.tolerance,
                              alpha=self.settings.significance, samples=record.get("samples"))
        if regressions:
            reason = f"{reason}; against the baseline: {_changes(regressions)}"
        return self.payload(record, verdict, reason, [r.to_dict() for r in regressions],
                            seeds=self._seeds(record, entry))

    def judge(self, nodeid: str, record: dict, images: dict | None = None) -> Outcome:
        """The verdict of a gate test whose assertions all passed: passed, regressed or
        inconclusive against the baseline."""
        entry = self._entry(nodeid)
        seeds = self._seeds(record, entry)
        if entry is None:
            return Outcome("passed", self.payload(record, "passed", None, seeds=seeds))
        env = environment_class(record)
        mismatch = env_mismatch(entry.get("env") or {}, env)
        if mismatch and self.settings.baseline_env != "any":
            path = self.settings.baseline_path
            suffix = env.get("device", "env")
            note = (f"not compared with the baseline: it was recorded on {mismatch}; results "
                    "differ between device classes and framework versions. Keep a baseline "
                    f"per environment (--modelgate-baseline={path.stem}.{suffix}{path.suffix}"
                    ", then --modelgate-update-baseline there), or compare anyway with "
                    "--modelgate-baseline-env=any")
            return Outcome("passed", self.payload(record, "passed", None, note=note),
                           warnings=[f"{nodeid}: {note}"])
        regressions = compare(record["metrics"], entry, self.settings.tolerance,
                              alpha=self.settings.significance, samples=record.get("samples"))
        if not regressions:
            return Outcome("passed", self.payload(record, "passed", None, seeds=seeds))
        regressed = [r for r in regressions if r.verdict == REGRESSED]
        verdict = REGRESSED if regressed else INCONCLUSIVE
        fails = bool(regressed) or self.settings.inconclusive == "fail"
        message = format_regressions(regressions, self.settings.baseline_path,
                                     inconclusive_fails=fails and not regressed)
        reason = _changes(regressions)
        changes = None
        if images:
            from .report.context import changed_samples

            changes = changed_samples(regressions, entry.get("samples") or {},
                                      record.get("samples") or {}, images)
        payload = self.payload(record, verdict, reason, [r.to_dict() for r in regressions],
                               changes, seeds=seeds)
        # An inconclusive drop that fails the test says so in its failure, not twice.
        warned = [f"{nodeid}: inconclusive: {message}"] if not fails else []
        return Outcome(verdict, payload, message, warned, fails)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collect(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # A module that cannot be collected: an error in the results, as JUnit XML has it,
        # and named by the merge (its tests never ran, in this shard or any).
        if report.failed:
            self.collection_errors.append(report.nodeid)
            text = report.longreprtext.strip().splitlines() or [""]
            self.results[report.nodeid] = {"outcome": "error", "duration": 0.0,
                                           "message": f"collection failed: {text[-1][:500]}"}

    def collect(self, report: pytest.TestReport) -> None:
        """Keep the record a gate test's call phase attached to its report (xdist-safe)."""
        counts = getattr(report, "modelgate_cache", None)
        if isinstance(counts, dict):
            for i, name in enumerate(("loaded", "trained", "rejected")):
                self.cache_counts[i] += int(counts.get(name, 0))
        split = getattr(report, "modelgate_split", None)
        if isinstance(split, dict) and self.suite is None:
            self.suite, self.partition = split.get("suite"), split.get("partition")
            self.split_note = split.get("note")
        self._result(report)
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.finished.add(report.nodeid)
        if report.failed and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)
        payload = getattr(report, "modelgate", None)
        if not isinstance(payload, dict) or report.when != "call":
            return
        entry = self.tests.setdefault(report.nodeid, {"nodeid": report.nodeid})
        entry.update(payload)
        entry["outcome"] = report.outcome
        entry["duration"] = report.duration

    def _result(self, report: pytest.TestReport) -> None:
        """Fold one phase's report into the test's result, as JUnit XML tells it: a failed
        call is a failure, a failed setup or teardown an error, a skip a skip."""
        result = self.results.setdefault(report.nodeid, {"outcome": "passed",
                                                         "duration": 0.0, "message": None})
        result["duration"] = round(result["duration"] + float(report.duration or 0.0), 6)
        if report.passed or result["outcome"] in ("failed", "error"):
            return
        if report.skipped:
            outcome = "skipped"
            longrepr = report.longrepr
            message = str(longrepr[2]) if isinstance(longrepr, tuple) else None
        else:
            outcome = "failed" if report.when == "call" else "error"
            crash = getattr(report.longrepr, "reprcrash", None)
            message = getattr(crash, "message", None) or \
                (report.longreprtext.strip().splitlines() or [""])[-1]
        result["outcome"], result["message"] = outcome, (message or "").split("\n")[0][:500]

    def shard_section(self, exitstatus: int, environment: dict[str, str]) -> dict[str, Any]:
        """What the merge needs of this session, kept in modelgate.json: which shard it
        is, what it selected and ran, how it ended, every test's result, the gate tests'
        records as the baseline keeps them, and where its runs ran."""
        settings = self.settings
        return {
            "format": SHARD_FORMAT,
            "identity": self.identity,
            "selected": sorted(self.selected),
            "suite": self.suite,
            "partition": self.partition,
            "interrupted": self.interrupted,
            "exitstatus": int(exitstatus),
            "not_run": self.not_run,
            "not_run_are_gates": self.expected_are_gates,
            "failed": sorted(self.failed),
            "collection_errors": sorted(self.collection_errors),
            "results": {k: self.results[k] for k in sorted(self.results)},
            "gates": sorted(self.tests.values(), key=lambda t: t["nodeid"]),
            "update_baseline": settings.update_baseline,
            "baseline_seeds": settings.baseline_seeds,
            "baseline_note": self.baseline_note,
            "replacing": self.replacing,
            "significance": settings.significance,
            "inconclusive": settings.inconclusive,
            "cache": {"location": self.cache_location(), "readonly": self.cache_readonly(),
                      **dict(zip(("loaded", "trained", "rejected"), self.cache_counts,
                                 strict=True))},
            "environment": environment,
            "expected": sorted(self.expected),
            "baseline_path": str(settings.baseline_path),
            # What the gates were compared with, so the merged report shows the same deltas
            # (None: no baseline, or this session wrote it).
            "baseline": None if self.baseline is None or settings.update_baseline else
            {k: v for k, v in self.baseline.items() if k in self.tests},
            "merged_from": self.merged_from,
        }

    def cache_location(self) -> str | None:
        """Where the run cache is, as it may be shown (None: off)."""
        if self.merged_from is not None:
            return self.merged_cache
        return self.cache.location if self.cache.enabled else None

    def cache_readonly(self) -> bool:
        """Whether runs trained are left unstored (a merge: whether any shard's were)."""
        return self.merged_readonly if self.merged_from is not None else self.cache.readonly

    def finish(self, exitstatus: int) -> None:
        """Write the reports and, when asked and the session ran to its end with every test
        passing, the baseline. Controller only."""
        if not (self.controller and self.settings.enabled):
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return  # nothing ran (a typo in a marker, say): the last report stays as it was
        self.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        self.not_run = sorted(self.expected - self.finished)
        tests = sorted(self.tests.values(), key=lambda t: t["nodeid"])
        from .baseline import environment as where

        environment = self.environment or where()
        if self.settings.update_baseline:
            if self.shard_problems:
                self.baseline_note = "the shards merged do not make one whole run"
            elif self.interrupted:
                self.baseline_note = "the session was interrupted"
            elif exitstatus != pytest.ExitCode.OK:
                failed = self.failed
                more = ", ..." if len(failed) > 3 else ""
                self.baseline_note = (f"{len(failed) or 'some'} test(s) failed"
                                      + (f" ({', '.join(failed[:3])}{more})" if failed else ""))
            elif not tests:
                self.baseline_note = "no gate test recorded a metric"
            else:
                save_baseline(self.settings.baseline_path,
                              {t["nodeid"]: baseline_entry(t["record"], t.get("env"))
                               for t in tests},
                              previous=self.baseline, recorded_in=environment)
        if self.settings.report_dir is not None:
            from .report.context import build_context
            from .report.html import write_reports

            compared = self.baseline is not None and not self.settings.update_baseline
            context = build_context(
                tests,
                baseline_path=str(self.settings.baseline_path),
                baseline_found=self.baseline is not None,
                updated_baseline=self.settings.update_baseline and self.baseline_note is None,
                session={"interrupted": self.interrupted, "exitstatus": int(exitstatus),
                         "not_run": self.not_run, "not_run_are_gates": self.expected_are_gates,
                         "baseline_note": self.baseline_note, "replacing": self.replacing,
                         "significance": self.settings.significance if compared else None,
                         "inconclusive_fails": compared
                         and self.settings.inconclusive == "fail",
                         "compared": compared, "shard_problems": self.shard_problems},
                baseline=self.baseline if compared else None,
                environment=environment,
                shard=self.shard_section(exitstatus, environment),
            )
            self.report_paths = write_reports(context, self.settings.report_dir)

    def verdict_lines(self) -> list[str]:
        """Counts per verdict, then one line per gate test, the ones to look at first."""
        tests = sorted(self.tests.values(),
                       key=lambda t: (VERDICTS.index(t.get("verdict", "passed"))
                                      if t.get("verdict") in VERDICTS else 0, t["nodeid"]))
        if not tests:
            return []
        counts: dict[str, int] = {}
        for t in tests:
            counts[t.get("verdict", "passed")] = counts.get(t.get("verdict", "passed"), 0) + 1
        alpha = self.settings.significance
        how = (f"significance {alpha:g}, Holm-corrected per test" if alpha else
               "significance off: every drop beyond tolerance regresses")
        if INCONCLUSIVE in counts and self.settings.inconclusive == "fail":
            how += f"; inconclusive fails the build: {OPTION_INCONCLUSIVE}=fail"
        lines = ["verdicts: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
                 + (f" ({how})" if self.baseline is not None
                    and not self.settings.update_baseline else "")]
        width = max(len(v) for v in counts)
        for t in tests:
            verdict = t.get("verdict", "passed")
            why = t.get("reason") or t.get("baseline_note")
            seeds = t.get("baseline_seeds") or 1
            over = f" (baseline over {seeds} seeds)" if seeds > 1 else ""
            lines.append(f"  {verdict.upper():<{width}}  {t['nodeid']}{over}"
                         + (f": {why}" if why else ""))
        return lines

    def summary_lines(self) -> list[str]:
        """The terminal summary's ``modelgate`` section."""
        lines = []
        n_metrics = sum(len(t["record"]["metrics"]) for t in self.tests.values())
        lines.append(f"{counted(len(self.tests), 'gate test')} recorded "
                     f"{counted(n_metrics, 'metric')}")
        if self.split_note:
            lines.append(self.split_note)
        lines.extend(self.verdict_lines())
        if self.shard_problems and not self.not_run:
            lines.append("shards incomplete: see the errors above")
        elif self.interrupted or self.not_run:
            what = "gate test(s)" if self.expected_are_gates else "test(s)"
            shown = ", ".join(self.not_run[:10])
            more = f" and {len(self.not_run) - 10} more" if len(self.not_run) > 10 else ""
            head = ("shards incomplete: " if self.shard_problems else
                    "session interrupted: ") if self.interrupted else ""
            lines.append(f"{head}{len(self.not_run)} {what} did not run or finish"
                         + (f": {shown}{more}" if self.not_run else ""))
        path = self.settings.baseline_path
        if self.settings.update_baseline:
            if self.baseline_note is None:
                replaced = f" (replaced: {self.replacing})" if self.replacing else ""
                lines.append(f"baseline written: {path}{replaced}")
            else:
                state = ("still unreadable" if self.replacing else
                         "left as it was" if path.exists() else "not created")
                lines.append(f"baseline not written, {path} {state}: {self.baseline_note}; "
                             f"rerun {OPTION_UPDATE} and let it finish with every test passing")
        elif self.baseline is None:
            lines.append(f"no baseline at {path}: nothing compared; create one with "
                         f"{OPTION_UPDATE}")
        else:
            lines.append(f"compared with baseline {path}")
        location = self.cache_location()
        if location is not None:
            loaded, trained, rejected = self.cache_counts
            readonly = ", not stored (read-only cache)" if self.cache_readonly() else ""
            forged = f", {rejected} rejected (unsigned or forged)" if rejected else ""
            lines.append(f"run cache: {loaded} run(s) loaded, {trained} trained{readonly}"
                         f"{forged} ({location})")
        else:
            lines.append("run cache: off")
        if self.report_paths:
            lines.append(f"report: {self.report_paths[0]}")
            lines.append(f"json: {self.report_paths[1]}")
        return lines


# Where pytest's config keeps the session (``config.stash[session_key]``).
session_key = pytest.StashKey[ModelGateSession]()
