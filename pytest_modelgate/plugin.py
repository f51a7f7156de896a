"""pytest glue: options, the ``modelgate`` marker, gating, records, summary and outputs.

Loading this module must stay light: no torch, torchvision, tensorflow or jinja2 here.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Generator

import pytest

from .errors import ModelGateWarning, user_error_frames
from .gate import GateContext, gate_context
from .options import (
    OPTION_ENABLE,
    OPTION_SHARD,
    OPTION_UPDATE,
    add_ini,
    add_options,
    parse_device,
    parse_seed,
    parse_workers,
)
from .replicas import replica_failed, replica_record, runs_without_seeds, unseeded_runs
from .session import ModelGateSession, progress_line, session_key, settings_from_config
from .settings import resolve
from .specs import ERROR, junit_properties

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames


GATE_FIXTURES = frozenset({"finetune"})
SKIP_REASON = f"model gate: run with {OPTION_ENABLE} to fine-tune and check it"

pytest_plugins = ["pytest_modelgate.fixtures"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("modelgate", "model quality gates"))
    add_ini(parser)


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before any conftest or test module imports TensorFlow (see the function).
    from .frameworks import import_triton_before_tensorflow

    import_triton_before_tensorflow()


# Not tryfirst: pytest's cache (a tryfirst hook) must be set up before the session reads
# it, and junitxml's hook, registered before this plugin, still runs after this one.
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "modelgate: a model gate, skipped without --modelgate")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped with a reason otherwise")
    lead = _torchrun_lead(config)
    ms = ModelGateSession(settings_from_config(config),
                          controller=lead and not is_xdist_worker(config))
    config.stash[session_key] = ms
    from .shards import identity_of

    ms.identity = identity_of({name: config.getoption(name, None) for name in (
        "modelgate_shard", "splits", "group", "num_shards", "shard_id")})
    # Registered as a plugin so its pytest_runtest_logreport sees every report, those that
    # xdist workers send to the controller included.
    config.pluginmanager.register(ms, "modelgate-session")


def _torchrun_lead(config: pytest.Config) -> bool:
    """Under torchrun every rank runs this session and each fine-tune spans the world;
    rank 0 alone writes the reports, JUnit XML and baseline (the others' JUnit is turned
    off here). False on the other ranks.

    Raises:
        pytest.UsageError: ``-n`` under torchrun (xdist workers are no ranks).
    """
    from .train.ranks import torchrun_world

    world = torchrun_world()
    if world is None:
        return True
    if config.getoption("numprocesses", None):
        raise pytest.UsageError(
            f"-n under torchrun: every torchrun rank runs the whole session and each "
            f"fine-tune spans the {world.size} ranks; drop -n, or drop torchrun and use -n "
            f"with --modelgate-workers")
    if not world.lead:
        config.option.xmlpath = None
    return world.lead


def is_gate(item: pytest.Item) -> bool:
    """A gate test carries the ``modelgate`` marker or asks for the ``finetune`` fixture."""
    names = set(getattr(item, "fixturenames", ()))
    return item.get_closest_marker("modelgate") is not None or bool(names & GATE_FIXTURES)


def _cuda_available() -> bool:
    from .frameworks import default

    return default().gpu_count() > 0


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: check only the tests that run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ms = config.stash[session_key]
    enabled = ms.settings.enabled
    gpu_ok: bool | None = None
    shard = config.getoption("modelgate_shard", None)
    if shard is not None:
        _keep_shard(config, items, shard)
    for item in items:
        gate_of(item)  # a typo in the marker's keywords stops the run here
        if is_gate(item) and not enabled:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
        if item.get_closest_marker("gpu") is not None:
            if gpu_ok is None:
                gpu_ok = _cuda_available()
            if not gpu_ok:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none is visible"))


def _keep_shard(config: pytest.Config, items: list[pytest.Item], shard) -> None:
    """--modelgate-shard=K/N: keep shard K's tests, deselect the rest (see
    ``shards.partition``); the session keeps the whole selection and the split's digest
    for the merge to check.

    Raises:
        pytest.UsageError: another splitting plugin's options given as well.
    """
    from .shards import DURATIONS_FILE, partition, read_durations

    for other, plugin in (("splits", "pytest-split's --splits"),
                          ("num_shards", "pytest-shard's --num-shards")):
        if config.getoption(other, None):
            raise pytest.UsageError(f"{OPTION_SHARD} and {plugin} both split the tests: "
                                    "use one of them")
    ms = config.stash[session_key]
    if not ms.settings.enabled:
        raise pytest.UsageError(f"{OPTION_SHARD} splits a gate session and its report is "
                                f"what the merge reads: add {OPTION_ENABLE} (or "
                                f"{OPTION_UPDATE})")
    ids = [item.nodeid for item in items]
    durations = read_durations(ms.cache.read_file(DURATIONS_FILE))
    keep, digest = partition(ids, shard, durations)
    ms.suite, ms.partition = ids, digest
    how = ("by the durations the last merge recorded" if durations else
           "by module: no durations recorded yet (the merge records them)")
    ms.split_note = f"shard {shard}: {len(keep)} of {len(ids)} test(s), split {how}"
    kept = set(keep)
    dropped = [item for item in items if item.nodeid not in kept]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.nodeid in kept]


def pytest_collection_finish(session: pytest.Session) -> None:
    # After every plugin's selection (-k, -m, pytest-split's trylast hook, ours): the tests
    # this session runs, and the gates among them that the summary expects to finish.
    ms = session.config.stash[session_key]
    ms.selected = [item.nodeid for item in session.items]
    if ms.settings.enabled:
        ms.expected.update(item.nodeid for item in session.items if is_gate(item))


MARKER_ARGS = frozenset({"device", "seed", "full_race", "workers"})


def marker_overrides(item: pytest.Item) -> dict[str, object]:
    """``@pytest.mark.modelgate(device=..., seed=..., full_race=..., workers=...)``: the
    keywords that set this test's runs."""
    marker = item.get_closest_marker("modelgate")
    if marker is None:
        return {}
    unknown = sorted(set(marker.kwargs) - MARKER_ARGS)
    if unknown or marker.args:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.modelgate takes only the keywords "
            f"{', '.join(sorted(MARKER_ARGS))}; got {unknown or list(marker.args)}"
        )
    for name, value in marker.kwargs.items():
        problem = _marker_value_problem(name, value)
        if problem:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.modelgate({name}={value!r}): "
                                    f"{problem}")
    return dict(marker.kwargs)


def _marker_value_problem(name: str, value: object) -> str | None:
    """What is wrong with a marker keyword's value, checked as its option's is."""
    if value is None:
        return None  # not set: the session's setting applies
    if name == "full_race":
        return None if isinstance(value, bool) else "full_race must be True or False"
    if name == "seed" and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{value!r} is not an integer seed"
    if name == "workers" and (not isinstance(value, int) or isinstance(value, bool)):
        return f"workers must be an int, got {value!r}"
    parse = {"device": parse_device, "seed": parse_seed, "workers": parse_workers}[name]
    try:
        parse(str(value))
    except argparse.ArgumentTypeError as exc:
        return str(exc)
    return None


gate_key = pytest.StashKey[GateContext]()


def gate_of(item: pytest.Item) -> GateContext:
    """The test's gate context, built once: its marker's settings over the session's, and
    for a gate test under --modelgate the run cache, where leakage thumbnails live too."""
    if gate_key not in item.stash:
        marked = marker_overrides(item)
        ms = item.config.stash[session_key]
        settings = ms.settings
        item.stash[gate_key] = GateContext(
            device=resolve(marked.get("device"), settings.device),
            seed=resolve(marked.get("seed"), settings.seed),
            full_race=bool(resolve(marked.get("full_race"), settings.full_race)),
            workers=resolve(marked.get("workers"), settings.workers),
            run_cache=ms.cache.directory if settings.enabled and is_gate(item) else None,
        )
    return item.stash[gate_key]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    # Set for the whole test: fixtures that call finetune run in its setup.
    with gate_context(gate_of(item)):
        return (yield)


payload_key = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    session = item.config.stash[session_key]
    if not (session.settings.enabled and is_gate(item)):
        return (yield)
    gate = gate_of(item)
    with gate.recording() as record:
        try:
            result = yield
        except BaseException as exc:
            verdict = exception_verdict(exc)
            item.stash[payload_key] = session.unfinished(item.nodeid, record, verdict,
                                                         str(exc).split("\n")[0])
            _junit_properties(item, record, verdict)
            raise
        seeds = session.settings.baseline_seeds  # 1 unless this session writes the baseline
        if seeds > 1 and record["runs"]:  # a test that trains nothing is one under any seed
            _run_replicas(item, gate, record, seeds)
        outcome = session.judge(item.nodeid, record, gate.images)
    item.stash[payload_key] = outcome.payload
    _junit_properties(item, record, outcome.verdict)
    for message in outcome.warnings:
        warnings.warn(ModelGateWarning(message), stacklevel=1)
    if outcome.fails:
        # The table is the whole story: no traceback into the plugin.
        pytest.fail(outcome.message, pytrace=False)
    return result


# What a seed replica may raise and still let the update go on: Ctrl-C (KeyboardInterrupt)
# and pytest.exit stop the session, as they would the test itself.
REPLICA_FAILURES = (Exception, pytest.fail.Exception, pytest.skip.Exception)


def _run_replicas(item: pytest.Item, gate: GateContext, record: dict, seeds: int) -> None:
    """Rerun a passed gate test's function as seed replicas 1 to ``seeds`` - 1, each of its
    runs trained with its seed + r (the ``finetune`` fixture reads ``gate.replica``), and
    keep what each recorded as ``record["replicas"]``. The test's verdict stays its own
    run's; a replica that raises is kept up to its failure, with a warning."""
    replicas = []
    for r in range(1, seeds):
        progress_line(item.config, f"modelgate: {item.nodeid}: seed replica {r + 1} of "
                                   f"{seeds} (each run's seed + {r})")
        error = None
        gate.replica = r
        try:
            with gate.recording() as replica:
                try:
                    item.runtest()
                except REPLICA_FAILURES as exc:
                    error = str(exc).strip().split("\n")[0] or type(exc).__name__
        finally:
            gate.replica = 0
        if r == 1:
            same = unseeded_runs(record, replica)
            if same:  # every replica would train the same: one seed, said once
                warnings.warn(ModelGateWarning(runs_without_seeds(item.nodeid, same, seeds)),
                              stacklevel=1)
                return
        if error is not None:
            warnings.warn(ModelGateWarning(replica_failed(item.nodeid, r, error)),
                          stacklevel=1)
        replicas.append(replica_record(replica, r, error))
    record["replicas"] = replicas


def exception_verdict(exc: BaseException) -> str:
    """A gate test's verdict from what its call raised: a failed assertion (or
    ``pytest.fail``) is ``failed``, the model missed the bar; anything else, a
    ``ModelGateError`` first of all, is ``error``: the gate never judged the model."""
    if isinstance(exc, pytest.skip.Exception):
        return "skipped"
    if isinstance(exc, (AssertionError, pytest.fail.Exception)):
        return "failed"
    return ERROR


def _junit_properties(item: pytest.Item, record: dict, verdict: str) -> None:
    """Each metric and the verdict, as record_property would add them: CI systems that read
    JUnit XML show them."""
    item.user_properties.extend(junit_properties(record, verdict))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    # The xdist controller collects nothing itself: it learns the test ids from its workers,
    # though not which are gates, so an interrupted run lists every test that did not run.
    ms = node.config.stash[session_key]
    ms.selected = list(ids)
    if ms.settings.enabled:
        ms.expected_are_gates = False
        ms.expected.update(ids)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    ms = item.config.stash[session_key]
    # Plain attributes of the report travel to the xdist controller with it (pytest's report
    # serialisation keeps them), and stay out of the JUnit XML, unlike user_properties.
    counts = ms.cache.take_counts()
    if any(counts):
        report.modelgate_cache = counts._asdict()  # type: ignore[attr-defined]
    if ms.suite is not None and is_xdist_worker(item.config) and not ms.split_sent:
        # The xdist controller collects nothing: the workers tell it the split, once each.
        report.modelgate_split = {"suite": ms.suite, "partition": ms.partition,  # type: ignore[attr-defined]
                                  "note": ms.split_note}
        ms.split_sent = True
    if call.when == "call" and payload_key in item.stash:
        report.modelgate = item.stash[payload_key]  # type: ignore[attr-defined]
    return report


def pytest_report_header(config: pytest.Config) -> str | None:
    ms = config.stash[session_key]
    if ms.replacing and ms.controller:
        return (f"modelgate: {ms.replacing}; {OPTION_UPDATE} replaces it if this session "
                "runs to its end with every test passing")
    return None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from .train.ranks import torchrun_world

    ms = session.config.stash[session_key]
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and (
            ms.suite or session.config.getoption("modelgate_shard", None)):
        # --modelgate-shard left this runner nothing (fewer groups than shards): that is
        # the split working, not a CI job to fail.
        session.exitstatus = exitstatus = pytest.ExitCode.OK
    if torchrun_world() is not None and ms.settings.enabled:
        # Every torchrun rank exits with the worst rank's status: one verdict.
        from .frameworks.torch.launch import worst_status

        session.exitstatus = exitstatus = worst_status(int(exitstatus))
    ms.finish(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    # A Ray instance --modelgate-ray=local started for this session ends with it. Only a
    # session that sent a run to Ray has imported the module (the plugin never imports Ray).
    on_ray = sys.modules.get("pytest_modelgate.frameworks.torch.on_ray")
    if on_ray is not None:
        on_ray.shutdown_local_ray()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    ms = config.stash[session_key]
    if not (ms.controller and ms.settings.enabled) or exitstatus == pytest.ExitCode.USAGE_ERROR:
        return
    terminalreporter.ensure_newline()  # after the progress line, before the section's rule
    terminalreporter.section("modelgate")
    for line in ms.summary_lines():
        terminalreporter.write_line(line)
