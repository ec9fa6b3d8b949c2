"""The layout's rules, checked on the source: what may import what, and names spelled once.
docs/architecture.md explains them."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_innovator
from pytest_innovator.backends import BACKENDS
from pytest_innovator.plugin.options import OPTIONS, markdown_table

PACKAGE = Path(pytest_innovator.__file__).parent
REPO = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, *, module_level_only: bool) -> set[str]:
    """Absolute names of the modules `name` imports (module level: not in functions, not under
    TYPE_CHECKING, which is what runs when the module is imported)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and module_level_only:
                continue
            else:
                for field in ("body", "orelse", "handlers", "finalbody"):
                    visit(
                        [n for n in getattr(node, field, []) if isinstance(n, ast.stmt)]
                        if field != "handlers"
                        else [s for h in getattr(node, "handlers", []) for s in h.body]
                    )

    visit(tree.body)
    return found


def test_nothing_outside_the_plugin_package_imports_pytest() -> None:
    offenders = {
        name
        for name in MODULES
        if not name.startswith("pytest_innovator.plugin")
        and any(i == "pytest" or i.startswith(("pytest.", "_pytest")) for i in imports(name, module_level_only=False))
    }
    assert offenders == set()


def test_grader_kit_imports_only_the_standard_library_and_the_sandbox() -> None:
    # Graders import it inside their sandbox, under whatever Python the task names.
    found = imports("pytest_innovator.grader_kit", module_level_only=False)
    foreign = {i for i in found if i.split(".")[0] not in sys.stdlib_module_names}
    assert foreign <= {"pytest_innovator.sandbox"}, foreign


def test_no_import_cycle_at_run_time() -> None:
    graph = {name: {i for i in imports(name, module_level_only=True) if i in MODULES and i != name} for name in MODULES}
    # A module also imports the packages above it (their __init__ runs first).
    for name in MODULES:
        parts = name.split(".")
        graph[name] |= {".".join(parts[:n]) for n in range(1, len(parts))} & set(MODULES) - {name}
    cycles = []
    state: dict[str, str] = {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open" and not name_is_parent(nxt, node):
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert cycles == []


def name_is_parent(package: str, module: str) -> bool:
    """A package's __init__ importing its own submodules is how packages work, not a cycle."""
    return module.startswith(package + ".")


def test_the_run_directory_files_are_named_in_one_place() -> None:
    for name in ('"ledger.json"', '"result.json"', '"trajectory.jsonl"', '"results.jsonl"', '"gpu_lease.json"'):
        spelled = subprocess.run(
            ["grep", "-rln", "--include=*.py", name, str(PACKAGE)], capture_output=True, text=True
        ).stdout.split()
        assert [Path(p).name for p in spelled] == ["rundir.py"], (name, spelled)


def test_every_harness_error_derives_from_innovator_error() -> None:
    from pytest_innovator.errors import InnovatorError

    offenders = []
    for name in MODULES:
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not value.__name__.startswith("_")
                and not issubclass(value, InnovatorError)
            ):
                offenders.append(f"{name}.{value.__name__}")
    assert offenders == []


def test_docs_list_every_option_as_the_table_declares_it() -> None:
    docs = (REPO / "docs" / "options.md").read_text(encoding="utf-8")
    assert markdown_table() in docs, (
        "regenerate the table: python -c 'from pytest_innovator.plugin.options "
        "import markdown_table; print(markdown_table())'"
    )
    assert len(OPTIONS) == docs.count("| `--innovator-")


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_docs_describe_every_backend(backend: str) -> None:
    docs = (REPO / "docs" / "backends.md").read_text(encoding="utf-8")
    assert f"`{backend}`" in docs
    extra = BACKENDS[backend].extra
    assert extra is None or f"pytest-innovator[{extra}]" in docs
