"""The boundary between the framework-neutral orchestration (``train``: model identity, run
cache, seeding, the scratch race, the run record) and one adapter per framework.

An adapter is a subpackage here (``frameworks/torch``, ``frameworks/keras``) exposing
``FRAMEWORK``, an object with the methods of ``Framework``. The orchestration calls
nothing else of it, and ``framework_for`` asks each adapter whether a model is its
own, so another framework is one new folder. Importing this package, or an adapter's
``__init__``, imports no framework: that happens when a model is loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..data import Splits
    from ..train.config import TrainConfig
    from ..train.ranks import RankResult, World
    from ..train.record import EpochLog, Trained


@dataclass(frozen=True)
class HeadInfo:
    """Where a model's head sits (a dotted module path, or a Keras layer name), its input
    width, and how it was found."""

    path: str
    in_features: int
    found_by: str


def code_hash(kinds: Any, structure: str) -> str:
    """Hash of a model's code for its run-cache key: ``structure`` (the model's printed
    layers, so swapping an activation in an ``nn.Sequential`` shows) and the source of each
    of ``kinds`` (its layer classes) written outside installed packages, so editing the
    ``forward`` of the user's own class retrains. Libraries' classes are named by their
    versions, which the key holds already."""
    import hashlib
    import inspect
    import sysconfig

    installed = tuple({sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")})
    h = hashlib.sha256(structure.encode())
    for kind in sorted(set(kinds), key=lambda k: f"{k.__module__}.{k.__qualname__}"):
        try:
            path = inspect.getsourcefile(kind) or ""
            source = "" if path.startswith(installed) else inspect.getsource(kind)
        except (OSError, TypeError):   # built in, or defined where no source is kept
            continue
        h.update(f"{kind.__module__}.{kind.__qualname__}|{source}".encode())
    return h.hexdigest()[:16]


def xdist_gpu(count: int) -> int | None:
    """The GPU index of this pytest-xdist worker when there are several GPUs (the worker
    index modulo the count), so the workers spread over them instead of sharing the
    first; None outside xdist or with one GPU."""
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if count < 2 or not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    return int(worker[2:]) % count


def cpu_name() -> str:
    """The CPU's model as Linux names it ("AMD EPYC 9654 96-Core Processor"), else the
    platform's word for it: the report says where a run ran."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


@runtime_checkable
class Framework(Protocol):
    """What the orchestration needs of a framework. ``Loaded`` is the adapter's own model
    object (a model ready to fine-tune, with its preprocessing); the orchestration only
    passes it back. Everything framework-specific that a run's key, device, race, report or
    leakage scan needs is asked here, so no module outside ``frameworks/`` names one."""

    name: str  # also the framework's top-level module ("torch"), to tell whether it is loaded
    # Whether ``workers=N`` runs N rank processes (``launch``); else the adapter's ``train``
    # spreads them over the devices of this process (Keras under tf.distribute).
    rank_processes: bool

    def claims(self, model: Any) -> bool:
        """Whether ``model`` (a name, path, instance or class) is this framework's, judged
        without importing the framework."""

    def identity(self, model: Any, weights: Any) -> dict[str, Any] | None:
        """A JSON-ready identity of a named model and its weights, without importing the
        framework (cache keys of unchanged runs); None when only loading can tell."""

    def versions(self) -> dict[str, str]:
        """The installed versions of the libraries whose change can change this framework's
        runs (the framework first), read without importing them."""

    def device_fingerprint(self, device: str) -> dict[str, Any]:
        """What decides where ``device`` runs, read without importing the framework."""

    def resolve_device(self, device: str) -> str:
        """``device`` as a run uses it (``auto`` chosen, an explicit one checked)."""

    def gpu_count(self) -> int:
        """The GPUs the framework can run on here (0 where it is not installed)."""

    def seed(self, seed: int) -> None:
        """Seed every random source a run draws from."""

    def load(self, model: Any, *, weights: Any, image_size: int | None,
             mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
             transform: Callable[[Any], Any] | None, built: Any = None) -> Any:
        """The model ready to fine-tune: by name, instance, factory or file. ``built`` is
        what the ``pytest_modelgate_load_model`` hook returned for the name ``model``."""

    def scratch(self, loaded: Any) -> Any:
        """The same architecture and preprocessing, randomly initialised."""

    def model_key(self, loaded: Any) -> dict[str, Any]:
        """JSON-ready identity of a loaded model: name, weights hash, preprocessing."""

    def feature_extractor(self, make: Callable[[int], Any], size: int
                          ) -> Callable[[np.ndarray], np.ndarray]:
        """A function from uint8 (n, size, size, 3) image batches to (n, d) features: the
        model ``make(size)`` loads, its classifier head cut off (the leakage scan's
        embedding stage). Raises ``ModelGateError`` where the framework has none."""

    def backend(self, device: str) -> str:
        """How ``workers`` ranks on ``device`` talk ("gloo", "nccl", "MirroredStrategy"):
        part of a data-parallel run's cache key and record."""

    def train(self, loaded: Any, data: Splits, config: TrainConfig, log: EpochLog, *,
              head_finder: Callable[[Any], str | None] | None,
              world: World | None = None) -> Trained | None:
        """Replace the head for ``data``'s classes and fine-tune, reporting each epoch to
        ``log``; return the test probabilities and the run's facts. In a ``world`` of
        several ranks this is one rank's share; a rank other than 0 may return None."""

    def launch(self, loaded: Any, data: Splits, config: TrainConfig, *, place: str,
               progress: Callable[[str], None] | None,
               head_finder: Callable[[Any], str | None] | None,
               ray: str | None) -> RankResult | None:
        """Run ``config.workers`` ranks at ``place`` ("spawn", "torchrun", "ray"; see
        ``train.ranks``) and return rank 0's result (None on other torchrun ranks). Only
        adapters with ``rank_processes``."""


# The adapter for anything no other adapter claims: names of the built-in zoo, modules.
DEFAULT = "torch"


@functools.cache  # the package's folders do not change while it runs
def adapters() -> list[Framework]:
    """Every adapter, found as the subpackages of this package (so a new framework is one
    new folder), the default last. Importing them imports no framework."""
    import importlib
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)
    names.sort(key=lambda n: n == DEFAULT)
    return [importlib.import_module(f"{__name__}.{n}").FRAMEWORK for n in names]


def named(name: str) -> Framework:
    """The adapter called ``name`` (a run record's ``config["framework"]``)."""
    for adapter in adapters():
        if adapter.name == name:
            return adapter
    raise KeyError(f"no framework adapter named {name!r}")


def default() -> Framework:
    """The adapter for anything no other adapter claims (the built-in zoo's)."""
    return named(DEFAULT)


def installed_versions(*dists: str) -> dict[str, str]:
    """The installed versions of ``dists`` (those installed), read without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def all_versions() -> dict[str, str]:
    """Every adapter's library versions: where a baseline was recorded."""
    out: dict[str, str] = {}
    for adapter in reversed(adapters()):  # the default first
        out.update(adapter.versions())
    return out


def framework_for(model: Any) -> Framework:
    """The adapter that handles ``model``: the first that claims it (a ``keras:`` name, a
    saved ``.keras``/``.h5`` file or a Keras object goes to Keras), else PyTorch. A
    factory function no adapter claims by its type is called once to see what it builds
    (it is called again, seeded, to load)."""
    found = adapters()
    for adapter in found:
        if adapter.claims(model):
            return adapter
    probe = callable(model) and not isinstance(model, type) and not any(
        c.__module__.split(".")[0] in {a.name for a in found} for c in type(model).__mro__)
    if probe:
        built = model()
        for adapter in found:
            if adapter.claims(built):
                return adapter
    return found[-1]


def loaded_frameworks() -> list[Framework]:
    """The adapters whose framework this process has imported already."""
    import sys

    return [f for f in adapters() if f.name in sys.modules]


def import_triton_before_tensorflow() -> None:
    """Have triton (PyTorch's GPU compiler, in its CUDA wheels) imported before TensorFlow.

    Measured with torch 2.14.1 and tensorflow-cpu 2.21: ``import tensorflow`` then ``import
    triton`` is a segmentation fault, and PyTorch imports triton lazily (its optimizers,
    through ``torch._dynamo``), so a session that trained a Keras model and then a PyTorch
    one crashed. The other order works. Importing triton here cost every plain ``pytest``
    run 0.15-0.26 s, so an import hook (``_TritonFirst``) imports it at the moment
    TensorFlow is first imported, just before it, and costs nothing in a session that never
    imports TensorFlow. Only where both are installed and TensorFlow is not loaded yet.
    """
    import importlib.util
    import sys

    if "tensorflow" in sys.modules or "triton" in sys.modules:
        return
    if any(isinstance(f, _TritonFirst) for f in sys.meta_path):
        return
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("triton") is None:
        return
    sys.meta_path.insert(0, _TritonFirst())


class _TritonFirst:
    """An import hook (``sys.meta_path``) that, asked for ``tensorflow``, removes itself,
    imports triton and lets the usual finders import TensorFlow."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] != "tensorflow":
            return None
        import sys

        if self in sys.meta_path:
            sys.meta_path.remove(self)
        try:
            import triton  # noqa: F401
        except Exception:  # noqa: BLE001 - a broken triton is PyTorch's matter, not ours
            pass
        return None
