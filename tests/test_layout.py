"""The one-way layout (../shared/LAYOUT.md), read from the source: nothing imports upward.

- ``mrcnn_ohem/`` imports nothing of ``benchmarks/``, ``samples/``, ``notebooks/`` or ``tests/``;
- nothing in ``mrcnn_ohem/``, ``benchmarks/`` or ``tests/`` imports ``samples/``;
- the library's tests do not import ``benchmarks/`` (only ``test_benchmarks_*`` and the tests of
  the samples, which are built on it, do);
- the modules of ``mrcnn_ohem`` import each other without a cycle, counting the imports inside
  functions too (a lazy import that only dodges a cycle is still one; 0.1's runner had
  ``cli -> train_eval -> cli``).
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOPS = ("mrcnn_ohem", "benchmarks", "samples", "tests")


def _imports(path: Path) -> list[str]:
    nodes = ast.walk(ast.parse(path.read_text()))
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _files(top: str) -> list[Path]:
    return sorted((REPO / top).rglob("*.py"))


def test_no_folder_imports_a_folder_above_it():
    upward = []
    for top in TOPS:
        for path in _files(top):
            for name in _imports(path):
                target = name.split(".")[0]
                library_test = top == "tests" and not path.name.startswith(("test_benchmarks", "test_samples"))
                if (top == "mrcnn_ohem" and target in ("benchmarks", "samples", "notebooks", "tests")) or (
                        target == "samples" and top != "samples") or (library_test and target == "benchmarks"):
                    upward.append(f"{path.relative_to(REPO)} imports {name}")
    assert upward == []


def _targets(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere (a function's own imports too),
    relative imports resolved and ``from package import module`` counted as importing the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            targets |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return {t for t in targets if t in modules and t != name}


def test_the_package_s_modules_import_each_other_without_a_cycle():
    files = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for p in _files("mrcnn_ohem")}
    modules = set(files)
    edges = {name: _targets(name, path, modules) for name, path in files.items()}
    assert "mrcnn_ohem.maskrcnn.data" in edges["mrcnn_ohem.maskrcnn.model"]  # relative imports resolved
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        assert name not in stack, " -> ".join([*stack[stack.index(name):], name])
        if name in done:
            return
        for target in sorted(edges[name]):
            visit(target, [*stack, name])
        done.add(name)

    for name in sorted(modules):
        visit(name, [])
    assert len(done) == len(files) > 40


def test_the_longest_first_list_names_test_files_that_exist():
    from conftest import LONGEST_FIRST

    missing = [name for name in LONGEST_FIRST if not (REPO / "tests" / name).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FIRST names files that are gone: {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
