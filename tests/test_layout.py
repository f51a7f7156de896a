"""The package's shape, checked from its source: no import circle, frameworks imported only
under ``frameworks/``, and no function a reader cannot take in at once."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_modelgate"
FRAMEWORKS = ("torch", "torchvision", "keras", "tensorflow", "timm")
# A data loader for a framework's own dataset type may import that framework.
FRAMEWORK_LOADERS = {("pytest_modelgate.data.sources", "torch")}
MAX_FUNCTION_LINES = 100


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """Every module this one imports, at any depth of its code (a function's lazy import
    is an arrow too; one under ``if TYPE_CHECKING:`` is not), as (module, line)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in block.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # annotations only: never imported at run time
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in modules else base, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m, _ in _imports(name, path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle():
    assert _cycles(_graph()) == []


def test_frameworks_are_imported_only_by_their_adapters():
    modules = _modules()
    leaks = []
    for name, path in modules.items():
        if name.startswith("pytest_modelgate.frameworks."):
            continue
        for module, line in _imports(name, path, modules):
            top = module.split(".")[0]
            if top in FRAMEWORKS and (name, top) not in FRAMEWORK_LOADERS:
                leaks.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert leaks == []


def test_no_function_is_longer_than_a_screenful_or_two():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} "
                                f"{node.name}: {lines} lines")
    assert long == []


def test_the_checker_sees_a_circle_and_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    lazy = _imports("pytest_modelgate.train", PACKAGE / "train" / "__init__.py", _modules())
    assert any(m == "pytest_modelgate.train.plan" for m, _ in lazy)  # inside run_finetune


def test_every_module_that_raises_our_errors_hides_its_frames_for_them():
    """A user's traceback ends at their line for a ModelGateError (errors.py): a module
    that raises one must say ``__tracebackhide__ = user_error_frames``."""
    ours = ("ModelGateError(", "HeadNotFoundError(", "AdapterUnavailableError(",
            "BaselineError(")
    bare = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py"))
            if path.name != "errors.py" and any(e in (text := path.read_text()) for e in ours)
            and "__tracebackhide__ = user_error_frames" not in text]
    assert bare == []
    # An adapter package raises nothing itself, but every load and train passes through its
    # methods: without the marker each error showed frameworks/<name>/__init__.py (issue 22).
    adapters = [str(path.relative_to(PACKAGE.parent))
                for path in sorted((PACKAGE / "frameworks").glob("*/__init__.py"))
                if "__tracebackhide__ = user_error_frames" not in path.read_text()]
    assert adapters == []
